//! The chunk decoder's steady state allocates nothing: messages are carved out of 64 KiB
//! blocks, and a block is taken back once the consumer has dropped its messages, even when
//! the messages of one `decode` call are still held while the next block is needed (two
//! blocks take turns). Counted with a counting global allocator; this binary holds this one
//! test so nothing else allocates meanwhile.

use bytes::BytesMut;
use rtmp::chunk::{ChunkDecoder, ChunkEncoder, MessageHeader};

#[global_allocator]
static GLOBAL: benchsupport::CountingAlloc = benchsupport::CountingAlloc;

/// Chunk bytes of `per_call` 40 KB video messages for each of `calls` reads.
fn reads(calls: usize, per_call: usize) -> Vec<BytesMut> {
    let mut enc = ChunkEncoder::new();
    let payload = vec![7u8; 40_000];
    (0..calls)
        .map(|call| {
            let mut wire = BytesMut::new();
            for m in 0..per_call {
                let header = MessageHeader {
                    timestamp: ((call * per_call + m) * 33) as u32,
                    type_id: 9,
                    stream_id: 1,
                };
                enc.write(6, header, &payload, &mut wire);
            }
            wire
        })
        .collect()
}

/// Allocations while decoding `reads` after a warm-up, the messages of each read held until
/// the next read (as a consumer that hands a batch on does).
fn steady_allocations(per_call: usize) -> u64 {
    let warm = reads(4, per_call);
    let measured = reads(50, per_call);
    let mut dec = ChunkDecoder::default();
    let mut out = Vec::with_capacity(16);
    for wire in &warm {
        out.clear();
        dec.decode(wire, &mut out).unwrap();
    }
    let before = benchsupport::allocations();
    for wire in &measured {
        out.clear();
        dec.decode(wire, &mut out).unwrap();
        assert_eq!(out.len(), per_call);
    }
    let after = benchsupport::allocations();
    drop(out);
    after - before
}

#[test]
fn the_decoder_allocates_nothing_in_steady_state() {
    assert_eq!(steady_allocations(1), 0, "one message per read");
    assert_eq!(
        steady_allocations(2),
        0,
        "two messages per read, held while the second needs a new block"
    );
}
