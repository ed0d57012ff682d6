//! A client and a server session driven against each other in memory, with a virtual clock.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtmp::chunk::{msg_type, ChunkDecoder, DecoderConfig, RawMessage};
use rtmp::handshake::RANDOM_SIZE;
use rtmp::{
    Admission, ClientConfig, ClientSession, ClientState, CloseReason, Error, Event, MediaKind,
    ServerConfig, ServerEvent, ServerSession, SessionError,
};

const AVC_SEQ: &[u8] = &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff];
const AAC_SEQ: &[u8] = &[0xaf, 0, 0x11, 0x90];

fn key_frame(len: usize) -> Bytes {
    let mut v = vec![0x17, 1, 0, 0, 0];
    v.extend((0..len).map(|i| (i * 13) as u8));
    Bytes::from(v)
}

fn inter_frame(len: usize) -> Bytes {
    let mut v = vec![0x27, 1, 0, 0, 0];
    v.extend((0..len).map(|i| (i * 7) as u8));
    Bytes::from(v)
}

struct Pair {
    now: Instant,
    client: ClientSession,
    server: ServerSession,
    client_events: Vec<Event>,
    server_events: Vec<ServerEvent>,
    /// Everything the client sent, for inspecting its chunk stream.
    client_wire: Vec<u8>,
    /// Split client->server bytes into pieces of this size.
    piece: usize,
    accept: bool,
}

impl Pair {
    fn new(server_config: ServerConfig) -> Pair {
        let now = Instant::now();
        let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key?x=1");
        Pair {
            now,
            client: ClientSession::new(config, now, &[1; RANDOM_SIZE]),
            server: ServerSession::new(server_config, now, &[2; RANDOM_SIZE]),
            client_events: Vec::new(),
            server_events: Vec::new(),
            client_wire: Vec::new(),
            piece: usize::MAX,
            accept: true,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
    }

    /// Moves bytes both ways until nothing is left to move.
    fn run(&mut self) {
        loop {
            let c = self.client.pending_output().to_vec();
            self.client.consume_output(c.len());
            let s = self.server.pending_output().to_vec();
            self.server.consume_output(s.len());
            if c.is_empty() && s.is_empty() {
                break;
            }
            self.client_wire.extend_from_slice(&c);
            for piece in c.chunks(self.piece.max(1)) {
                let _ = self.server.handle_input(self.now, piece);
            }
            while let Some(e) = self.server.poll_event() {
                if let ServerEvent::PublishRequested { stream_id, .. } = &e {
                    if self.accept {
                        self.server.accept_publish(*stream_id).unwrap();
                    } else {
                        self.server
                            .reject_publish(*stream_id, "NetStream.Publish.BadName", "bad key")
                            .unwrap();
                    }
                }
                self.server_events.push(e);
            }
            let _ = self.client.handle_input(self.now, &s);
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
        }
    }

    fn publishing() -> Pair {
        let mut p = Pair::new(ServerConfig::default());
        p.run();
        assert_eq!(
            p.client.state(),
            ClientState::Publishing,
            "{:?}",
            p.client_events
        );
        p
    }

    fn media(&self) -> Vec<(MediaKind, u32, Bytes)> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::Media {
                    kind,
                    timestamp,
                    payload,
                    ..
                } => Some((*kind, *timestamp, payload.clone())),
                _ => None,
            })
            .collect()
    }

    /// The client's messages after the handshake.
    fn client_messages(&self) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        dec.decode(&self.client_wire[1 + 2 * 1536..], &mut out)
            .unwrap();
        out
    }
}

