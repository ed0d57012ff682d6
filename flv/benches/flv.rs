//! FLV muxing and Annex-B -> AVCC of a synthetic 720p30 2.5 Mbit/s stream
//! (keyframe ~60 KB every 60 frames, ~10 KB otherwise; AAC 128 kbit/s, ~370 B
//! every 21.33 ms), each beside a plain memcpy of the same bytes.
//!
//! Before the criterion groups it prints a short report: time ratios against
//! memcpy, heap allocations per video frame in steady state (counted by a
//! counting global allocator) and payload copies per frame.
//!
//! Run: `cargo bench -p streamify-flv --bench flv`

use std::hint::black_box;
use std::time::Duration;

use benchsupport::best_of;
use benchsupport::gop::{
    audio_ms, filler, video_ms, AUDIO_FRAMES, AUDIO_FRAME_BYTES, GOP, INTER_BYTES, KEYFRAME_BYTES,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use flv::aac;
use flv::avc::{self, AvcPacketType, FrameType};
use flv::{Muxer, TagKind};

#[global_allocator]
static GLOBAL: benchsupport::CountingAlloc = benchsupport::CountingAlloc;

/// One 2-second GOP of media, in both forms.
struct Stream {
    /// Annex-B access units (SPS + PPS + IDR on the keyframe).
    annexb: Vec<Vec<u8>>,
    /// The same frames as complete AVC NALU tag bodies (5-byte header + AVCC).
    video_bodies: Vec<Bytes>,
    /// Raw AAC frames as tag bodies (`AF 01` + frame).
    audio_bodies: Vec<(u32, Bytes)>,
}

fn stream() -> Stream {
    let mut annexb = Vec::new();
    for i in 0..GOP {
        let mut f = Vec::new();
        if i == 0 {
            f.extend_from_slice(&[0, 0, 0, 1, 0x67, 0x64, 0, 0x1F, 0xAC, 0xB4, 0x02, 0x80]);
            f.extend_from_slice(&[0, 0, 0, 1, 0x68, 0xEE, 0x3C, 0xB0]);
            f.extend_from_slice(&[0, 0, 0, 1, 0x65]);
            f.extend(filler(KEYFRAME_BYTES, i as u32 + 1));
        } else {
            f.extend_from_slice(&[0, 0, 0, 1, 0x41]);
            f.extend(filler(INTER_BYTES, i as u32 + 1));
        }
        annexb.push(f);
    }
    let video_bodies = annexb
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let frame = if i == 0 {
                FrameType::Key
            } else {
                FrameType::Inter
            };
            let mut body = BytesMut::new();
            avc::write_nalu_tag_from_annexb(&mut body, frame, 0, f).unwrap();
            body.freeze()
        })
        .collect();
    // 2 s of AAC: 1024 samples at 48 kHz per frame.
    let audio_bodies = (0..AUDIO_FRAMES)
        .map(|i| {
            let mut body = BytesMut::new();
            aac::write_raw_tag(
                &mut body,
                &filler(AUDIO_FRAME_BYTES, 1000 + i).collect::<Vec<_>>(),
            );
            (audio_ms(i), body.freeze())
        })
        .collect();
    Stream {
        annexb,
        video_bodies,
        audio_bodies,
    }
}

/// Muxes one GOP (video and audio interleaved by time) into `out`.
fn mux_gop(s: &Stream, muxer: &mut Muxer, out: &mut BytesMut) {
    out.clear();
    let mut audio = s.audio_bodies.iter().peekable();
    for (i, body) in s.video_bodies.iter().enumerate() {
        let ts = video_ms(i);
        while let Some((ats, a)) = audio.next_if(|(ats, _)| *ats <= ts) {
            muxer.write_tag(out, TagKind::Audio, *ats, a);
        }
        muxer.write_tag(out, TagKind::Video, ts, body);
    }
    for (ats, a) in audio {
        muxer.write_tag(out, TagKind::Audio, *ats, a);
    }
}

/// A plain memcpy of the same tag bodies into `out`.
fn memcpy_gop(s: &Stream, out: &mut BytesMut) {
    out.clear();
    for body in &s.video_bodies {
        out.extend_from_slice(body);
    }
    for (_, a) in &s.audio_bodies {
        out.extend_from_slice(a);
    }
}

