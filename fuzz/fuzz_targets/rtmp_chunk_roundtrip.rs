//! RTMP chunk encoder -> decoder: a fuzzer-chosen sequence of messages (any chunk
//! stream id, timestamps that jump, go backwards and need the extended field, Set
//! Chunk Size changes in between) comes back equal, at the offsets the encoder wrote
//! each message, and the decoded messages are the same however the bytes are split.
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use rtmp::chunk::{
    msg_type, ChunkDecoder, ChunkEncoder, DecoderConfig, MessageHeader, RawMessage, MAX_CHUNK_SIZE,
};

#[derive(Debug, Arbitrary)]
enum Step {
    Message {
        csid: u16,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: Vec<u8>,
    },
    /// The same chunk stream, type and length as the previous message, `delta` later:
    /// what makes the encoder compress to fmt 2 and fmt 3.
    Repeat {
        delta: u32,
        fill: u8,
    },
    SetChunkSize(u32),
}

#[derive(Debug, Arbitrary)]
struct Input {
    steps: Vec<Step>,
    splits: Vec<u16>,
}

/// A chunk stream id in the encoder's range 2..=65599, biased to the forms' edges.
fn csid(v: u16) -> u32 {
    match v % 8 {
        0 => 2 + u32::from(v >> 3) % 62,
        1 => 64 + u32::from(v >> 3) % 256,
        2 => 63 + u32::from(v >> 3) % 3,
        3 => 319 + u32::from(v >> 3) % 3,
        _ => 2 + u32::from(v) % 65598,
    }
}

/// A chunk size in 1..=MAX_CHUNK_SIZE, mostly small enough to split the payloads.
fn chunk_size(v: u32) -> u32 {
    match v % 4 {
        0 => 1 + (v >> 2) % 16,
        1 => 1 + (v >> 2) % 512,
        2 => 1 + (v >> 2) % 70_000,
        _ => 1 + v % MAX_CHUNK_SIZE,
    }
}

fn decode(bytes: &[u8], pieces: &[usize], max_streams: usize) -> (Vec<RawMessage>, ChunkDecoder) {
    let mut dec = ChunkDecoder::new(DecoderConfig {
        max_chunk_streams: max_streams,
        ..DecoderConfig::default()
    });
    let mut out = Vec::new();
    let mut rest = bytes;
    for &n in pieces {
        let (a, b) = rest.split_at(n.min(rest.len()));
        dec.decode(a, &mut out).expect("encoded chunks decode");
        rest = b;
    }
    dec.decode(rest, &mut out).expect("encoded chunks decode");
    (out, dec)
}

fuzz_target!(|input: Input| {
    let mut enc = ChunkEncoder::new();
    let mut wire = BytesMut::new();
    let mut expected: Vec<RawMessage> = Vec::new();
    for step in input.steps.iter().take(256) {
        let offset = wire.len() as u64;
        match step {
            Step::Message {
                csid: c,
                timestamp,
                type_id,
                stream_id,
                payload,
            } => {
                // Set Chunk Size and Abort change how the decoder reads what follows:
                // they are only sent through the encoder's own method (below).
                let type_id = match *type_id {
                    msg_type::SET_CHUNK_SIZE | msg_type::ABORT => msg_type::VIDEO,
                    t => t,
                };
                let header = MessageHeader {
                    timestamp: *timestamp,
                    type_id,
                    stream_id: *stream_id,
                };
                enc.write(csid(*c), header, payload, &mut wire);
                expected.push(RawMessage {
                    csid: csid(*c),
                    header,
                    payload: Bytes::copy_from_slice(payload),
                    offset,
                });
            }
            Step::Repeat { delta, fill } => {
                let Some(prev) = expected
                    .iter()
                    .rev()
                    .find(|m| m.header.type_id != msg_type::SET_CHUNK_SIZE)
                    .cloned()
                else {
                    continue;
                };
                let header = MessageHeader {
                    timestamp: prev.header.timestamp.wrapping_add(*delta),
                    ..prev.header
                };
                let payload = vec![*fill; prev.payload.len()];
                enc.write(prev.csid, header, &payload, &mut wire);
                expected.push(RawMessage {
                    csid: prev.csid,
                    header,
                    payload: payload.into(),
                    offset,
                });
            }
            Step::SetChunkSize(v) => {
                let size = chunk_size(*v);
                enc.write_set_chunk_size(size, &mut wire);
                expected.push(RawMessage {
                    csid: 2,
                    header: MessageHeader {
                        timestamp: 0,
                        type_id: msg_type::SET_CHUNK_SIZE,
                        stream_id: 0,
                    },
                    payload: Bytes::copy_from_slice(&size.to_be_bytes()),
                    offset,
                });
            }
        }
    }
    let max_streams = expected.len() + 1;

    let (whole, dec) = decode(&wire, &[], max_streams);
    assert_eq!(whole, expected);
    assert_eq!(dec.offset(), wire.len() as u64);
    assert_eq!(dec.chunk_size(), enc.chunk_size());

    let pieces: Vec<usize> = input.splits.iter().map(|&s| usize::from(s)).collect();
    let (split, dec) = decode(&wire, &pieces, max_streams);
    assert_eq!(split, expected);
    assert_eq!(dec.offset(), wire.len() as u64);

    if wire.len() <= 1 << 14 {
        let (bytewise, _) = decode(&wire, &vec![1; wire.len()], max_streams);
        assert_eq!(bytewise, expected);
    }
});