#[test]
fn connect_publish_media_and_stop() {
    let mut p = Pair::publishing();
    assert_eq!(
        p.client_events,
        vec![Event::Connected, Event::Publishing { stream_id: 1 }]
    );
    assert!(matches!(
        &p.server_events[..2],
        [ServerEvent::Connected { app, tc_url: Some(tc) }, ServerEvent::PublishRequested { key, stream_id: 1 }]
            if app == "live" && tc == "rtmp://127.0.0.1/live" && key == "key?x=1"
    ));
    let meta = [
        &[2, 0, 10][..],
        b"onMetaData",
        &[8, 0, 0, 0, 1, 0, 5],
        b"width",
        &[0, 0x40, 0x94, 0, 0, 0, 0, 0, 0, 0, 0, 9],
    ]
    .concat();
    p.client.send_metadata_tag(0, &meta).unwrap();
    let mut sent = vec![
        (MediaKind::Video, 0, Bytes::from_static(AVC_SEQ)),
        (MediaKind::Audio, 0, Bytes::from_static(AAC_SEQ)),
    ];
    for i in 0..90u32 {
        let v = if i % 30 == 0 {
            key_frame(20_000)
        } else {
            inter_frame(3000 + i as usize)
        };
        sent.push((MediaKind::Video, i * 33, v));
        sent.push((
            MediaKind::Audio,
            i * 21,
            Bytes::from(vec![0xaf, 1, i as u8, 3, 4]),
        ));
    }
    for (kind, ts, payload) in &sent {
        let adm = match kind {
            MediaKind::Video => p.client.send_video(*ts, payload.clone()),
            MediaKind::Audio => p.client.send_audio(*ts, payload.clone()),
        };
        assert_eq!(adm, Ok(Admission::Queued));
        p.run();
    }
    assert_eq!(p.media(), sent);
    let metadata: Vec<_> = p
        .server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Metadata { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(metadata, vec![Bytes::from(meta)]);
    p.client.stop();
    p.run();
    assert!(p
        .server_events
        .contains(&ServerEvent::Unpublished { stream_id: 1 }));
    assert_eq!(
        p.client_events.last(),
        Some(&Event::Closed {
            reason: CloseReason::Stopped,
            was_publishing: true
        })
    );
    // The client announced chunk size 4096 first, and sent the publish sequence in order.
    let msgs = p.client_messages();
    assert_eq!(msgs[0].header.type_id, msg_type::SET_CHUNK_SIZE);
    assert_eq!(&msgs[0].payload[..], &4096u32.to_be_bytes());
    let names: Vec<String> = msgs
        .iter()
        .filter(|m| m.header.type_id == msg_type::COMMAND_AMF0)
        .map(|m| {
            flv::amf0::decode_all(&m.payload).unwrap()[0]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "connect",
            "releaseStream",
            "FCPublish",
            "createStream",
            "publish",
            "FCUnpublish",
            "deleteStream"
        ]
    );
    let connect = flv::amf0::decode_all(&msgs[1].payload).unwrap();
    assert_eq!(
        connect[2].get("type").and_then(|v| v.as_str()),
        Some("nonprivate")
    );
    assert!(connect[2].get("flashVer").is_some());
}

#[test]
fn client_bytes_split_one_at_a_time() {
    let mut p = Pair::new(ServerConfig::default());
    p.piece = 1;
    p.run();
    assert_eq!(p.client.state(), ClientState::Publishing);
    // Extended timestamps through the whole path.
    let base = 0x00FF_FFF0u32;
    let mut sent = Vec::new();
    for i in 0..10u32 {
        let v = if i == 0 {
            key_frame(9000)
        } else {
            inter_frame(5000)
        };
        p.client.send_video(base + i * 33, v.clone()).unwrap();
        sent.push((MediaKind::Video, base + i * 33, v));
    }
    p.run();
    assert_eq!(p.media(), sent);
}

#[test]
fn refused_publish_is_a_rejected_event() {
    let mut p = Pair::new(ServerConfig::default());
    p.accept = false;
    p.run();
    assert_eq!(
        p.client_events,
        vec![
            Event::Connected,
            Event::Rejected {
                code: "NetStream.Publish.BadName".into(),
                description: "bad key".into()
            }
        ]
    );
    assert_eq!(p.client.state(), ClientState::Rejected);
    assert_eq!(
        p.client.send_video(0, key_frame(10)),
        Err(rtmp::UsageError::Closed)
    );
}

#[test]
fn media_before_publishing_is_a_usage_error() {
    let mut p = Pair::new(ServerConfig::default());
    assert_eq!(
        p.client.send_audio(0, Bytes::from_static(AAC_SEQ)),
        Err(rtmp::UsageError::NotPublishing)
    );
    p.run();
    assert!(p.client.send_audio(0, Bytes::from_static(AAC_SEQ)).is_ok());
}

#[test]
fn ping_request_is_answered_and_acks_follow_the_window() {
    let mut p = Pair::new(ServerConfig {
        window_ack_size: 1000,
        ..ServerConfig::default()
    });
    p.run();
    p.server.ping(0xABCD);
    p.run();
    let msgs = p.client_messages();
    let pong = msgs
        .iter()
        .find(|m| m.header.type_id == msg_type::USER_CONTROL)
        .expect("ping response");
    assert_eq!(&pong.payload[..], &[0, 7, 0, 0, 0xAB, 0xCD]);
    // The server asked for acks every 1000 bytes and sent more than 3000 (S0-S2 alone).
    let ack = msgs
        .iter()
        .find(|m| m.header.type_id == msg_type::ACKNOWLEDGEMENT)
        .expect("acknowledgement");
    assert!(u32::from_be_bytes(ack.payload[..4].try_into().unwrap()) >= 3073);
    assert!(p.server.peer_acknowledged().is_some());
    // Set Peer Bandwidth was answered with a Window Acknowledgement Size.
    assert!(msgs
        .iter()
        .any(|m| m.header.type_id == msg_type::WINDOW_ACK_SIZE));
}

#[test]
fn silent_server_times_out_on_the_virtual_clock() {
    let mut p = Pair::new(ServerConfig::default());
    let deadline = p.client.poll_timeout().unwrap();
    assert_eq!(deadline, p.now + Duration::from_secs(10));
    p.advance(Duration::from_secs(9));
    assert!(p.client.poll_event().is_none());
    p.advance(Duration::from_secs(1));
    let e = p.client.poll_event().unwrap();
    assert!(
        matches!(&e, Event::ProtocolError(Error::Session(SessionError::Timeout { waiting_for, .. })) if waiting_for.contains("handshake")),
        "{e:?}"
    );
    assert_eq!(p.client.state(), ClientState::Failed);
    assert!(p.client.poll_timeout().is_none());
}

#[test]
fn garbage_from_the_server_is_a_sticky_error_that_says_where() {
    let mut p = Pair::publishing();
    let garbage = [0x45, 0, 0, 0, 0, 0, 1, 20, 0xff];
    let err = p.client.handle_input(p.now, &garbage).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("chunk stream 5"), "{text}");
    assert!(text.contains("byte offset"), "{text}");
    assert_eq!(p.client.handle_input(p.now, &[]), Err(err.clone()));
    assert!(matches!(p.client.poll_event(), Some(Event::ProtocolError(e)) if e == err));
    assert_eq!(
        p.client.send_video(0, key_frame(1)),
        Err(rtmp::UsageError::Failed(err))
    );
}

