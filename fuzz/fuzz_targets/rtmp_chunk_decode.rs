//! RTMP chunk decoder fed arbitrary bytes in arbitrary pieces: never panics, gives
//! the same messages and the same error as one single call, says where the error
//! is, and the error is sticky (every later call returns it and decodes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtmp::chunk::{ChunkDecoder, DecoderConfig, RawMessage};
use rtmp::ChunkError;

fn offset_of(e: &ChunkError) -> u64 {
    match e {
        ChunkError::NoPreviousHeader { offset, .. }
        | ChunkError::MessageTooLarge { offset, .. }
        | ChunkError::InterruptedMessage { offset, .. }
        | ChunkError::TooManyChunkStreams { offset, .. }
        | ChunkError::MalformedControl { offset, .. } => *offset,
        _ => unreachable!("a new ChunkError variant: teach this target its offset"),
    }
}

fn run(
    config: DecoderConfig,
    start: u64,
    pieces: &[&[u8]],
) -> (Vec<RawMessage>, Option<ChunkError>, u64) {
    let mut dec = ChunkDecoder::with_offset(config, start);
    let mut out = Vec::new();
    for piece in pieces {
        if let Err(e) = dec.decode(piece, &mut out) {
            let n = out.len();
            assert_eq!(dec.decode(piece, &mut out), Err(e.clone()), "sticky");
            assert_eq!(
                dec.decode(&[0x03, 0, 0], &mut out),
                Err(e.clone()),
                "sticky"
            );
            assert_eq!(out.len(), n, "nothing decoded after an error");
            return (out, Some(e), dec.offset());
        }
    }
    (out, None, dec.offset())
}

fuzz_target!(|data: &[u8]| {
    // Header: split seed, a small maximum message size and chunk stream count, the
    // starting offset; the rest is the stream.
    if data.len() < 4 {
        return;
    }
    let (head, stream) = data.split_at(4);
    let config = DecoderConfig {
        max_message_size: if head[1] & 0x80 != 0 {
            u32::from(head[1] & 0x7F) * 64
        } else {
            rtmp::chunk::DEFAULT_MAX_MESSAGE_SIZE
        },
        max_chunk_streams: 1 + usize::from(head[2] % 64),
    };
    let start = u64::from(head[3]) * 1537;

    let mut pieces = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(head[0]) | 1;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 40).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();

    let (msgs, err, consumed) = run(config, start, &[stream]);
    let end = start + stream.len() as u64;
    if err.is_none() {
        assert_eq!(consumed, end);
    }
    for m in &msgs {
        assert!(m.offset >= start && m.offset < end);
        assert!(m.payload.len() <= config.max_message_size as usize);
        assert!((2..=65599).contains(&m.csid));
    }
    if let Some(e) = &err {
        assert!(offset_of(e) >= start && offset_of(e) < end, "{e}");
    }
    for split in [&pieces, &bytewise] {
        let (m, e, _) = run(config, start, split);
        assert_eq!(m, msgs);
        assert_eq!(e, err);
    }
});
