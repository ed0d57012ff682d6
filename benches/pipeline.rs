//! The whole per-stream media pipeline beside its codec floor, on 4 s of a 720p30 2.5 Mbit/s
//! H.264 stream (openh264, a keyframe every 2 s) and 48 kHz stereo Opus (20 ms packets), all
//! synthesized before timing starts.
//!
//! - `pipeline/stream`: depacketized frames in (Annex-B access units and Opus packets on a
//!   virtual clock), `streamify::media::Pipeline` (Annex-B -> AVC, Opus -> PCM -> AAC-LC
//!   128 kbit/s, A/V clock, interleaving), every tag chunked by the `rtmp` crate's chunk
//!   encoder into a reused buffer that is then discarded (a null sink).
//! - `pipeline/codec_floor`: the same Opus packets decoded by libopus and the PCM encoded by
//!   fdk-aac, nothing else: what the pipeline cannot do without.
//!
//! After the criterion groups it prints CPU time per stream-second (thread CPU time from
//! `/proc/thread-self/schedstat`, interleaved runs, median of 9), streams per core, the ratio
//! to the floor, and heap allocations per frame counted by a counting global allocator.
//!
//! Run: `cargo bench --bench pipeline` (about 30 s of CPU).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, Throughput};
use rtmp::chunk::{msg_type, ChunkEncoder, MessageHeader};
use streamify::media::{Pipeline, PipelineConfig, PipelineOutput};
use streamify_testsupport::synth::{AudioSynth, VideoSynth};

#[global_allocator]
static GLOBAL: benchsupport::CountingAlloc = benchsupport::CountingAlloc;

const SECONDS: u64 = 4;
const FPS: u64 = 30;

/// Pre-synthesized media: (arrival offset, RTP time, payload, is video).
struct Media {
    events: Vec<(Duration, u32, Vec<u8>, bool)>,
    video_frames: usize,
    audio_packets: usize,
}

fn synthesize() -> Media {
    let mut video = VideoSynth::new(1280, 720, FPS as u32, 2_500_000);
    let mut audio = AudioSynth::new(2);
    let mut events = Vec::new();
    for n in 0..SECONDS * FPS {
        let (au, _) = video.next_frame(n % (2 * FPS) == 0);
        let at = Duration::from_nanos(n * 1_000_000_000 / FPS);
        events.push((at, (n * 3000) as u32, au, true));
    }
    for n in 0..SECONDS * 50 {
        let packet = audio.next_packet();
        events.push((
            Duration::from_millis(n * 20),
            (n * 960) as u32,
            packet,
            false,
        ));
    }
    events.sort_by_key(|e| e.0);
    Media {
        video_frames: (SECONDS * FPS) as usize,
        audio_packets: (SECONDS * 50) as usize,
        events,
    }
}

/// A null RTMP sink: every tag chunked into a reused buffer, then discarded.
struct NullSink {
    encoder: ChunkEncoder,
    out: BytesMut,
    bytes: u64,
}

impl NullSink {
    fn new() -> Self {
        let mut encoder = ChunkEncoder::new();
        encoder.set_chunk_size(4096);
        NullSink {
            encoder,
            out: BytesMut::with_capacity(1 << 20),
            bytes: 0,
        }
    }

    fn drain(&mut self, pipeline: &mut Pipeline) {
        while let Some(out) = pipeline.poll_output() {
            if let PipelineOutput::Tag(tag) = out {
                let (csid, type_id) = match tag.kind {
                    flv::TagKind::Audio => (4, msg_type::AUDIO),
                    flv::TagKind::Video => (6, msg_type::VIDEO),
                    flv::TagKind::Script => (5, msg_type::DATA_AMF0),
                };
                let header = MessageHeader {
                    timestamp: tag.timestamp,
                    type_id,
                    stream_id: 1,
                };
                self.encoder.write(csid, header, &tag.data, &mut self.out);
                self.bytes += self.out.len() as u64;
                black_box(&self.out);
                self.out.clear();
            }
        }
    }
}

/// Runs the pre-synthesized media through a fresh pipeline; `counted` is called right after
/// the pipeline is built, half-way through the media and after the last frame.
fn run_pipeline(media: &Media, counted: &mut dyn FnMut()) -> u64 {
    let t0 = Instant::now();
    let mut pipeline = Pipeline::new(PipelineConfig::default(), t0).expect("pipeline");
    let mut sink = NullSink::new();
    counted();
    for (i, (at, rtp, payload, is_video)) in media.events.iter().enumerate() {
        if i == media.events.len() / 2 {
            counted();
        }
        let now = t0 + *at;
        while let Some(deadline) = pipeline.poll_timeout() {
            if deadline > now {
                break;
            }
            pipeline.handle_timeout(deadline);
            sink.drain(&mut pipeline);
        }
        if *is_video {
            pipeline.push_video(now, *rtp, payload);
        } else {
            pipeline.push_audio(now, *rtp, payload);
        }
        sink.drain(&mut pipeline);
    }
    counted();
    pipeline.flush(t0 + Duration::from_secs(SECONDS));
    sink.drain(&mut pipeline);
    sink.bytes
}