#[test]
fn malformed_command_error_names_the_message() {
    let mut p = Pair::publishing();
    // A complete AMF0 command message whose body is a number, not a name.
    let body = [0u8, 0x40, 0, 0, 0, 0, 0, 0, 0];
    let mut bytes = vec![0x03, 0, 0, 0, 0, 0, body.len() as u8, 20, 0, 0, 0, 0];
    bytes.extend_from_slice(&body);
    let err = p
        .client
        .handle_input(p.now, &bytes)
        .unwrap_err()
        .to_string();
    assert!(err.contains("message type 20"), "{err}");
    assert!(err.contains("command name must be a string"), "{err}");
    assert!(err.contains("00 40 00"), "{err}");
}

#[test]
fn server_closing_mid_publish_is_a_closed_event() {
    let mut p = Pair::publishing();
    p.client.send_video(0, key_frame(100)).unwrap();
    p.run();
    p.client.handle_eof();
    assert_eq!(
        p.client.poll_event(),
        Some(Event::Closed {
            reason: CloseReason::PeerClosed,
            was_publishing: true
        })
    );
    assert_eq!(
        p.client.send_video(33, inter_frame(10)),
        Err(rtmp::UsageError::Closed)
    );
    p.client.handle_eof();
    assert_eq!(p.client.poll_event(), None);
}

#[test]
fn back_pressure_drops_video_to_the_next_keyframe_never_headers_or_audio_first() {
    let mut p = Pair::new(ServerConfig::default());
    p.run();
    // Nothing is drained from here on until the end: the output backs up.
    let c = &mut p.client;
    c.send_video(0, Bytes::from_static(AVC_SEQ)).unwrap();
    c.send_audio(0, Bytes::from_static(AAC_SEQ)).unwrap();
    let mut queued_video = Vec::new();
    let mut ts = 0;
    for i in 0..200u32 {
        ts = i * 33;
        let v = if i % 60 == 0 {
            key_frame(60_000)
        } else {
            inter_frame(10_000)
        };
        if c.send_video(ts, v) == Ok(Admission::Queued) {
            queued_video.push(ts);
        }
        assert_eq!(
            c.send_audio(ts, Bytes::from(vec![0xaf, 1, 9])),
            Ok(Admission::Queued)
        );
    }
    let stats = c.drop_stats();
    assert!(stats.video_frames > 0, "{stats:?}");
    assert_eq!(stats.audio_frames, 0);
    // Sequence headers are never dropped, even when backed up.
    assert_eq!(
        c.send_video(ts, Bytes::from_static(AVC_SEQ)),
        Ok(Admission::Queued)
    );
    // Drain, then video resumes only at a keyframe.
    let out = c.pending_output().len();
    c.consume_output(out);
    assert_eq!(
        c.send_video(ts + 33, inter_frame(10)),
        Ok(Admission::Dropped)
    );
    assert_eq!(c.send_video(ts + 66, key_frame(10)), Ok(Admission::Queued));
    assert_eq!(
        c.send_video(ts + 99, inter_frame(10)),
        Ok(Admission::Queued)
    );
    // What was queued before the drops is a prefix of the first GOP.
    assert_eq!(queued_video[0], 0);
    assert!(queued_video.windows(2).all(|w| w[1] == w[0] + 33));
}