/// Annex-B -> AVCC tag bodies of one GOP, each frame into the reused `out`.
fn annexb_gop(s: &Stream, out: &mut BytesMut) -> usize {
    let mut total = 0;
    for (i, f) in s.annexb.iter().enumerate() {
        out.clear();
        let frame = if i == 0 {
            FrameType::Key
        } else {
            FrameType::Inter
        };
        avc::write_video_tag_header(out, frame, AvcPacketType::Nalu, 0);
        avc::annexb_to_avcc(f, out).unwrap();
        total += out.len();
    }
    total
}

/// A plain memcpy of the same Annex-B frames.
fn memcpy_annexb_gop(s: &Stream, out: &mut BytesMut) -> usize {
    let mut total = 0;
    for f in &s.annexb {
        out.clear();
        out.extend_from_slice(f);
        total += out.len();
    }
    total
}

/// The relay's shape: Annex-B -> one shared AVCC frame (`split().freeze()` from a
/// pooled buffer, so it can fan out to several outputs), then FLV muxing of it.
/// Returns the bytes written into the pool.
fn pipeline_gop(s: &Stream, pool: &mut BytesMut, muxer: &mut Muxer, out: &mut BytesMut) -> usize {
    out.clear();
    let mut pooled = 0;
    for (i, f) in s.annexb.iter().enumerate() {
        let frame = if i == 0 {
            FrameType::Key
        } else {
            FrameType::Inter
        };
        pool.reserve(avc::VIDEO_TAG_HEADER_LEN + avc::avcc_len_of_annexb(f));
        avc::write_nalu_tag_from_annexb(pool, frame, 0, f).unwrap();
        let shared: Bytes = pool.split().freeze();
        pooled += shared.len();
        muxer.write_tag(out, TagKind::Video, video_ms(i), &shared);
        black_box(&shared);
    }
    pooled
}

/// Annex-B straight into FLV tags (one copy).
fn direct_gop(s: &Stream, muxer: &mut Muxer, out: &mut BytesMut) {
    out.clear();
    for (i, f) in s.annexb.iter().enumerate() {
        let frame = if i == 0 {
            FrameType::Key
        } else {
            FrameType::Inter
        };
        muxer
            .try_write_avc_annexb_tag(out, video_ms(i), frame, 0, f)
            .unwrap();
    }
}

