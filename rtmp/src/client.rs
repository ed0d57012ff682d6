//! The publishing client session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flv::amf0::Value;

use crate::chunk::{msg_type, DecoderConfig, MessageHeader, RawMessage, DEFAULT_MAX_MESSAGE_SIZE};
use crate::command::{self, parse_command, status_fields};
use crate::conn::{csid, Conn};
use crate::error::{Error, SessionError, UsageError};
use crate::handshake::{ClientHandshake, HANDSHAKE_SIZE, RANDOM_SIZE};
use crate::media::{Admission, DropPolicy, DropStats, MediaKind, MediaMessage};

/// The chunk size this crate sends with.
pub const OUTGOING_CHUNK_SIZE: u32 = 4096;
/// The flashVer a publishing client announces by default (as OBS and ffmpeg do).
pub const DEFAULT_FLASH_VER: &str = "FMLE/3.0 (compatible; streamify-rtmp)";

/// How a [`ClientSession`] connects and publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The application, e.g. `live2` (may contain `/` and a `?query`).
    pub app: String,
    /// The tcUrl, e.g. `rtmp://a.rtmp.youtube.com/live2`.
    pub tc_url: String,
    /// The stream key (publish name), e.g. `abcd-efgh` or `key?token=x`.
    pub stream_key: String,
    /// The flashVer announced in connect.
    pub flash_ver: String,
    /// Outgoing chunk size, announced with Set Chunk Size right after the handshake.
    pub chunk_size: u32,
    /// Largest incoming message accepted.
    pub max_message_size: u32,
    /// How long to wait for each answer (handshake, connect, createStream, publish).
    pub response_timeout: Duration,
    /// Back-pressure: past this many queued output bytes, video is dropped up to the
    /// next keyframe.
    pub max_queued_video_bytes: usize,
    /// Back-pressure: past this many queued output bytes, audio is dropped too.
    pub max_queued_audio_bytes: usize,
}

impl ClientConfig {
    /// A configuration with defaults for everything but the three names.
    pub fn new(
        app: impl Into<String>,
        tc_url: impl Into<String>,
        stream_key: impl Into<String>,
    ) -> Self {
        ClientConfig {
            app: app.into(),
            tc_url: tc_url.into(),
            stream_key: stream_key.into(),
            flash_ver: DEFAULT_FLASH_VER.into(),
            chunk_size: OUTGOING_CHUNK_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            response_timeout: Duration::from_secs(10),
            max_queued_video_bytes: 1 << 20,
            max_queued_audio_bytes: 4 << 20,
        }
    }
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// [`ClientSession::stop`] (or the server's equivalent) was called.
    Stopped,
    /// The peer closed the connection.
    PeerClosed,
}

/// Something that happened in a [`ClientSession`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The server accepted `connect`.
    Connected,
    /// The server acknowledged the publish (`NetStream.Publish.Start`); media may flow.
    Publishing {
        /// The message stream id from createStream.
        stream_id: u32,
    },
    /// The server refused connect or publish.
    Rejected {
        /// The status code, e.g. `NetStream.Publish.BadName` or `NetConnection.Connect.Rejected`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// Any other onStatus the server sent.
    Status {
        /// `status`, `warning` or `error`.
        level: String,
        /// The status code.
        code: String,
        /// The server's description.
        description: String,
    },
    /// The session is over.
    Closed {
        /// Why.
        reason: CloseReason,
        /// Whether the server had acknowledged the publish by then.
        was_publishing: bool,
    },
    /// A protocol error; the session is dead (errors are sticky).
    ProtocolError(Error),
}

/// Where the client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Exchanging C0/C1/C2 and S0/S1/S2.
    Handshake,
    /// `connect` sent.
    Connecting,
    /// `createStream` sent.
    CreatingStream,
    /// `publish` sent.
    PublishRequested,
    /// The server acknowledged the publish.
    Publishing,
    /// Refused by the server.
    Rejected,
    /// Stopped or closed by the peer.
    Closed,
    /// A protocol error happened.
    Failed,
}

const TID_CONNECT: f64 = 1.0;
const TID_RELEASE: f64 = 2.0;
const TID_FCPUBLISH: f64 = 3.0;
const TID_CREATE_STREAM: f64 = 4.0;
const TID_PUBLISH: f64 = 5.0;