/// A client whose publish the in-memory server has been asked for but not answered yet.
fn awaiting_publish_answer() -> (Instant, ClientSession, ServerSession, u32) {
    let now = Instant::now();
    let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key");
    let mut client = ClientSession::new(config, now, &[1; RANDOM_SIZE]);
    let mut server = ServerSession::new(ServerConfig::default(), now, &[2; RANDOM_SIZE]);
    for _ in 0..10 {
        let c = client.pending_output().to_vec();
        client.consume_output(c.len());
        server.handle_input(now, &c).unwrap();
        while let Some(e) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = e {
                return (now, client, server, stream_id);
            }
        }
        let s = server.pending_output().to_vec();
        server.consume_output(s.len());
        client.handle_input(now, &s).unwrap();
    }
    panic!("no publish request");
}

/// Feeds `bytes` to a fresh [`awaiting_publish_answer`] client in one read and byte by
/// byte; both must give the same events, which are returned.
fn same_events_whatever_the_split(
    answer: impl Fn(&mut ServerSession, u32),
    tail: &[u8],
) -> Vec<Event> {
    let mut results = Vec::new();
    for piece in [usize::MAX, 1] {
        let (now, mut client, mut server, id) = awaiting_publish_answer();
        answer(&mut server, id);
        let mut bytes = server.pending_output().to_vec();
        bytes.extend_from_slice(tail);
        for p in bytes.chunks(piece) {
            let _ = client.handle_input(now, p);
        }
        let mut events = Vec::new();
        while let Some(e) = client.poll_event() {
            events.push(e);
        }
        results.push(events);
    }
    assert_eq!(
        results[0], results[1],
        "events depend on how the input was split"
    );
    results.remove(0)
}

/// An onStatus command on chunk stream 9 (unused by the server session), as a server
/// might send it.
fn on_status(level: &str, code: &str, description: &str) -> Vec<u8> {
    use flv::amf0::{encode, Value};
    let mut body = bytes::BytesMut::new();
    for v in [
        Value::from("onStatus"),
        Value::from(0.0),
        Value::Null,
        Value::Object(vec![
            ("level".into(), level.into()),
            ("code".into(), code.into()),
            ("description".into(), description.into()),
        ]),
    ] {
        encode(&v, &mut body);
    }
    let mut out = bytes::BytesMut::new();
    let header = rtmp::chunk::MessageHeader {
        timestamp: 0,
        type_id: msg_type::COMMAND_AMF0,
        stream_id: 1,
    };
    rtmp::chunk::ChunkEncoder::new().write(9, header, &body, &mut out);
    out.to_vec()
}

#[test]
fn messages_before_a_chunk_error_in_the_same_read_are_handled_first() {
    // Regression, split invariant of fuzz target rtmp_client_session: with the answer to publish and a bad
    // chunk header in one read, the client reported the error without the Publishing
    // that a byte-by-byte read reported.
    let events = same_events_whatever_the_split(
        |server, id| server.accept_publish(id).unwrap(),
        &[0x47, 0, 0, 0, 0, 0, 1, 9],
    );
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], Event::Connected);
    assert_eq!(events[1], Event::Publishing { stream_id: 1 });
    assert!(matches!(
        &events[2],
        Event::ProtocolError(Error::Chunk(rtmp::ChunkError::NoPreviousHeader {
            csid: 7,
            ..
        }))
    ));
}

#[test]
fn nothing_is_handled_after_a_rejection_in_the_same_read() {
    // Regression, split invariant of fuzz target rtmp_client_session: a status after the refusal in the same
    // read became an event after the terminal Rejected.
    let events = same_events_whatever_the_split(
        |server, id| {
            server
                .reject_publish(id, "NetStream.Publish.BadName", "taken")
                .unwrap()
        },
        &on_status("status", "NetStream.Publish.Start", "late"),
    );
    assert_eq!(
        events,
        vec![
            Event::Connected,
            Event::Rejected {
                code: "NetStream.Publish.BadName".into(),
                description: "taken".into()
            }
        ]
    );
}