fn report(s: &Stream) {
    let video_bytes: usize = s.annexb.iter().map(Vec::len).sum();
    let mut muxer = Muxer::new();
    let mut out = BytesMut::new();
    let mut copy = BytesMut::new();
    let mut pool = BytesMut::new();

    // Warm-up sizes the reused buffers; then count allocations in steady state.
    mux_gop(s, &mut muxer, &mut out);
    memcpy_gop(s, &mut copy);
    annexb_gop(s, &mut copy);
    black_box(pipeline_gop(s, &mut pool, &mut muxer, &mut out));
    direct_gop(s, &mut muxer, &mut out);
    let frames = (10 * GOP) as f64;
    let count = |f: &mut dyn FnMut()| {
        let before = benchsupport::allocations();
        for _ in 0..10 {
            f();
        }
        (benchsupport::allocations() - before) as f64 / frames
    };
    let mux_allocs = count(&mut || mux_gop(s, &mut muxer, &mut out));
    let annexb_allocs = count(&mut || {
        annexb_gop(s, &mut copy);
    });
    let pipeline_allocs = count(&mut || {
        black_box(pipeline_gop(s, &mut pool, &mut muxer, &mut out));
    });
    let direct_allocs = count(&mut || direct_gop(s, &mut muxer, &mut out));

    // Payload copies: tag-body bytes written into any buffer by the calls,
    // divided by the tag-body bytes (FLV tag header + PreviousTagSize excluded).
    let payload: usize = s.video_bodies.iter().map(Bytes::len).sum();
    let framing = GOP * (11 + 4);
    direct_gop(s, &mut muxer, &mut out);
    let direct_copies = (out.len() - framing) as f64 / payload as f64;
    let pooled = pipeline_gop(s, &mut pool, &mut muxer, &mut out);
    let pipeline_copies = (out.len() - framing + pooled) as f64 / payload as f64;

    let t_mux = best_of(|| mux_gop(s, &mut muxer, &mut out));
    let t_memcpy = best_of(|| memcpy_gop(s, &mut copy));
    let t_annexb = best_of(|| {
        black_box(annexb_gop(s, &mut copy));
    });
    let t_memcpy_annexb = best_of(|| {
        black_box(memcpy_annexb_gop(s, &mut copy));
    });
    let t_direct = best_of(|| direct_gop(s, &mut muxer, &mut out));

    let mb = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let gop_bytes: usize = payload + s.audio_bodies.iter().map(|(_, a)| a.len()).sum::<usize>();
    println!("== flv bench report (one 2 s GOP of 720p30 2.5 Mbit/s + AAC 128 kbit/s) ==");
    println!(
        "FLV mux (reused BytesMut):     {:>9.1?} per GOP, {:>7.0} MB/s; memcpy {:>9.1?}, {:>7.0} MB/s; ratio {:.2}x",
        t_mux,
        mb(gop_bytes, t_mux),
        t_memcpy,
        mb(gop_bytes, t_memcpy),
        t_mux.as_secs_f64() / t_memcpy.as_secs_f64()
    );
    println!(
        "Annex-B -> AVCC (reused):      {:>9.1?} per GOP, {:>7.0} MB/s; memcpy {:>9.1?}, {:>7.0} MB/s; ratio {:.2}x",
        t_annexb,
        mb(video_bytes, t_annexb),
        t_memcpy_annexb,
        mb(video_bytes, t_memcpy_annexb),
        t_annexb.as_secs_f64() / t_memcpy_annexb.as_secs_f64()
    );
    println!(
        "Annex-B -> FLV tag directly:   {:>9.1?} per GOP; ratio to memcpy of the Annex-B {:.2}x",
        t_direct,
        t_direct.as_secs_f64() / t_memcpy_annexb.as_secs_f64()
    );
    println!("heap allocations per video frame (steady state):");
    println!("  FLV mux into reused buffer:                       {mux_allocs:.3}");
    println!("  Annex-B -> AVCC into reused buffer:               {annexb_allocs:.3}");
    println!("  Annex-B -> shared AVCC Bytes (pool) -> FLV mux:   {pipeline_allocs:.3}");
    println!("  Annex-B -> FLV tag directly:                      {direct_allocs:.3}");
    println!("payload copies per video frame:");
    println!("  Annex-B -> FLV tag directly:                      {direct_copies:.2}");
    println!("  Annex-B -> shared AVCC Bytes -> FLV mux:          {pipeline_copies:.2}");
    println!("  FLV mux of an existing tag body:                  1.00");
}

fn benches(c: &mut Criterion, s: &Stream) {
    let gop_bytes: u64 = s.video_bodies.iter().map(|b| b.len() as u64).sum::<u64>()
        + s.audio_bodies
            .iter()
            .map(|(_, a)| a.len() as u64)
            .sum::<u64>();
    let annexb_bytes: u64 = s.annexb.iter().map(|f| f.len() as u64).sum();

    let mut g = c.benchmark_group("flv_mux_720p30_gop");
    g.throughput(Throughput::Bytes(gop_bytes));
    let mut muxer = Muxer::new();
    let mut out = BytesMut::new();
    g.bench_function("mux", |b| b.iter(|| mux_gop(s, &mut muxer, &mut out)));
    g.bench_function("memcpy", |b| b.iter(|| memcpy_gop(s, &mut out)));
    g.finish();

    let mut g = c.benchmark_group("flv_annexb_to_avcc_720p30_gop");
    g.throughput(Throughput::Bytes(annexb_bytes));
    g.bench_function("annexb_to_avcc", |b| b.iter(|| annexb_gop(s, &mut out)));
    g.bench_function("direct_flv_tag", |b| {
        b.iter(|| direct_gop(s, &mut muxer, &mut out))
    });
    g.bench_function("memcpy", |b| b.iter(|| memcpy_annexb_gop(s, &mut out)));
    g.finish();
}

fn main() {
    let s = stream();
    report(&s);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &s);
    c.final_summary();
}
