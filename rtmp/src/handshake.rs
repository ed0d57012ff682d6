//! The RTMP handshake (the "simple" handshake of the RTMP specification, section 5.2),
//! both sides, sans-IO: the random bytes and the time are passed in.
//!
//! Client: C0+C1 -> (S0+S1+S2) -> C2. Server: (C0+C1) -> S0+S1+S2 -> (C2).
//! As librtmp and ffmpeg do, the echo in S2/C2 is not checked (servers using the digest
//! handshake answer a simple C1 with an S2 that is not a plain echo).

use bytes::{BufMut, BytesMut};

use crate::error::HandshakeError;

/// The RTMP version sent in C0/S0 and the only one accepted.
pub const RTMP_VERSION: u8 = 3;
/// Length of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// Length of the random part of C1/S1.
pub const RANDOM_SIZE: usize = HANDSHAKE_SIZE - 8;

fn write_c1_s1(time: u32, random: &[u8; RANDOM_SIZE], out: &mut BytesMut) {
    out.put_u32(time);
    out.put_u32(0);
    out.put_slice(random);
}

/// Writes C2/S2: the peer's C1/S1 with its second time field set to `now`.
fn write_echo(peer: &[u8], now: u32, out: &mut BytesMut) {
    out.put_slice(&peer[..4]);
    out.put_u32(now);
    out.put_slice(&peer[8..HANDSHAKE_SIZE]);
}

/// Progress reported by a handshake step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// How many bytes of the input belonged to the handshake; the rest (if any) is
    /// chunk stream data.
    pub consumed: usize,
    /// Whether the handshake is complete.
    pub done: bool,
}

/// Appends from `input` to `buf` until `buf` holds `want` bytes; returns bytes taken.
fn fill(buf: &mut Vec<u8>, want: usize, input: &[u8]) -> usize {
    let take = want.saturating_sub(buf.len()).min(input.len());
    buf.extend_from_slice(&input[..take]);
    take
}

/// Checks the version byte (S0 or C0) before it is taken: `buf` holds what arrived
/// of S0+S1 (or C0+C1) so far, `input` the new bytes.
fn check_version(buf: &[u8], input: &[u8]) -> Result<(), HandshakeError> {
    match (buf.first(), input.first()) {
        (None, Some(&version)) if version != RTMP_VERSION => {
            Err(HandshakeError::UnsupportedVersion { version })
        }
        _ => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    AwaitS0S1,
    AwaitS2,
    Done,
}

/// The client side of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    state: ClientState,
    buf: Vec<u8>,
    error: Option<HandshakeError>,
}

impl ClientHandshake {
    /// Starts the handshake: writes C0+C1 to `out`. `time` is the client's epoch in
    /// milliseconds (0 is fine).
    pub fn new(time: u32, random: &[u8; RANDOM_SIZE], out: &mut BytesMut) -> Self {
        out.reserve(1 + HANDSHAKE_SIZE);
        out.put_u8(RTMP_VERSION);
        write_c1_s1(time, random, out);
        ClientHandshake {
            state: ClientState::AwaitS0S1,
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            error: None,
        }
    }

    /// Whether the handshake is complete.
    pub fn is_done(&self) -> bool {
        self.state == ClientState::Done
    }