/// Opus decode + AAC encode of the same packets, nothing else.
fn run_floor(media: &Media) -> usize {
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Stereo).expect("opus");
    let encoder = fdk_aac::enc::Encoder::new(fdk_aac::enc::EncoderParams {
        bit_rate: fdk_aac::enc::BitRate::Cbr(128_000),
        sample_rate: 48_000,
        transport: fdk_aac::enc::Transport::Raw,
        channels: fdk_aac::enc::ChannelMode::Stereo,
        audio_object_type: fdk_aac::enc::AudioObjectType::Mpeg4LowComplexity,
    })
    .expect("fdk-aac");
    let mut pcm = Vec::with_capacity(8192 * 2);
    let mut scratch = vec![0i16; 5760 * 2];
    let mut out = vec![0u8; 8192];
    let mut bytes = 0;
    for (_, _, packet, is_video) in &media.events {
        if *is_video {
            continue;
        }
        let n = decoder.decode(packet, &mut scratch, false).expect("decode");
        pcm.extend_from_slice(&scratch[..n * 2]);
        let mut read = 0;
        while pcm.len() - read >= 2048 {
            let info = encoder
                .encode(&pcm[read..read + 2048], &mut out)
                .expect("encode");
            read += 2048;
            bytes += info.output_size;
        }
        pcm.drain(..read);
    }
    black_box(bytes)
}

fn benches(c: &mut Criterion, media: &Media) {
    let mut group = c.benchmark_group("pipeline");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(SECONDS));
    group.bench_function("stream", |b| b.iter(|| run_pipeline(media, &mut || {})));
    group.bench_function("codec_floor", |b| b.iter(|| run_floor(media)));
    group.finish();
}

/// CPU time this thread has used (Linux: /proc/thread-self/schedstat, nanoseconds).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = stat
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("schedstat format");
    Duration::from_nanos(ns)
}

fn cpu_of(f: &mut dyn FnMut()) -> Duration {
    let start = thread_cpu();
    f();
    thread_cpu() - start
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn summary(media: &Media) {
    // The kernel brings a running thread's schedstat up to date only at scheduler ticks (4 ms
    // here), so each measurement repeats the run until it is long enough for the tick to be
    // noise (about 200 ms), then divides.
    const REPEAT: u32 = 10;
    let (mut stream, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..9 {
        stream.push(
            cpu_of(&mut || {
                for _ in 0..REPEAT {
                    black_box(run_pipeline(media, &mut || {}));
                }
            }) / REPEAT,
        );
        floor.push(
            cpu_of(&mut || {
                for _ in 0..REPEAT {
                    black_box(run_floor(media));
                }
            }) / REPEAT,
        );
    }
    let (stream, floor) = (median(stream), median(floor));
    let per_second = |d: Duration| d.as_secs_f64() * 1000.0 / SECONDS as f64;

    let mut marks = Vec::new();
    let bytes = run_pipeline(media, &mut || marks.push(benchsupport::allocations()));
    let allocs = marks[2] - marks[0];
    let steady = marks[2] - marks[1];
    let frames = (media.video_frames + media.audio_packets) as f64;

    println!();
    println!("media pipeline, 720p30 2.5 Mbit/s H.264 + 48 kHz stereo Opus -> AAC-LC 128 kbit/s");
    println!(
        "  pipeline:    {:.2} ms CPU per stream-second -> {:.0} streams per core",
        per_second(stream),
        1000.0 / per_second(stream)
    );
    println!(
        "  codec floor: {:.2} ms CPU per stream-second (Opus decode + AAC encode alone)",
        per_second(floor)
    );
    println!(
        "  ratio pipeline / floor: {:.3} (target <= 1.2)",
        stream.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "  heap allocations: {allocs} for {} video frames + {} Opus packets = {:.3} per frame \
         (start-up headers included, pipeline construction excluded); second half alone: \
         {steady} = {:.3} per frame; RTMP bytes out: {bytes}",
        media.video_frames,
        media.audio_packets,
        allocs as f64 / frames,
        steady as f64 / (frames / 2.0)
    );
}

fn main() {
    let media = synthesize();
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion, &media);
    criterion.final_summary();
    summary(&media);
}