/// A sans-IO RTMP publishing client: connect, createStream, publish, then media.
///
/// Feed it what the socket reads with [`ClientSession::handle_input`], write out
/// [`ClientSession::pending_output`] and report how much was written with
/// [`ClientSession::consume_output`], drain [`ClientSession::poll_event`], and call
/// [`ClientSession::handle_timeout`] at [`ClientSession::poll_timeout`].
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    start: Instant,
    state: ClientState,
    handshake: ClientHandshake,
    conn: Conn,
    events: VecDeque<Event>,
    error: Option<Error>,
    deadline: Option<(Instant, &'static str)>,
    stream_id: u32,
    policy: DropPolicy,
    was_publishing: bool,
}

impl ClientSession {
    /// Starts a session: C0+C1 are queued for output at once. `random` fills C1.
    pub fn new(config: ClientConfig, now: Instant, random: &[u8; RANDOM_SIZE]) -> Self {
        let mut conn = Conn::new(DecoderConfig {
            max_message_size: config.max_message_size,
            ..DecoderConfig::default()
        });
        let handshake = ClientHandshake::new(0, random, &mut conn.out);
        let policy = DropPolicy::new(config.max_queued_video_bytes, config.max_queued_audio_bytes);
        ClientSession {
            deadline: Some((now + config.response_timeout, "the handshake (S0/S1/S2)")),
            config,
            start: now,
            state: ClientState::Handshake,
            handshake,
            conn,
            events: VecDeque::new(),
            error: None,
            stream_id: 0,
            policy,
            was_publishing: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The first protocol error, if any (sticky).
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// What back-pressure has dropped so far.
    pub fn drop_stats(&self) -> DropStats {
        self.policy.stats()
    }

    /// The last sequence number the server acknowledged, if it sent any.
    pub fn peer_acknowledged(&self) -> Option<u32> {
        self.conn.peer_acked
    }

    fn millis(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.start).as_millis() as u32
    }

    fn fail(&mut self, e: Error) -> Error {
        if self.error.is_none() {
            self.error = Some(e.clone());
            self.state = ClientState::Failed;
            self.deadline = None;
            self.events.push_back(Event::ProtocolError(e.clone()));
        }
        e
    }

    fn is_over(&self) -> bool {
        matches!(
            self.state,
            ClientState::Rejected | ClientState::Closed | ClientState::Failed
        )
    }

    /// Feeds bytes read from the server. Returns the sticky error if the session failed.
    pub fn handle_input(&mut self, now: Instant, mut input: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if self.is_over() {
            return Ok(());
        }
        self.check_deadline(now)?;
        if self.state == ClientState::Handshake {
            let t = self.millis(now);
            let progress = match self.handshake.handle_input(t, input, &mut self.conn.out) {
                Ok(p) => p,
                Err(e) => return Err(self.fail(e.into())),
            };
            self.conn.count_received(progress.consumed);
            input = &input[progress.consumed..];
            if !progress.done {
                return Ok(());
            }
            self.on_handshake_done(now);
        }
        // Messages completed before a chunk error are handled first, and nothing is
        // handled once the session is over, so the outcome does not depend on how the
        // input was split into reads.
        let decoded = self.conn.decode(input);
        let mut inbox = std::mem::take(&mut self.conn.inbox);
        let mut result = Ok(());
        for msg in inbox.drain(..) {
            if self.is_over() {
                break;
            }
            if let Err(e) = self.handle_message(now, msg) {
                result = Err(self.fail(e));
                break;
            }
        }
        self.conn.inbox = inbox;
        if result.is_ok() && !self.is_over() {
            if let Err(e) = decoded {
                return Err(self.fail(e.into()));
            }
            self.conn.maybe_ack();
        }
        result
    }

    fn on_handshake_done(&mut self, now: Instant) {
        self.conn.start_chunks(
            DecoderConfig {
                max_message_size: self.config.max_message_size,
                ..DecoderConfig::default()
            },
            (1 + 2 * HANDSHAKE_SIZE) as u64,
        );
        self.conn.write_set_chunk_size(self.config.chunk_size);
        let object = Value::Object(vec![
            ("app".into(), self.config.app.as_str().into()),
            ("type".into(), "nonprivate".into()),
            ("flashVer".into(), self.config.flash_ver.as_str().into()),
            ("tcUrl".into(), self.config.tc_url.as_str().into()),
        ]);
        self.conn.write_amf(
            csid::COMMAND,
            msg_type::COMMAND_AMF0,
            0,
            0,
            &["connect".into(), TID_CONNECT.into(), object],
        );
        self.state = ClientState::Connecting;
        self.deadline = Some((now + self.config.response_timeout, "the answer to connect"));
    }

    fn handle_message(&mut self, now: Instant, msg: RawMessage) -> Result<(), Error> {
        let Some(msg) = self.conn.handle_control(msg)? else {
            return Ok(());
        };
        match msg.header.type_id {
            msg_type::COMMAND_AMF0 | msg_type::COMMAND_AMF3 => self.handle_command(now, &msg),
            // Data, media and aggregates sent to a publisher are ignored.
            _ => Ok(()),
        }
    }

    fn handle_command(&mut self, now: Instant, msg: &RawMessage) -> Result<(), Error> {
        let cmd = parse_command(msg)?;
        match (cmd.name.as_str(), self.state) {
            ("_result", ClientState::Connecting) if cmd.transaction_id == TID_CONNECT => {
                self.events.push_back(Event::Connected);
                let key: Value = self.config.stream_key.as_str().into();
                self.conn.write_amf(
                    csid::COMMAND,
                    msg_type::COMMAND_AMF0,
                    0,
                    0,
                    &[
                        "releaseStream".into(),
                        TID_RELEASE.into(),
                        Value::Null,
                        key.clone(),
                    ],
                );
                self.conn.write_amf(
                    csid::COMMAND,
                    msg_type::COMMAND_AMF0,
                    0,
                    0,
                    &["FCPublish".into(), TID_FCPUBLISH.into(), Value::Null, key],
                );
                self.conn.write_amf(
                    csid::COMMAND,
                    msg_type::COMMAND_AMF0,
                    0,
                    0,
                    &["createStream".into(), TID_CREATE_STREAM.into(), Value::Null],
                );
                self.state = ClientState::CreatingStream;
                self.deadline = Some((
                    now + self.config.response_timeout,
                    "the answer to createStream",
                ));
            }
            ("_error", ClientState::Connecting) if cmd.transaction_id == TID_CONNECT => {
                let (_, code, description) = status_fields(cmd.args.first());
                self.reject(code, description);
            }
            ("_result", ClientState::CreatingStream) if cmd.transaction_id == TID_CREATE_STREAM => {
                let id = cmd
                    .args
                    .first()
                    .and_then(Value::as_f64)
                    .filter(|n| *n >= 0.0 && *n <= u32::MAX as f64)
                    .ok_or_else(|| {
                        command::malformed(msg, "createStream _result without a stream id".into())
                    })?;
                self.stream_id = id as u32;
                self.conn.write_amf(
                    csid::STREAM,
                    msg_type::COMMAND_AMF0,
                    self.stream_id,
                    0,
                    &[
                        "publish".into(),
                        TID_PUBLISH.into(),
                        Value::Null,
                        self.config.stream_key.as_str().into(),
                        "live".into(),
                    ],
                );
                self.state = ClientState::PublishRequested;
                self.deadline = Some((now + self.config.response_timeout, "the answer to publish"));
            }
            ("_error", ClientState::CreatingStream) if cmd.transaction_id == TID_CREATE_STREAM => {
                let (_, code, description) = status_fields(cmd.args.first());
                self.reject(code, description);
            }
            ("onStatus", _) => {
                let (level, code, description) = status_fields(cmd.args.first());
                if self.state == ClientState::PublishRequested && code == "NetStream.Publish.Start"
                {
                    self.state = ClientState::Publishing;
                    self.was_publishing = true;
                    self.deadline = None;
                    self.events.push_back(Event::Publishing {
                        stream_id: self.stream_id,
                    });
                } else if self.state != ClientState::Publishing
                    && command::is_refusal(&level, &code)
                {
                    self.reject(code, description);
                } else {
                    self.events.push_back(Event::Status {
                        level,
                        code,
                        description,
                    });
                }
            }
            // Answers to releaseStream/FCPublish, onBWDone, onFCPublish, ...: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn reject(&mut self, code: String, description: String) {
        self.state = ClientState::Rejected;
        self.deadline = None;
        self.events.push_back(Event::Rejected { code, description });
    }

    fn check_deadline(&mut self, now: Instant) -> Result<(), Error> {
        if let Some((at, waiting_for)) = self.deadline {
            if now >= at {
                let e = SessionError::Timeout {
                    waiting_for,
                    after_ms: self.config.response_timeout.as_millis() as u64,
                };
                return Err(self.fail(e.into()));
            }
        }
        Ok(())
    }

    /// When [`ClientSession::handle_timeout`] must be called next, if at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline.map(|(at, _)| at)
    }

    /// Advances timers: a missing answer past its deadline fails the session.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = self.check_deadline(now);
    }

