//! RTMP chunk encoding and decoding of a synthetic 720p30 2.5 Mbit/s stream
//! (keyframe ~60 KB every 60 frames, ~10 KB otherwise; AAC 128 kbit/s, ~370 B every
//! 21.33 ms) at the crate's outgoing chunk size (4096), each beside a plain memcpy of
//! the same payload bytes; and the publishing client's send path
//! (`ClientSession::send_video`/`send_audio`, then `consume_output` as a socket write).
//!
//! Before the criterion groups it prints a short report: time ratios against memcpy,
//! heap allocations per video frame in steady state (counted by a counting global
//! allocator) and payload copies per frame.
//!
//! Run: `cargo bench -p streamify-rtmp --bench rtmp`

use std::hint::black_box;
use std::time::{Duration, Instant};

use benchsupport::best_of;
use benchsupport::gop::{
    audio_ms, filler, video_ms, AUDIO_FRAMES, AUDIO_FRAME_BYTES, FPS, GOP, INTER_BYTES,
    KEYFRAME_BYTES,
};
use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput};
use rtmp::chunk::{msg_type, ChunkDecoder, ChunkEncoder, DecoderConfig, MessageHeader, RawMessage};
use rtmp::handshake::RANDOM_SIZE;
use rtmp::{ClientConfig, ClientSession, ClientState, ServerConfig, ServerEvent, ServerSession};

#[global_allocator]
static GLOBAL: benchsupport::CountingAlloc = benchsupport::CountingAlloc;

const CHUNK_SIZE: u32 = rtmp::OUTGOING_CHUNK_SIZE;
/// What one socket read hands the decoder (the tokio adapter reads 64 KiB at a time).
const READ_SIZE: usize = 64 * 1024;

/// One 2-second GOP as FLV tag bodies, in send order (video and audio interleaved).
struct Stream {
    /// (is video, timestamp, tag body).
    messages: Vec<(bool, u32, Bytes)>,
}

impl Stream {
    fn payload_bytes(&self) -> usize {
        self.messages.iter().map(|(_, _, b)| b.len()).sum()
    }
}

fn stream() -> Stream {
    let mut video = Vec::new();
    for i in 0..GOP {
        let (head, len) = if i == 0 {
            ([0x17u8, 1, 0, 0, 0], KEYFRAME_BYTES)
        } else {
            ([0x27, 1, 0, 0, 0], INTER_BYTES)
        };
        let mut body = head.to_vec();
        body.extend(filler(len, i as u32 + 1));
        video.push((video_ms(i), Bytes::from(body)));
    }
    let audio: Vec<(u32, Bytes)> = (0..AUDIO_FRAMES)
        .map(|i| {
            let mut body = vec![0xAF, 1];
            body.extend(filler(AUDIO_FRAME_BYTES, 1000 + i));
            (audio_ms(i), Bytes::from(body))
        })
        .collect();
    let mut messages = Vec::new();
    let mut audio = audio.into_iter().peekable();
    for (ts, body) in video {
        while let Some((ats, a)) = audio.next_if(|(ats, _)| *ats <= ts) {
            messages.push((false, ats, a));
        }
        messages.push((true, ts, body));
    }
    messages.extend(audio.map(|(ats, a)| (false, ats, a)));
    Stream { messages }
}

fn header(video: bool, timestamp: u32) -> (u32, MessageHeader) {
    let (csid, type_id) = if video {
        (6, msg_type::VIDEO)
    } else {
        (4, msg_type::AUDIO)
    };
    let header = MessageHeader {
        timestamp,
        type_id,
        stream_id: 1,
    };
    (csid, header)
}

/// Chunk-encodes one GOP into the reused `out`. Timestamps advance from GOP to GOP
/// (`base`), as in a live stream.
fn encode_gop(s: &Stream, enc: &mut ChunkEncoder, base: u32, out: &mut BytesMut) {
    out.clear();
    for (video, ts, body) in &s.messages {
        let (csid, header) = header(*video, base + ts);
        enc.write(csid, header, body, out);
    }
}

/// A plain memcpy of the same payloads into `out`.
fn memcpy_gop(s: &Stream, out: &mut BytesMut) {
    out.clear();
    for (_, _, body) in &s.messages {
        out.extend_from_slice(body);
    }
}

/// Decodes one GOP of chunk bytes, fed in socket-read-sized pieces; the messages are
/// handed on and dropped as a consumer would.
fn decode_gop(wire: &[u8], dec: &mut ChunkDecoder, out: &mut Vec<RawMessage>) -> usize {
    let mut payload = 0;
    for read in wire.chunks(READ_SIZE) {
        dec.decode(read, out).unwrap();
        for m in out.drain(..) {
            payload += m.payload.len();
            black_box(m);
        }
    }
    payload
}

