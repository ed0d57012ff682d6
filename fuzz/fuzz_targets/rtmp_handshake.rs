//! RTMP handshake, both sides. Fed arbitrary bytes in arbitrary pieces, neither side
//! panics, consumes more than the handshake, or depends on the split: the error, the
//! bytes consumed and the bytes written are the same for one single call; a version
//! error is sticky. A real client and server with fuzzer-chosen random bytes, times
//! and splits always complete, echo each other's C1/S1 and leave trailing chunk data
//! unconsumed.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtmp::handshake::{ClientHandshake, ServerHandshake, HANDSHAKE_SIZE, RANDOM_SIZE};
use rtmp::HandshakeError;
use streamify_fuzz::pieces;

#[derive(Debug, Arbitrary)]
struct Input {
    client_time: u32,
    server_time: u32,
    now: u32,
    client_random: Vec<u8>,
    server_random: Vec<u8>,
    splits: Vec<u16>,
    tail: Vec<u8>,
    garbage: Vec<u8>,
}

fn random(seed: &[u8]) -> [u8; RANDOM_SIZE] {
    let mut r = [0u8; RANDOM_SIZE];
    if !seed.is_empty() {
        for (b, s) in r.iter_mut().zip(seed.iter().cycle()) {
            *b = *s;
        }
    }
    r
}

trait Side {
    fn feed(
        &mut self,
        now: u32,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<(usize, bool), HandshakeError>;
}

impl Side for ClientHandshake {
    fn feed(
        &mut self,
        now: u32,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<(usize, bool), HandshakeError> {
        self.handle_input(now, input, out)
            .map(|p| (p.consumed, p.done))
    }
}

impl Side for ServerHandshake {
    fn feed(
        &mut self,
        now: u32,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<(usize, bool), HandshakeError> {
        self.handle_input(now, input, out)
            .map(|p| (p.consumed, p.done))
    }
}

/// Feeds the pieces until an error; returns (consumed, done, error, output).
fn feed_all(
    side: &mut dyn Side,
    now: u32,
    pieces: &[&[u8]],
    mut out: BytesMut,
) -> (usize, bool, Option<HandshakeError>, BytesMut) {
    let mut consumed = 0;
    let mut done = false;
    for piece in pieces {
        match side.feed(now, piece, &mut out) {
            Ok((n, d)) => {
                assert!(n <= piece.len());
                // Once done, nothing more is consumed; before, a piece is taken whole.
                if !done && !d {
                    assert_eq!(n, piece.len());
                }
                if done {
                    assert_eq!(n, 0);
                }
                consumed += n;
                done = d;
            }
            Err(e) => {
                let len = out.len();
                assert_eq!(side.feed(now, piece, &mut out).unwrap_err(), e, "sticky");
                assert_eq!(
                    side.feed(now, &[3; 1537], &mut out).unwrap_err(),
                    e,
                    "sticky"
                );
                assert_eq!(out.len(), len, "no output after an error");
                return (consumed, done, Some(e), out);
            }
        }
    }
    (consumed, done, None, out)
}

fn check_arbitrary(input: &Input, server: bool) {
    let garbage = &input.garbage[..];
    let run = |pieces: &[&[u8]]| {
        let mut out = BytesMut::new();
        let mut side: Box<dyn Side> = if server {
            Box::new(ServerHandshake::new(
                input.server_time,
                &random(&input.server_random),
            ))
        } else {
            Box::new(ClientHandshake::new(
                input.client_time,
                &random(&input.client_random),
                &mut out,
            ))
        };
        feed_all(side.as_mut(), input.now, pieces, out)
    };
    let whole = run(&[garbage]);
    let split = run(&pieces(garbage, &input.splits));
    assert_eq!(whole, split);
    let (consumed, done, err, out) = whole;
    let full = 1 + 2 * HANDSHAKE_SIZE;
    assert!(consumed <= full);
    assert_eq!(done, consumed == full);
    match garbage.first() {
        Some(&v) if v != 3 => {
            assert_eq!(err, Some(HandshakeError::UnsupportedVersion { version: v }));
        }
        _ => assert_eq!(err, None),
    }
    // What each side writes, and when.
    let written = if server {
        if consumed > HANDSHAKE_SIZE {
            1 + 2 * HANDSHAKE_SIZE
        } else {
            0
        }
    } else if consumed >= 1 + HANDSHAKE_SIZE {
        1 + 2 * HANDSHAKE_SIZE
    } else {
        1 + HANDSHAKE_SIZE
    };
    assert_eq!(out.len(), written);
}

fuzz_target!(|input: Input| {
    check_arbitrary(&input, false);
    check_arbitrary(&input, true);

    // A real pair.
    let c_random = random(&input.client_random);
    let s_random = random(&input.server_random);
    let mut c_out = BytesMut::new();
    let mut s_out = BytesMut::new();
    let mut client = ClientHandshake::new(input.client_time, &c_random, &mut c_out);
    let mut server = ServerHandshake::new(input.server_time, &s_random);
    let c0c1 = c_out.split();
    let (consumed, done, err, s_bytes) = feed_all(
        &mut server,
        input.now,
        &pieces(&c0c1, &input.splits),
        s_out.split(),
    );
    assert_eq!((consumed, done, err), (c0c1.len(), false, None));
    assert_eq!(s_bytes.len(), 1 + 2 * HANDSHAKE_SIZE);
    assert_eq!(s_bytes[0], 3);
    assert_eq!(&s_bytes[1..5], &input.server_time.to_be_bytes());
    assert_eq!(&s_bytes[9..1 + HANDSHAKE_SIZE], &s_random[..]);
    assert_eq!(
        &s_bytes[1 + HANDSHAKE_SIZE..][..4],
        &input.client_time.to_be_bytes()
    );
    assert_eq!(
        &s_bytes[1 + HANDSHAKE_SIZE + 8..],
        &c_random[..],
        "S2 echoes C1"
    );

    let mut with_tail = s_bytes.to_vec();
    with_tail.extend_from_slice(&input.tail);
    let (consumed, done, err, c2) = feed_all(
        &mut client,
        input.now,
        &pieces(&with_tail, &input.splits),
        c_out.split(),
    );
    assert_eq!((consumed, done, err), (s_bytes.len(), true, None));
    assert!(client.is_done());
    assert_eq!(c2.len(), HANDSHAKE_SIZE);
    assert_eq!(&c2[..4], &input.server_time.to_be_bytes());
    assert_eq!(&c2[4..8], &input.now.to_be_bytes());
    assert_eq!(&c2[8..], &s_random[..], "C2 echoes S1");

    let mut with_tail = c2.to_vec();
    with_tail.extend_from_slice(&input.tail);
    let (consumed, done, err, rest) = feed_all(
        &mut server,
        input.now,
        &pieces(&with_tail, &input.splits),
        s_out.split(),
    );
    assert_eq!((consumed, done, err), (HANDSHAKE_SIZE, true, None));
    assert!(server.is_done());
    assert!(rest.is_empty());
});