    /// The connection was closed by the peer (the socket read returned 0 or failed).
    pub fn handle_eof(&mut self) {
        if !self.is_over() {
            self.state = ClientState::Closed;
            self.deadline = None;
            self.events.push_back(Event::Closed {
                reason: CloseReason::PeerClosed,
                was_publishing: self.was_publishing,
            });
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending_output(&self) -> &[u8] {
        &self.conn.out
    }

    /// Marks `n` bytes of [`ClientSession::pending_output`] as written.
    ///
    /// # Panics
    /// If `n` is more than is pending.
    pub fn consume_output(&mut self, n: usize) {
        bytes::Buf::advance(&mut self.conn.out, n);
    }

    /// How many output bytes are queued.
    pub fn queued_bytes(&self) -> usize {
        self.conn.out.len()
    }

    fn check_publishing(&self) -> Result<(), UsageError> {
        if let Some(e) = &self.error {
            return Err(UsageError::Failed(e.clone()));
        }
        match self.state {
            ClientState::Publishing => Ok(()),
            ClientState::Closed | ClientState::Rejected => Err(UsageError::Closed),
            _ => Err(UsageError::NotPublishing),
        }
    }

    /// Sends an FLV script tag body (`onMetaData` + ECMA array, as stored in an FLV file)
    /// as an `@setDataFrame` data message. Never dropped.
    pub fn send_metadata_tag(
        &mut self,
        timestamp: u32,
        script_tag_body: &[u8],
    ) -> Result<(), UsageError> {
        self.check_publishing()?;
        self.conn.write_data_with_prefix(
            self.stream_id,
            timestamp,
            "@setDataFrame",
            script_tag_body,
        );
        Ok(())
    }

    /// Sends `onMetaData` with the given properties (an object or ECMA array) as an
    /// `@setDataFrame` data message.
    pub fn send_metadata(&mut self, properties: &Value) -> Result<(), UsageError> {
        self.check_publishing()?;
        self.conn.write_amf(
            csid::STREAM,
            msg_type::DATA_AMF0,
            self.stream_id,
            0,
            &[
                "@setDataFrame".into(),
                "onMetaData".into(),
                properties.clone(),
            ],
        );
        Ok(())
    }

    /// Sends an audio message (an FLV audio tag body).
    pub fn send_audio(&mut self, timestamp: u32, payload: Bytes) -> Result<Admission, UsageError> {
        self.send_media(MediaMessage::audio(timestamp, payload))
    }

    /// Sends a video message (an FLV video tag body).
    pub fn send_video(&mut self, timestamp: u32, payload: Bytes) -> Result<Admission, UsageError> {
        self.send_media(MediaMessage::video(timestamp, payload))
    }

    /// Sends a media message, or drops it if the output is backed up (see [`DropPolicy`]).
    /// The payload is copied once, into the output buffer.
    pub fn send_media(&mut self, msg: MediaMessage) -> Result<Admission, UsageError> {
        self.check_publishing()?;
        let admission = self.policy.admit(&msg, self.conn.out.len());
        if admission == Admission::Queued {
            let (csid, type_id) = match msg.kind {
                MediaKind::Audio => (csid::AUDIO, msg_type::AUDIO),
                MediaKind::Video => (csid::VIDEO, msg_type::VIDEO),
            };
            let header = MessageHeader {
                timestamp: msg.timestamp,
                type_id,
                stream_id: self.stream_id,
            };
            self.conn
                .enc
                .write(csid, header, &msg.payload, &mut self.conn.out);
        }
        Ok(admission)
    }

    /// Ends the publish: queues FCUnpublish and deleteStream and closes the session
    /// (flush [`ClientSession::pending_output`], then close the socket).
    pub fn stop(&mut self) {
        if self.is_over() {
            return;
        }
        if self.state == ClientState::PublishRequested || self.state == ClientState::Publishing {
            self.conn.write_amf(
                csid::COMMAND,
                msg_type::COMMAND_AMF0,
                0,
                0,
                &[
                    "FCUnpublish".into(),
                    6.0.into(),
                    Value::Null,
                    self.config.stream_key.as_str().into(),
                ],
            );
            self.conn.write_amf(
                csid::COMMAND,
                msg_type::COMMAND_AMF0,
                0,
                0,
                &[
                    "deleteStream".into(),
                    7.0.into(),
                    Value::Null,
                    (self.stream_id as f64).into(),
                ],
            );
        }
        self.state = ClientState::Closed;
        self.deadline = None;
        self.events.push_back(Event::Closed {
            reason: CloseReason::Stopped,
            was_publishing: self.was_publishing,
        });
    }
}