/// A plain memcpy of the same wire bytes, read by read.
fn memcpy_wire(wire: &[u8], out: &mut BytesMut) -> usize {
    out.clear();
    for read in wire.chunks(READ_SIZE) {
        out.extend_from_slice(read);
    }
    out.len()
}

/// A client session in the publishing state (driven against a server session).
fn publishing_client() -> ClientSession {
    let now = Instant::now();
    let config = ClientConfig::new("live", "rtmp://127.0.0.1/live", "key");
    let mut client = ClientSession::new(config, now, &[1; RANDOM_SIZE]);
    let mut server = ServerSession::new(ServerConfig::default(), now, &[2; RANDOM_SIZE]);
    for _ in 0..8 {
        let c = client.pending_output().to_vec();
        client.consume_output(c.len());
        server.handle_input(now, &c).unwrap();
        while let Some(e) = server.poll_event() {
            if let ServerEvent::PublishRequested { stream_id, .. } = e {
                server.accept_publish(stream_id).unwrap();
            }
        }
        let s = server.pending_output().to_vec();
        server.consume_output(s.len());
        client.handle_input(now, &s).unwrap();
    }
    assert_eq!(client.state(), ClientState::Publishing);
    let n = client.queued_bytes();
    client.consume_output(n);
    while client.poll_event().is_some() {}
    client
}

/// Sends one GOP through the session, writing the output to a "socket" (`sink`,
/// which only counts) after every frame, as the tokio adapter does.
fn send_gop(s: &Stream, client: &mut ClientSession, base: u32, sink: &mut usize) {
    for (video, ts, body) in &s.messages {
        let r = if *video {
            client.send_video(base + ts, body.clone())
        } else {
            client.send_audio(base + ts, body.clone())
        };
        black_box(r.unwrap());
        let out = client.pending_output();
        *sink += black_box(out).len();
        let n = out.len();
        client.consume_output(n);
    }
}

fn gop_ms(round: u32) -> u32 {
    round * (GOP as u32) * 1000 / FPS
}

