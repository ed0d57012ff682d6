//! FLV demuxer: arbitrary bytes pushed in arbitrary pieces never panic and give
//! the same tags, the same error and the same end state as one single push.
#![no_main]

use flv::{DemuxError, Demuxer, Tag};
use libfuzzer_sys::fuzz_target;

fn run(pieces: &[&[u8]]) -> (Vec<Tag>, Option<DemuxError>, bool) {
    let mut demuxer = Demuxer::new();
    let mut tags = Vec::new();
    for piece in pieces {
        demuxer.push(piece);
        loop {
            match demuxer.pull() {
                Ok(Some(tag)) => tags.push(tag),
                Ok(None) => break,
                Err(err) => {
                    // Errors are sticky.
                    assert_eq!(demuxer.pull().unwrap_err(), err);
                    return (tags, Some(err), false);
                }
            }
        }
    }
    let finished = demuxer.finish().is_ok();
    (tags, None, finished)
}

fuzz_target!(|data: &[u8]| {
    // The first byte seeds the split points, the rest is the stream.
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let mut pieces = Vec::new();
    let mut rest = stream;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state as usize % 64).min(rest.len());
        let (a, b) = rest.split_at(n);
        pieces.push(a);
        rest = b;
    }
    let (tags_whole, err_whole, fin_whole) = run(&[stream]);
    let (tags_split, err_split, fin_split) = run(&pieces);
    assert_eq!(tags_whole, tags_split);
    // The signature check may fail earlier on a short first piece, with a shorter dump.
    assert_eq!(
        err_whole
            .as_ref()
            .map(|e| (e.offset(), std::mem::discriminant(e))),
        err_split
            .as_ref()
            .map(|e| (e.offset(), std::mem::discriminant(e)))
    );
    assert_eq!(fin_whole, fin_split);
    for tag in &tags_whole {
        assert!(tag.offset < stream.len() as u64);
        assert!(tag.data.len() <= 0xFF_FFFF);
    }
});
