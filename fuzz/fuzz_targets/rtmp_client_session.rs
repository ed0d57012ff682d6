//! The publishing client session fed arbitrary server bytes after a real handshake
//! (and, as the fuzzer picks, after a real server already answered connect,
//! createStream and publish). Never panics; the events, the state and the error are
//! the same however the bytes are split into reads; the first error is the last
//! event, is sticky, and no output follows it; media is accepted exactly while
//! publishing.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtmp::handshake::{HANDSHAKE_SIZE, RANDOM_SIZE};
use rtmp::{
    ClientConfig, ClientSession, ClientState, Error, Event, ServerConfig, ServerEvent,
    ServerSession, UsageError,
};
use streamify_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    /// How far a real server gets before the fuzzer's bytes: 0 handshake only,
    /// 1 connect answered, 2 createStream answered, 3 publishing.
    stage: u8,
    bytes: Vec<u8>,
    splits: Vec<u16>,
    later_ms: u16,
}

/// A client that completed the handshake with a real server, which then answered
/// `stage` rounds; returns it with the instant used.
fn client_at(stage: u8) -> (ClientSession, Instant) {
    let now = Instant::now();
    let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key");
    let mut client = ClientSession::new(config, now, &[1; RANDOM_SIZE]);
    let mut server = ServerSession::new(ServerConfig::default(), now, &[2; RANDOM_SIZE]);
    let mut c = client.pending_output().to_vec();
    client.consume_output(c.len());
    server.handle_input(now, &c).unwrap();
    let s = server.pending_output().to_vec();
    server.consume_output(s.len());
    assert_eq!(s.len(), 1 + 2 * HANDSHAKE_SIZE);
    client.handle_input(now, &s).unwrap();
    for _ in 0..stage % 4 {
        c = client.pending_output().to_vec();
        client.consume_output(c.len());
        server.handle_input(now, &c).unwrap();
        while let Some(e) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = e {
                server.accept_publish(stream_id).unwrap();
            }
        }
        let s = server.pending_output().to_vec();
        server.consume_output(s.len());
        client.handle_input(now, &s).unwrap();
    }
    let expected = [
        ClientState::Connecting,
        ClientState::CreatingStream,
        ClientState::PublishRequested,
        ClientState::Publishing,
    ];
    assert_eq!(client.state(), expected[usize::from(stage % 4)]);
    while client.poll_event().is_some() {}
    (client, now)
}

struct Outcome {
    events: Vec<Event>,
    state: ClientState,
    error: Option<Error>,
}

fn run(stage: u8, pieces: &[&[u8]]) -> (Outcome, ClientSession, Instant) {
    let (mut client, now) = client_at(stage);
    let mut events = Vec::new();
    let mut first_err: Option<Error> = None;
    for piece in pieces {
        let before = client.queued_bytes();
        let result = client.handle_input(now, piece);
        while let Some(e) = client.poll_event() {
            assert!(
                !matches!(events.last(), Some(Event::ProtocolError(_))),
                "an event after the protocol error: {e:?}"
            );
            events.push(e);
        }
        match (&first_err, result) {
            (Some(e), r) => {
                assert_eq!(r.as_ref(), Err(e), "sticky");
                assert_eq!(client.queued_bytes(), before, "output after an error");
            }
            (None, Err(e)) => {
                assert_eq!(events.last(), Some(&Event::ProtocolError(e.clone())));
                assert_eq!(client.error(), Some(&e));
                first_err = Some(e);
            }
            (None, Ok(())) => assert_eq!(client.error(), None),
        }
    }
    let outcome = Outcome {
        events,
        state: client.state(),
        error: client.error().cloned(),
    };
    (outcome, client, now)
}

fuzz_target!(|input: Input| {
    let bytes = &input.bytes[..];
    let pieces = pieces(bytes, &input.splits);

    let (whole, mut client, now) = run(input.stage, &[bytes]);
    let (split, _, _) = run(input.stage, &pieces);
    assert_eq!(whole.events, split.events);
    assert_eq!(whole.state, split.state);
    assert_eq!(whole.error, split.error);
    assert_eq!(whole.state == ClientState::Failed, whole.error.is_some());

    // Media is accepted exactly while publishing; a failed session says why.
    let sent = client.send_video(0, Bytes::from_static(&[0x17, 1, 0, 0, 0, 0x65]));
    match (client.state(), client.error()) {
        (ClientState::Publishing, None) => assert!(sent.is_ok()),
        (_, Some(e)) => assert_eq!(sent, Err(UsageError::Failed(e.clone()))),
        (ClientState::Rejected | ClientState::Closed, None) => {
            assert_eq!(sent, Err(UsageError::Closed))
        }
        (_, None) => assert_eq!(sent, Err(UsageError::NotPublishing)),
    }

    // Timers: a pending deadline that passes fails the session with a timeout.
    let later = now + Duration::from_millis(u64::from(input.later_ms) * 200);
    let deadline = client.poll_timeout();
    let before = client.queued_bytes();
    client.handle_timeout(later);
    match deadline {
        Some(at) if later >= at && whole.error.is_none() => {
            assert!(matches!(client.error(), Some(Error::Session(_))));
            assert_eq!(client.state(), ClientState::Failed);
        }
        _ => assert_eq!(client.error(), whole.error.as_ref()),
    }
    if client.error().is_some() {
        assert_eq!(client.queued_bytes(), before);
        assert!(client.handle_input(later, &[0; 8]).is_err());
        assert_eq!(client.queued_bytes(), before);
    }
});
