//! A minimal server session: accepts connect, createStream and publish (or refuses
//! the publish), and hands out metadata and media. Enough to embed an RTMP ingest and to
//! test the client against in memory.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;
use flv::amf0::{self, Value};

use crate::chunk::{msg_type, DecoderConfig, RawMessage, DEFAULT_MAX_MESSAGE_SIZE};
use crate::client::{CloseReason, OUTGOING_CHUNK_SIZE};
use crate::command::{amf0_body, parse_command, status_object};
use crate::conn::{csid, user_control, Conn};
use crate::error::{Error, UsageError};
use crate::handshake::{ServerHandshake, HANDSHAKE_SIZE, RANDOM_SIZE};
use crate::media::MediaKind;

/// How a [`ServerSession`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Window Acknowledgement Size announced to the client.
    pub window_ack_size: u32,
    /// Set Peer Bandwidth announced to the client.
    pub peer_bandwidth: u32,
    /// Largest incoming message accepted.
    pub max_message_size: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            chunk_size: OUTGOING_CHUNK_SIZE,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Something that happened in a [`ServerSession`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The client connected (accepted automatically).
    Connected {
        /// The `app` of connect.
        app: String,
        /// The `tcUrl` of connect, if given.
        tc_url: Option<String>,
    },
    /// The client asks to publish; answer with [`ServerSession::accept_publish`] or
    /// [`ServerSession::reject_publish`].
    PublishRequested {
        /// Message stream id.
        stream_id: u32,
        /// The publish name (stream key), query string included.
        key: String,
    },
    /// A data message (`@setDataFrame` removed): AMF0 values such as `onMetaData`, array.
    Metadata {
        /// Message stream id.
        stream_id: u32,
        /// Message timestamp.
        timestamp: u32,
        /// The AMF0 body as an FLV script tag body would hold it.
        body: Bytes,
    },
    /// An audio or video message on an accepted publish.
    Media {
        /// Message stream id.
        stream_id: u32,
        /// Audio or video.
        kind: MediaKind,
        /// Timestamp in milliseconds.
        timestamp: u32,
        /// The FLV tag body.
        payload: Bytes,
    },
    /// The client ended the publish (FCUnpublish, closeStream or deleteStream).
    Unpublished {
        /// Message stream id.
        stream_id: u32,
    },
    /// The connection is over.
    Closed {
        /// Why.
        reason: CloseReason,
    },
    /// A protocol error; the session is dead (errors are sticky).
    ProtocolError(Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamState {
    Created,
    Requested,
    Publishing,
}

/// A sans-IO RTMP server session for one connection; driven like
/// [`ClientSession`](crate::ClientSession).
#[derive(Debug)]
pub struct ServerSession {
    config: ServerConfig,
    start: Instant,
    handshake: ServerHandshake,
    handshake_done: bool,
    connected: bool,
    conn: Conn,
    events: VecDeque<ServerEvent>,
    error: Option<Error>,
    closed: bool,
    streams: Vec<(u32, StreamState)>,
    next_stream_id: u32,
}

impl ServerSession {
    /// A session waiting for C0+C1. `random` fills S1.
    pub fn new(config: ServerConfig, now: Instant, random: &[u8; RANDOM_SIZE]) -> Self {
        ServerSession {
            conn: Conn::new(DecoderConfig {
                max_message_size: config.max_message_size,
                ..DecoderConfig::default()
            }),
            config,
            start: now,
            handshake: ServerHandshake::new(0, random),
            handshake_done: false,
            connected: false,
            events: VecDeque::new(),
            error: None,
            closed: false,
            streams: Vec::new(),
            next_stream_id: 1,
        }
    }

    /// The first protocol error, if any (sticky).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    fn fail(&mut self, e: Error) -> Error {
        if self.error.is_none() {
            self.error = Some(e.clone());
            self.events.push_back(ServerEvent::ProtocolError(e.clone()));
        }
        e
    }

    /// Feeds bytes read from the client.
    pub fn handle_input(&mut self, now: Instant, mut input: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.closed {
            return Ok(());
        }
        if !self.handshake_done {
            let t = now.saturating_duration_since(self.start).as_millis() as u32;
            let progress = match self.handshake.handle_input(t, input, &mut self.conn.out) {
                Ok(p) => p,
                Err(e) => return Err(self.fail(e.into())),
            };
            self.conn.count_received(progress.consumed);
            input = &input[progress.consumed..];
            if !progress.done {
                return Ok(());
            }
            self.handshake_done = true;
            self.conn.start_chunks(
                DecoderConfig {
                    max_message_size: self.config.max_message_size,
                    ..DecoderConfig::default()
                },
                (1 + 2 * HANDSHAKE_SIZE) as u64,
            );
        }
        // Messages completed before a chunk error are handled first, so the outcome
        // does not depend on how the input was split into reads.
        let decoded = self.conn.decode(input);
        let mut inbox = std::mem::take(&mut self.conn.inbox);
        let mut result = Ok(());
        for msg in inbox.drain(..) {
            if let Err(e) = self.handle_message(msg) {
                result = Err(self.fail(e));
                break;
            }
        }
        self.conn.inbox = inbox;
        if result.is_ok() {
            if let Err(e) = decoded {
                return Err(self.fail(e.into()));
            }
            self.conn.maybe_ack();
        }
        result
    }

    fn stream_state(&self, id: u32) -> Option<StreamState> {
        self.streams
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, st)| *st)
    }

    fn set_stream_state(&mut self, id: u32, state: Option<StreamState>) {
        self.streams.retain(|(s, _)| *s != id);
        if let Some(state) = state {
            self.streams.push((id, state));
        }
    }

    fn handle_message(&mut self, msg: RawMessage) -> Result<(), Error> {
        let Some(msg) = self.conn.handle_control(msg)? else {
            return Ok(());
        };
        let stream_id = msg.header.stream_id;
        match msg.header.type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => self.handle_command(&msg),
            msg_type::DATA_AMF0 | msg_type::DATA_AMF3 => {
                if self.stream_state(stream_id) == Some(StreamState::Publishing) {
                    let body = amf0_body(&msg);
                    let mut rest = body;
                    let prefixed = matches!(amf0::decode(&mut rest), Ok(Value::String(s)) if s == "@setDataFrame");
                    let skip = msg.payload.len() - if prefixed { rest.len() } else { body.len() };
                    self.events.push_back(ServerEvent::Metadata {
                        stream_id,
                        timestamp: msg.header.timestamp,
                        body: msg.payload.slice(skip..),
                    });
                }
                Ok(())
            }
            msg_type::AUDIO | msg_type::VIDEO => {
                if self.stream_state(stream_id) == Some(StreamState::Publishing) {
                    let kind = if msg.header.type_id == msg_type::AUDIO {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    self.events.push_back(ServerEvent::Media {
                        stream_id,
                        kind,
                        timestamp: msg.header.timestamp,
                        payload: msg.payload,
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn write_result(&mut self, tid: f64, object: Value, info: Value) {
        self.conn.write_amf(
            csid::COMMAND,
            msg_type::COMMAND_AMF0,
            0,
            0,
            &["_result".into(), tid.into(), object, info],
        );
    }

    fn write_on_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.conn.write_amf(
            csid::STREAM,
            msg_type::COMMAND_AMF0,
            stream_id,
            0,
            &[
                "onStatus".into(),
                0.0.into(),
                Value::Null,
                status_object(level, code, description),
            ],
        );
    }

    fn handle_command(&mut self, msg: &RawMessage) -> Result<(), Error> {
        let cmd = parse_command(msg)?;
        let tid = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" if !self.connected => {
                self.connected = true;
                let app = cmd
                    .object
                    .get("app")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let tc_url = cmd
                    .object
                    .get("tcUrl")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                self.conn.write_window_ack_size(self.config.window_ack_size);
                self.conn
                    .write_set_peer_bandwidth(self.config.peer_bandwidth, 2);
                self.conn.write_set_chunk_size(self.config.chunk_size);
                let props = Value::Object(vec![
                    ("fmsVer".into(), "FMS/3,0,1,123".into()),
                    ("capabilities".into(), 31.0.into()),
                ]);
                let mut info = status_object(
                    "status",
                    "NetConnection.Connect.Success",
                    "Connection succeeded.",
                );
                if let Value::Object(p) = &mut info {
                    p.push(("objectEncoding".into(), 0.0.into()));
                }
                self.write_result(tid, props, info);
                self.events
                    .push_back(ServerEvent::Connected { app, tc_url });
            }
            "releaseStream" | "FCPublish" => self.write_result(tid, Value::Null, Value::Undefined),
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id += 1;
                self.set_stream_state(id, Some(StreamState::Created));
                self.write_result(tid, Value::Null, (id as f64).into());
            }
            "publish" => {
                let stream_id = msg.header.stream_id;
                let key = cmd
                    .args
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                if self.stream_state(stream_id) == Some(StreamState::Created) {
                    self.set_stream_state(stream_id, Some(StreamState::Requested));
                    self.events
                        .push_back(ServerEvent::PublishRequested { stream_id, key });
                } else {
                    self.write_on_status(
                        stream_id,
                        "error",
                        "NetStream.Publish.BadName",
                        "No such stream or already publishing",
                    );
                }
            }
            "FCUnpublish" => {}
            "closeStream" | "deleteStream" => {
                let id = if cmd.name == "deleteStream" {
                    cmd.args.first().and_then(Value::as_f64).map(|n| n as u32)
                } else {
                    Some(msg.header.stream_id)
                };
                if let Some(id) = id {
                    if self.stream_state(id) == Some(StreamState::Publishing) {
                        self.events
                            .push_back(ServerEvent::Unpublished { stream_id: id });
                    }
                    self.set_stream_state(id, None);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn requested(&self, stream_id: u32) -> Result<(), UsageError> {
        if let Some(e) = &self.error {
            return Err(UsageError::Failed(e.clone()));
        }
        if self.closed {
            return Err(UsageError::Closed);
        }
        match self.stream_state(stream_id) {
            Some(StreamState::Requested) => Ok(()),
            _ => Err(UsageError::UnknownStream(stream_id)),
        }
    }

    /// Accepts a [`ServerEvent::PublishRequested`]: sends Stream Begin and
    /// `NetStream.Publish.Start`; media then arrives as [`ServerEvent::Media`].
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), UsageError> {
        self.requested(stream_id)?;
        self.set_stream_state(stream_id, Some(StreamState::Publishing));
        self.conn
            .write_user_control(user_control::STREAM_BEGIN, stream_id);
        self.write_on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            "Start publishing",
        );
        Ok(())
    }

    /// Refuses a [`ServerEvent::PublishRequested`] with an onStatus error such as
    /// `NetStream.Publish.BadName`.
    pub fn reject_publish(
        &mut self,
        stream_id: u32,
        code: &str,
        description: &str,
    ) -> Result<(), UsageError> {
        self.requested(stream_id)?;
        self.set_stream_state(stream_id, Some(StreamState::Created));
        self.write_on_status(stream_id, "error", code, description);
        Ok(())
    }

    /// Sends a ping request (User Control 6) with `timestamp`.
    pub fn ping(&mut self, timestamp: u32) {
        if self.handshake_done && !self.closed && self.error.is_none() {
            self.conn
                .write_user_control(user_control::PING_REQUEST, timestamp);
        }
    }

    /// The connection was closed by the client.
    pub fn handle_eof(&mut self) {
        if !self.closed {
            self.closed = true;
            self.events.push_back(ServerEvent::Closed {
                reason: CloseReason::PeerClosed,
            });
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending_output(&self) -> &[u8] {
        &self.conn.out
    }

    /// Marks `n` bytes of [`ServerSession::pending_output`] as written.
    ///
    /// # Panics
    /// If `n` is more than is pending.
    pub fn consume_output(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.conn.out, n);
    }

    /// The last sequence number the client acknowledged, if any.
    pub fn peer_acknowledged(&self) -> Option<u32> {
        self.conn.peer_acked
    }
}