    /// Feeds bytes from the server; writes C2 to `out` once S1 is in. `now` is the
    /// client's time in milliseconds (for C2's second time field). Errors are sticky.
    pub fn handle_input(
        &mut self,
        now: u32,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<Progress, HandshakeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut consumed = 0;
        loop {
            match self.state {
                ClientState::AwaitS0S1 => {
                    if let Err(e) = check_version(&self.buf, &input[consumed..]) {
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                    consumed += fill(&mut self.buf, 1 + HANDSHAKE_SIZE, &input[consumed..]);
                    if self.buf.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(Progress {
                            consumed,
                            done: false,
                        });
                    }
                    write_echo(&self.buf[1..], now, out);
                    self.buf.clear();
                    self.state = ClientState::AwaitS2;
                }
                ClientState::AwaitS2 => {
                    consumed += fill(&mut self.buf, HANDSHAKE_SIZE, &input[consumed..]);
                    if self.buf.len() < HANDSHAKE_SIZE {
                        return Ok(Progress {
                            consumed,
                            done: false,
                        });
                    }
                    self.buf = Vec::new();
                    self.state = ClientState::Done;
                }
                ClientState::Done => {
                    return Ok(Progress {
                        consumed,
                        done: true,
                    })
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitC0C1,
    AwaitC2,
    Done,
}

/// The server side of the handshake.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    time: u32,
    random: Box<[u8; RANDOM_SIZE]>,
    buf: Vec<u8>,
    error: Option<HandshakeError>,
}

impl ServerHandshake {
    /// Prepares the server side; nothing is sent before C0+C1 arrive.
    pub fn new(time: u32, random: &[u8; RANDOM_SIZE]) -> Self {
        ServerHandshake {
            state: ServerState::AwaitC0C1,
            time,
            random: Box::new(*random),
            buf: Vec::with_capacity(1 + HANDSHAKE_SIZE),
            error: None,
        }
    }

    /// Whether the handshake is complete.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// Feeds bytes from the client; writes S0+S1+S2 to `out` once C1 is in. Errors are
    /// sticky.
    pub fn handle_input(
        &mut self,
        now: u32,
        input: &[u8],
        out: &mut BytesMut,
    ) -> Result<Progress, HandshakeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut consumed = 0;
        loop {
            match self.state {
                ServerState::AwaitC0C1 => {
                    if let Err(e) = check_version(&self.buf, &input[consumed..]) {
                        self.error = Some(e.clone());
                        return Err(e);
                    }
                    consumed += fill(&mut self.buf, 1 + HANDSHAKE_SIZE, &input[consumed..]);
                    if self.buf.len() < 1 + HANDSHAKE_SIZE {
                        return Ok(Progress {
                            consumed,
                            done: false,
                        });
                    }
                    out.reserve(1 + 2 * HANDSHAKE_SIZE);
                    out.put_u8(RTMP_VERSION);
                    write_c1_s1(self.time, &self.random, out);
                    write_echo(&self.buf[1..], now, out);
                    self.buf.clear();
                    self.state = ServerState::AwaitC2;
                }
                ServerState::AwaitC2 => {
                    consumed += fill(&mut self.buf, HANDSHAKE_SIZE, &input[consumed..]);
                    if self.buf.len() < HANDSHAKE_SIZE {
                        return Ok(Progress {
                            consumed,
                            done: false,
                        });
                    }
                    self.buf = Vec::new();
                    self.state = ServerState::Done;
                }
                ServerState::Done => {
                    return Ok(Progress {
                        consumed,
                        done: true,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(seed: u8) -> [u8; RANDOM_SIZE] {
        let mut r = [0u8; RANDOM_SIZE];
        for (i, b) in r.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(seed);
        }
        r
    }

    #[test]
    fn c0_c1_layout() {
        let mut out = BytesMut::new();
        let _ = ClientHandshake::new(0x01020304, &random(7), &mut out);
        assert_eq!(out.len(), 1537);
        assert_eq!(&out[..9], &[3, 1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(&out[9..], &random(7)[..]);
    }

    #[test]
    fn client_and_server_complete_with_any_split() {
        for split in [1usize, 2, 7, 1536, 1537, 1538, 3073, 5000] {
            let mut c_out = BytesMut::new();
            let mut s_out = BytesMut::new();
            let mut client = ClientHandshake::new(10, &random(1), &mut c_out);
            let mut server = ServerHandshake::new(20, &random(2));
            // Client -> server, in pieces, with trailing chunk data after C2.
            let mut c_bytes = c_out.split();
            let mut s_done = false;
            for piece in c_bytes.chunks(split) {
                let p = server.handle_input(30, piece, &mut s_out).unwrap();
                assert_eq!(p.consumed, piece.len());
                s_done = p.done;
            }
            assert!(!s_done);
            let s_bytes = s_out.split();
            assert_eq!(s_bytes.len(), 1 + 2 * HANDSHAKE_SIZE);
            assert_eq!(
                &s_bytes[1 + HANDSHAKE_SIZE + 8..],
                &random(1)[..],
                "S2 echoes C1"
            );
            for piece in s_bytes.chunks(split) {
                let p = client.handle_input(40, piece, &mut c_out).unwrap();
                assert_eq!(p.consumed, piece.len());
            }
            assert!(client.is_done());
            c_bytes = c_out.split();
            assert_eq!(c_bytes.len(), HANDSHAKE_SIZE);
            assert_eq!(&c_bytes[8..], &random(2)[..], "C2 echoes S1");
            assert_eq!(&c_bytes[4..8], &40u32.to_be_bytes());
            let mut with_tail = c_bytes.to_vec();
            with_tail.extend_from_slice(b"chunkdata");
            let p = server.handle_input(50, &with_tail, &mut s_out).unwrap();
            assert_eq!(
                p,
                Progress {
                    consumed: HANDSHAKE_SIZE,
                    done: true
                }
            );
        }
    }

    #[test]
    fn wrong_version_is_an_error() {
        let mut out = BytesMut::new();
        let mut server = ServerHandshake::new(0, &random(0));
        assert_eq!(
            server.handle_input(0, &[6, 0, 0], &mut out),
            Err(HandshakeError::UnsupportedVersion { version: 6 })
        );
        let mut client = ClientHandshake::new(0, &random(0), &mut out);
        let err = client.handle_input(0, &[0x48], &mut out).unwrap_err();
        assert!(err.to_string().contains("version 72"), "{err}");
    }

    #[test]
    fn wrong_version_stays_an_error_on_later_calls() {
        // Found by the rtmp_handshake fuzz target: the version byte was only checked
        // on the call that brought it, so the next call went on with the handshake.
        let mut out = BytesMut::new();
        let mut server = ServerHandshake::new(0, &random(0));
        let err = server.handle_input(0, &[6; 1537], &mut out).unwrap_err();
        assert_eq!(
            server.handle_input(0, &[3; 1537], &mut out),
            Err(err.clone())
        );
        assert_eq!(server.handle_input(0, &[3; 1536], &mut out), Err(err));
        assert!(out.is_empty(), "no S0/S1/S2 after a version error");
        assert!(!server.is_done());

        let mut client = ClientHandshake::new(0, &random(0), &mut out);
        out.clear();
        let err = client.handle_input(0, &[0x48], &mut out).unwrap_err();
        assert_eq!(client.handle_input(0, &[3; 3073], &mut out), Err(err));
        assert!(out.is_empty(), "no C2 after a version error");
        assert!(!client.is_done());
    }
}
