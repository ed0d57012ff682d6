//! FLV mux -> demux: arbitrary tags come back equal, at the offsets the muxer
//! wrote them, and muxing the demuxed tags again is byte-identical.
#![no_main]

use arbitrary::Arbitrary;
use bytes::BytesMut;
use flv::{Demuxer, Muxer, TagKind};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    has_audio: bool,
    has_video: bool,
    tags: Vec<(u8, u32, Vec<u8>)>,
    split: u16,
}

fn kind(k: u8) -> TagKind {
    match k % 3 {
        0 => TagKind::Audio,
        1 => TagKind::Video,
        _ => TagKind::Script,
    }
}

fuzz_target!(|input: Input| {
    let mut muxer = Muxer::new();
    let mut out = BytesMut::new();
    muxer.write_header(&mut out, input.has_audio, input.has_video);
    let mut offsets = Vec::new();
    for (k, ts, data) in &input.tags {
        offsets.push(out.len() as u64);
        muxer.write_tag(&mut out, kind(*k), *ts, data);
    }

    let split = usize::from(input.split).min(out.len());
    let mut demuxer = Demuxer::new();
    let mut tags = Vec::new();
    for piece in [&out[..split], &out[split..]] {
        demuxer.push(piece);
        while let Some(tag) = demuxer.pull().expect("muxed stream demuxes") {
            tags.push(tag);
        }
    }
    demuxer.finish().expect("muxed stream is complete");
    let header = demuxer.header().expect("header parsed");
    assert_eq!(
        (header.has_audio, header.has_video),
        (input.has_audio, input.has_video)
    );
    assert_eq!(tags.len(), input.tags.len());
    for ((tag, (k, ts, data)), offset) in tags.iter().zip(&input.tags).zip(&offsets) {
        assert_eq!(tag.kind, kind(*k));
        assert_eq!(tag.timestamp, *ts);
        assert_eq!(tag.stream_id, 0);
        assert_eq!(&tag.data[..], &data[..]);
        assert_eq!(tag.offset, *offset);
    }

    let mut again = BytesMut::new();
    let mut remuxer = Muxer::new();
    remuxer.write_header(&mut again, header.has_audio, header.has_video);
    for tag in &tags {
        remuxer.write_tag(&mut again, tag.kind, tag.timestamp, &tag.data);
    }
    assert_eq!(out, again);
});
