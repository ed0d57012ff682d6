//! The server session fed arbitrary client bytes after a real handshake (and, as the
//! fuzzer picks, after a real client already connected, created a stream and had its
//! publish accepted). Never panics; the events and the error are the same however
//! the bytes are split into reads; the first error is the last event, is sticky, and
//! no output follows it; media events only come from streams that publish.
#![no_main]

use std::time::Instant;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rtmp::handshake::{HANDSHAKE_SIZE, RANDOM_SIZE};
use rtmp::{
    ClientConfig, ClientSession, Error, ServerConfig, ServerEvent, ServerSession, UsageError,
};
use streamify_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    /// How far a real client gets before the fuzzer's bytes: 0 handshake only,
    /// 1 connected, 2 stream created, 3 publishing (accepted).
    stage: u8,
    bytes: Vec<u8>,
    splits: Vec<u16>,
}

fn server_at(stage: u8) -> (ServerSession, Instant) {
    let now = Instant::now();
    let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key");
    let mut client = ClientSession::new(config, now, &[1; RANDOM_SIZE]);
    let mut server = ServerSession::new(ServerConfig::default(), now, &[2; RANDOM_SIZE]);
    let c = client.pending_output().to_vec();
    client.consume_output(c.len());
    server.handle_input(now, &c).unwrap();
    let s = server.pending_output().to_vec();
    server.consume_output(s.len());
    client.handle_input(now, &s).unwrap();
    // C2, then (in the same output) Set Chunk Size and connect.
    let mut c = client.pending_output().to_vec();
    client.consume_output(c.len());
    server.handle_input(now, &c[..HANDSHAKE_SIZE]).unwrap();
    c.drain(..HANDSHAKE_SIZE);
    for round in 0..stage % 4 {
        if round > 0 {
            let s = server.pending_output().to_vec();
            server.consume_output(s.len());
            client.handle_input(now, &s).unwrap();
            c = client.pending_output().to_vec();
            client.consume_output(c.len());
        }
        server.handle_input(now, &c).unwrap();
        while let Some(e) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = e {
                server.accept_publish(stream_id).unwrap();
            }
        }
    }
    (server, now)
}

fn run(stage: u8, pieces: &[&[u8]]) -> (Vec<ServerEvent>, Option<Error>, ServerSession) {
    let (mut server, now) = server_at(stage);
    let mut events = Vec::new();
    let mut first_err: Option<Error> = None;
    for piece in pieces {
        let before = server.pending_output().len();
        let result = server.handle_input(now, piece);
        while let Some(e) = server.poll_event() {
            assert!(
                !matches!(events.last(), Some(ServerEvent::ProtocolError(_))),
                "an event after the protocol error: {e:?}"
            );
            events.push(e);
        }
        match (&first_err, result) {
            (Some(e), r) => {
                assert_eq!(r.as_ref(), Err(e), "sticky");
                assert_eq!(
                    server.pending_output().len(),
                    before,
                    "output after an error"
                );
            }
            (None, Err(e)) => {
                assert_eq!(events.last(), Some(&ServerEvent::ProtocolError(e.clone())));
                assert_eq!(server.error(), Some(&e));
                first_err = Some(e);
            }
            (None, Ok(())) => assert_eq!(server.error(), None),
        }
    }
    (events, first_err, server)
}

fuzz_target!(|input: Input| {
    let bytes = &input.bytes[..];
    let pieces = pieces(bytes, &input.splits);

    let (events, error, mut server) = run(input.stage, &[bytes]);
    let (split_events, split_error, _) = run(input.stage, &pieces);
    assert_eq!(events, split_events);
    assert_eq!(error, split_error);

    // Media only on the publishing stream (1, if the real client got that far):
    // the fuzzer's bytes cannot have a publish accepted.
    for e in &events {
        if let ServerEvent::Media { stream_id, .. } | ServerEvent::Metadata { stream_id, .. } = e {
            assert!(input.stage % 4 == 3 && *stream_id == 1, "{e:?}");
        }
    }

    // Answering a publish request still works (or says why not).
    for e in &events {
        if let ServerEvent::PublishRequested { stream_id, .. } = e {
            let r = server.accept_publish(*stream_id);
            if let Some(err) = &error {
                assert_eq!(r, Err(UsageError::Failed(err.clone())));
            }
        }
    }
    server.ping(7);
    if error.is_some() {
        let before = server.pending_output().len();
        assert!(server.handle_input(Instant::now(), &[0; 4]).is_err());
        server.ping(8);
        assert_eq!(server.pending_output().len(), before);
    }
});