fn report(s: &Stream) {
    let payload = s.payload_bytes();
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(CHUNK_SIZE);
    let mut wire = BytesMut::new();
    let mut copy = BytesMut::new();
    let mut client = publishing_client();
    let mut sink = 0usize;

    // Warm-up sizes the reused buffers; then count allocations in steady state.
    encode_gop(s, &mut enc, 0, &mut wire);
    memcpy_gop(s, &mut copy);
    send_gop(s, &mut client, 0, &mut sink);
    let frames = (10 * GOP) as f64;
    let mut round = 1;
    let before = benchsupport::allocations();
    for _ in 0..10 {
        encode_gop(s, &mut enc, gop_ms(round), &mut wire);
        round += 1;
    }
    let encode_allocs = (benchsupport::allocations() - before) as f64 / frames;
    let before = benchsupport::allocations();
    for _ in 0..10 {
        send_gop(s, &mut client, gop_ms(round), &mut sink);
        round += 1;
    }
    let send_allocs = (benchsupport::allocations() - before) as f64 / frames;

    // Decoding: the wire bytes of one GOP (after the first, so headers are compressed
    // as in steady state), decoded again and again by one decoder.
    let mut enc2 = ChunkEncoder::new();
    let mut first = BytesMut::new();
    enc2.write_set_chunk_size(CHUNK_SIZE, &mut first);
    let mut gop = BytesMut::new();
    encode_gop(s, &mut enc2, 0, &mut gop);
    first.extend_from_slice(&gop);
    let mut steady = BytesMut::new();
    encode_gop(s, &mut enc2, gop_ms(1), &mut steady);
    // Decode `first` once, then `steady` over and over: its headers are deltas, so
    // it decodes the same each time (the timestamps just keep advancing).
    let mut dec = ChunkDecoder::new(DecoderConfig::default());
    let mut msgs = Vec::new();
    decode_gop(&first, &mut dec, &mut msgs);
    decode_gop(&steady, &mut dec, &mut msgs);
    let before = benchsupport::allocations();
    let mut decoded = 0;
    for _ in 0..10 {
        decoded += decode_gop(&steady, &mut dec, &mut msgs);
    }
    let decode_allocs = (benchsupport::allocations() - before) as f64 / frames;
    assert_eq!(decoded, 10 * payload);

    // Payload copies: payload bytes written into any buffer by the calls, divided by
    // the payload bytes (chunk headers excluded). The encoder writes headers and
    // payload into the one output buffer; the decoder appends each chunk's payload
    // to its message buffer and hands that on as `Bytes`.
    let framing = wire.len() - payload;
    let encode_copies = (wire.len() - framing) as f64 / payload as f64;
    let decode_copies = decoded as f64 / (10 * payload) as f64;

    let t_encode = best_of(|| {
        encode_gop(s, &mut enc, gop_ms(round), &mut wire);
        round += 1;
    });
    let t_memcpy = best_of(|| memcpy_gop(s, &mut copy));
    let t_send = best_of(|| {
        send_gop(s, &mut client, gop_ms(round), &mut sink);
        round += 1;
    });
    let t_decode = best_of(|| {
        black_box(decode_gop(&steady, &mut dec, &mut msgs));
    });
    let t_memcpy_wire = best_of(|| {
        black_box(memcpy_wire(&steady, &mut copy));
    });

    let mb = |bytes: usize, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "== rtmp bench report (one 2 s GOP of 720p30 2.5 Mbit/s + AAC 128 kbit/s, chunk size {CHUNK_SIZE}) =="
    );
    println!(
        "chunk encode (reused BytesMut): {:>9.1?} per GOP, {:>7.0} MB/s; memcpy {:>9.1?}, {:>7.0} MB/s; ratio {:.2}x",
        t_encode,
        mb(payload, t_encode),
        t_memcpy,
        mb(payload, t_memcpy),
        ratio(t_encode, t_memcpy)
    );
    println!(
        "client send_video/send_audio:   {:>9.1?} per GOP, {:>7.0} MB/s; ratio to memcpy {:.2}x",
        t_send,
        mb(payload, t_send),
        ratio(t_send, t_memcpy)
    );
    println!(
        "chunk decode (64 KiB reads):    {:>9.1?} per GOP, {:>7.0} MB/s; memcpy {:>9.1?}, {:>7.0} MB/s; ratio {:.2}x",
        t_decode,
        mb(steady.len(), t_decode),
        t_memcpy_wire,
        mb(steady.len(), t_memcpy_wire),
        ratio(t_decode, t_memcpy_wire)
    );
    println!("chunk header overhead: {framing} bytes per GOP of {payload} payload bytes");
    println!("heap allocations per video frame (steady state):");
    println!("  chunk encode into reused buffer:                  {encode_allocs:.3}");
    println!("  ClientSession send + consume_output:              {send_allocs:.3}");
    println!("  chunk decode (messages handed on as Bytes):       {decode_allocs:.3}");
    println!("payload copies per video frame:");
    println!("  chunk encode / ClientSession send:                {encode_copies:.2}");
    println!("  chunk decode:                                     {decode_copies:.2}");
    black_box(sink);
}

fn benches(c: &mut Criterion, s: &Stream) {
    let payload = s.payload_bytes() as u64;
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(CHUNK_SIZE);
    let mut out = BytesMut::new();

    let mut g = c.benchmark_group("rtmp_chunk_encode_720p30_gop");
    g.throughput(Throughput::Bytes(payload));
    let mut round = 0;
    g.bench_function("encode", |b| {
        b.iter(|| {
            encode_gop(s, &mut enc, gop_ms(round), &mut out);
            round += 1;
        })
    });
    let mut client = publishing_client();
    let (mut round, mut sink) = (0, 0usize);
    g.bench_function("client_send", |b| {
        b.iter(|| {
            send_gop(s, &mut client, gop_ms(round), &mut sink);
            round += 1;
        })
    });
    g.bench_function("memcpy", |b| b.iter(|| memcpy_gop(s, &mut out)));
    g.finish();

    let mut enc = ChunkEncoder::new();
    let mut first = BytesMut::new();
    enc.write_set_chunk_size(CHUNK_SIZE, &mut first);
    let mut gop = BytesMut::new();
    encode_gop(s, &mut enc, 0, &mut gop);
    first.extend_from_slice(&gop);
    let mut steady = BytesMut::new();
    encode_gop(s, &mut enc, gop_ms(1), &mut steady);
    let mut dec = ChunkDecoder::new(DecoderConfig::default());
    let mut msgs = Vec::new();
    decode_gop(&first, &mut dec, &mut msgs);

    let mut g = c.benchmark_group("rtmp_chunk_decode_720p30_gop");
    g.throughput(Throughput::Bytes(steady.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| decode_gop(&steady, &mut dec, &mut msgs))
    });
    g.bench_function("memcpy", |b| b.iter(|| memcpy_wire(&steady, &mut out)));
    g.finish();
}

fn main() {
    let s = stream();
    report(&s);
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, &s);
    c.final_summary();
}
