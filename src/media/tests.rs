//! Pipeline tests without sockets: real H.264 (openh264) and Opus (libopus) made here, a
//! virtual clock, and ffmpeg/ffprobe as the judge of the FLV the pipeline's tags make.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::BytesMut;
use flv::TagKind;
use streamify_testsupport::synth::{AudioSynth, VideoSynth};
use streamify_testsupport::{ffprobe, test_dir};

use super::audio::AudioTrack;
use super::*;

/// A pipeline on a virtual clock, with everything it said.
struct Run {
    t0: Instant,
    now: Instant,
    pipeline: Pipeline,
    tags: Vec<MediaTag>,
    /// When keyframes were requested (since t0).
    requests: Vec<Duration>,
}

impl Run {
    fn new(config: PipelineConfig) -> Run {
        let t0 = Instant::now();
        Run {
            t0,
            now: t0,
            pipeline: Pipeline::new(config, t0).expect("pipeline"),
            tags: Vec::new(),
            requests: Vec::new(),
        }
    }

    /// Moves the clock to `t0 + t`, calling `handle_timeout` at every deadline on the way,
    /// exactly when it is due.
    fn at(&mut self, t: Duration) {
        let target = self.t0 + t;
        let mut rounds = 0;
        while let Some(deadline) = self.pipeline.poll_timeout() {
            if deadline > target {
                break;
            }
            rounds += 1;
            assert!(rounds < 100_000, "poll_timeout does not move on: busy loop");
            self.now = deadline.max(self.now);
            self.pipeline.handle_timeout(self.now);
            self.drain();
        }
        self.now = target.max(self.now);
    }

    fn drain(&mut self) {
        while let Some(out) = self.pipeline.poll_output() {
            match out {
                PipelineOutput::Tag(tag) => self.tags.push(tag),
                PipelineOutput::RequestKeyframe => self.requests.push(self.now - self.t0),
            }
        }
    }

    fn video(&mut self, rtp: u32, au: &[u8]) {
        self.pipeline.push_video(self.now, rtp, au);
        self.drain();
    }

    fn audio(&mut self, rtp: u32, packet: &[u8]) {
        self.pipeline.push_audio(self.now, rtp, packet);
        self.drain();
    }

    /// The publisher stops at `t`: the pipeline flushes what waits for interleaving.
    fn finish(&mut self, t: Duration) {
        self.at(t);
        self.pipeline.flush(self.now);
        self.drain();
    }

    fn media(&self, kind: TagKind) -> Vec<&MediaTag> {
        self.tags
            .iter()
            .filter(|t| t.kind == kind && !t.sequence_header)
            .collect()
    }

    fn flv(&self, name: &str) -> PathBuf {
        let mut muxer = flv::Muxer::new();
        let mut out = BytesMut::new();
        muxer.write_header(&mut out, true, true);
        for tag in &self.tags {
            muxer.write_tag(&mut out, tag.kind, tag.timestamp, &tag.data);
        }
        let path = test_dir(name).join("pipeline.flv");
        std::fs::write(&path, &out).expect("write flv");
        path
    }
}

/// Capture times of a 30 fps video and 20 ms audio, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Event {
    /// Video frame number, arrival time.
    Video(u64, Duration),
    /// Audio packet number, arrival time.
    Audio(u64, Duration),
}

impl Event {
    fn arrival(self) -> Duration {
        match self {
            Event::Video(_, t) | Event::Audio(_, t) => t,
        }
    }
}

fn frame_time(n: u64) -> Duration {
    Duration::from_nanos(n * 1_000_000_000 / 30)
}

fn packet_time(n: u64) -> Duration {
    Duration::from_millis(n * 20)
}

fn schedule(secs: u64, video_delay: Duration, audio_delay: Option<Duration>) -> Vec<Event> {
    let mut events: Vec<Event> = (0..secs * 30)
        .map(|n| Event::Video(n, frame_time(n) + video_delay))
        .collect();
    if let Some(delay) = audio_delay {
        events.extend((0..secs * 50).map(|n| Event::Audio(n, packet_time(n) + delay)));
    }
    events.sort_by_key(|e| e.arrival());
    events
}

fn video_rtp(base: u32, n: u64) -> u32 {
    base.wrapping_add((n * 3000) as u32)
}

fn audio_rtp(base: u32, n: u64) -> u32 {
    base.wrapping_add((n * 960) as u32)
}

/// A plain publisher: every frame and packet arrives, keyframes answer requests.
fn plain_stream(run: &mut Run, secs: u64, video: &mut VideoSynth, audio: Option<&mut AudioSynth>) {
    let (v0, a0) = (1234u32, 98765u32);
    let mut audio = audio;
    let mut want_key = false;
    for event in schedule(
        secs,
        Duration::from_millis(5),
        audio.as_ref().map(|_| Duration::from_millis(5)),
    ) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                let (au, _) = video.next_frame(std::mem::take(&mut want_key));
                run.video(video_rtp(v0, n), &au);
                want_key = !run.requests.is_empty() && run.requests.len() as u64 > run.keys();
            }
            Event::Audio(n, _) => {
                if let Some(a) = audio.as_deref_mut() {
                    let packet = a.next_packet();
                    run.audio(audio_rtp(a0, n), &packet);
                }
            }
        }
    }
}

impl Run {
    fn keys(&self) -> u64 {
        self.media(TagKind::Video)
            .iter()
            .filter(|t| t.keyframe)
            .count() as u64
    }
}

fn assert_clean(path: &std::path::Path, width: u32, height: u32) -> ffprobe::Probe {
    ffprobe::strict_decode(path).expect("the pipeline's FLV decodes cleanly");
    let probe = ffprobe::probe(path);
    let video = probe.video.clone().expect("a video stream");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", width, height)
    );
    let audio = probe.audio.clone().expect("an audio stream");
    assert_eq!(
        (
            audio.codec.as_str(),
            audio.profile.as_str(),
            audio.sample_rate,
            audio.channels
        ),
        ("aac", "LC", 48_000, 2)
    );
    probe
}

/// Per track timestamps never go back, and media tags are in time order across tracks.
fn assert_ordered(tags: &[MediaTag]) {
    assert_ordered_with(tags, true);
}

fn assert_ordered_with(tags: &[MediaTag], across_tracks: bool) {
    let mut last_video = 0;
    let mut last_audio = 0;
    let mut last_any = 0;
    for tag in tags {
        let last = match tag.kind {
            TagKind::Video => &mut last_video,
            TagKind::Audio => &mut last_audio,
            TagKind::Script => continue,
        };
        assert!(
            tag.timestamp >= *last,
            "{} went back at {}",
            tag.kind,
            tag.timestamp
        );
        *last = tag.timestamp;
        assert!(
            !across_tracks || tag.timestamp >= last_any,
            "not interleaved at {}",
            tag.timestamp
        );
        last_any = tag.timestamp;
    }
}

/// AAC frame k has timestamp frame_ms(k), for every k from 0: the audio has no holes.
fn assert_continuous_aac(run: &Run) -> usize {
    let audio = run.media(TagKind::Audio);
    for (k, tag) in audio.iter().enumerate() {
        assert_eq!(
            tag.timestamp,
            AudioTrack::frame_ms(k as u64),
            "AAC frame {k}"
        );
        assert_eq!(&tag.data[..2], &[0xAF, 0x01]);
    }
    audio.len()
}

#[test]
fn stream_muxes_into_an_flv_that_ffmpeg_decodes_cleanly() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(640, 360, 30, 800_000);
    let mut audio = AudioSynth::new(2);
    plain_stream(&mut run, 3, &mut video, Some(&mut audio));
    run.finish(Duration::from_millis(3050));

    // Headers first: onMetaData, then each track's sequence header before its media.
    assert_eq!(run.tags[0].kind, TagKind::Script);
    let first_video = run
        .tags
        .iter()
        .position(|t| t.kind == TagKind::Video)
        .unwrap();
    assert!(run.tags[first_video].sequence_header);
    assert!(run.tags[first_video + 1].keyframe);
    let first_audio = run
        .tags
        .iter()
        .position(|t| t.kind == TagKind::Audio)
        .unwrap();
    assert_eq!(&run.tags[first_audio].data[..], &[0xAF, 0x00, 0x11, 0x90]);
    assert_ordered(&run.tags);
    let aac_frames = assert_continuous_aac(&run);
    assert!(
        aac_frames >= 3 * 48_000 / 1024,
        "{aac_frames} AAC frames for 3 s"
    );
    assert_eq!(run.media(TagKind::Video).len(), 90);

    let headers = run.pipeline.sequence_headers();
    let kinds: Vec<TagKind> = headers.iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TagKind::Script, TagKind::Video, TagKind::Audio]);
    let meta = flv::metadata::OnMetaData::parse(&headers[0].data).unwrap();
    assert_eq!((meta.width, meta.height), (Some(640.0), Some(360.0)));

    let stats = run.pipeline.stats();
    assert_eq!(stats.video.frames_in, 90);
    assert_eq!(stats.video.frames_out, 90);
    assert_eq!(stats.audio.frames_in, 150);
    assert_eq!(stats.resolution, Some((640, 360)));
    assert!(
        stats.video.bitrate_bps > 0 && stats.audio.bitrate_bps > 0,
        "{stats:?}"
    );

    let path = run.flv("pipeline-clean");
    let probe = assert_clean(&path, 640, 360);
    assert!(
        (probe.duration - 3.0).abs() < 0.15,
        "duration {}",
        probe.duration
    );
    let (v, a) = ffprobe::start_times(&path);
    assert!(
        (v.unwrap() - a.unwrap()).abs() < 0.1,
        "start times {v:?} {a:?}"
    );
}

#[test]
fn sps_change_mid_stream_sends_a_new_sequence_header_and_decodes_cleanly() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(1);
    let (v0, a0) = (7u32, 9u32);
    for event in schedule(3, Duration::ZERO, Some(Duration::ZERO)) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                if n == 45 {
                    video.set_size(640, 360);
                }
                // A forced keyframe with unchanged parameter sets at frame 20.
                let (au, key) = video.next_frame(n == 20);
                assert_eq!(key, n == 0 || n == 20 || n == 45);
                run.video(video_rtp(v0, n), &au);
            }
            Event::Audio(n, _) => {
                let packet = audio.next_packet();
                run.audio(audio_rtp(a0, n), &packet);
            }
        }
    }
    run.finish(Duration::from_millis(3050));

    let headers: Vec<&MediaTag> = run
        .tags
        .iter()
        .filter(|t| t.kind == TagKind::Video && t.sequence_header)
        .collect();
    assert_eq!(
        headers.len(),
        2,
        "one sequence header per SPS, none for the same SPS again"
    );
    let config = flv::avc::AvcDecoderConfig::parse(&headers[1].data[5..]).unwrap();
    let sps = config.parse_sps().unwrap();
    assert_eq!((sps.width, sps.height), (640, 360));
    // The new header goes right before the first keyframe of the new size.
    let at = run
        .tags
        .iter()
        .position(|t| std::ptr::eq(t, headers[1]))
        .unwrap();
    let next_video = run.tags[at + 1..]
        .iter()
        .find(|t| t.kind == TagKind::Video)
        .unwrap();
    assert!(next_video.keyframe && next_video.timestamp == headers[1].timestamp);
    let metas = run
        .tags
        .iter()
        .filter(|t| t.kind == TagKind::Script)
        .count();
    assert_eq!(metas, 2, "onMetaData again for the new size");
    assert_eq!(run.pipeline.stats().resolution, Some((640, 360)));
    assert_eq!(run.media(TagKind::Video).len(), 90);
    assert_ordered(&run.tags);

    let path = run.flv("pipeline-sps-change");
    // ffprobe reports the first size; the decode covers both.
    assert_clean(&path, 320, 180);
}

#[test]
fn loss_drops_until_the_next_keyframe_and_asks_for_it() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(2);
    let (v0, a0) = (u32::MAX / 2, 5u32);
    let mut loss_at = None;
    let mut key_at = None;
    for event in schedule(3, Duration::from_millis(3), Some(Duration::from_millis(3))) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                // The publisher answers a request three frames later.
                let answer = loss_at.is_some_and(|l| n == l + 4);
                let (au, key) = video.next_frame(answer);
                if n == 40 {
                    // Frame 40 never arrives; the session reports the loss.
                    loss_at = Some(n);
                    run.pipeline.video_loss(run.now);
                    run.drain();
                    assert_eq!(run.requests, [run.now - run.t0], "asked at once");
                    continue;
                }
                if key && n > 0 {
                    key_at = Some(n);
                }
                run.video(video_rtp(v0, n), &au);
            }
            Event::Audio(n, _) => {
                let packet = audio.next_packet();
                run.audio(audio_rtp(a0, n), &packet);
            }
        }
    }
    run.finish(Duration::from_millis(3050));
    assert_eq!(key_at, Some(44));
    let video_tags = run.media(TagKind::Video);
    // Frames 0..40, then nothing until the keyframe (frames 41..43 dropped), then the rest.
    assert_eq!(video_tags.len(), 40 + (90 - 44));
    assert!(video_tags[40].keyframe);
    assert!(video_tags[..40].iter().skip(1).all(|t| !t.keyframe));
    let gap = video_tags[40].timestamp - video_tags[39].timestamp;
    assert!((160..=170).contains(&gap), "gap of 5 frames, {gap} ms");
    let stats = run.pipeline.stats();
    assert_eq!(stats.video.frames_dropped, 3);
    assert_eq!(stats.keyframe_requests, 1);
    // A loss does not repeat the AVC sequence header (the SPS did not change).
    assert_eq!(
        run.tags
            .iter()
            .filter(|t| t.kind == TagKind::Video && t.sequence_header)
            .count(),
        1
    );
    assert_continuous_aac(&run);
    assert_ordered(&run.tags);
    assert_clean(&run.flv("pipeline-loss"), 320, 180);
}

#[test]
fn opus_gaps_give_continuous_aac() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(2);
    let lost = |n: u64| n == 20 || (40..45).contains(&n) || (80..105).contains(&n);
    for event in schedule(4, Duration::from_millis(2), Some(Duration::from_millis(2))) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                let (au, _) = video.next_frame(false);
                run.video(video_rtp(0, n), &au);
            }
            Event::Audio(n, _) => {
                let packet = audio.next_packet();
                if !lost(n) {
                    run.audio(audio_rtp(1000, n), &packet);
                }
            }
        }
    }
    run.finish(Duration::from_millis(4050));
    let frames = assert_continuous_aac(&run);
    // 4 s of audio: every sample position is there (the tail may still be in the encoder).
    assert!(
        frames as i64 >= (4 * 48_000 - 2 * 1024) / 1024,
        "{frames} AAC frames"
    );
    let stats = run.pipeline.stats();
    assert_eq!(stats.audio_concealed, 1 + 5 + 25);
    assert_eq!(stats.audio.frames_in, 200 - 31);
    assert_ordered(&run.tags);
    let path = run.flv("pipeline-opus-gaps");
    assert_clean(&path, 320, 180);
    let audio_packets = ffprobe::packets(&path, "a");
    let span = audio_packets.last().unwrap().pts - audio_packets[0].pts;
    assert!((span - 4.0).abs() < 0.1, "audio spans {span} s");
}

#[test]
fn rtp_timestamps_wrap_on_both_tracks() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(2);
    // Video wraps after 20 frames, audio after 30 packets.
    let v0 = u32::MAX - 3000 * 20 + 1;
    let a0 = u32::MAX - 960 * 30 + 1;
    let wall0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for event in schedule(3, Duration::from_millis(4), Some(Duration::from_millis(4))) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                let (au, _) = video.next_frame(false);
                run.video(video_rtp(v0, n), &au);
                if n == 45 {
                    // Sender reports after the wrap map the same instants.
                    let now = run.now;
                    run.pipeline.sender_report(
                        now,
                        Track::Video,
                        video_rtp(v0, 45),
                        wall0 + frame_time(45),
                    );
                    run.pipeline.sender_report(
                        now,
                        Track::Audio,
                        audio_rtp(a0, 75),
                        wall0 + packet_time(75),
                    );
                }
            }
            Event::Audio(n, _) => {
                let packet = audio.next_packet();
                run.audio(audio_rtp(a0, n), &packet);
            }
        }
    }
    run.finish(Duration::from_millis(3050));
    let video_tags = run.media(TagKind::Video);
    assert_eq!(video_tags.len(), 90);
    for pair in video_tags.windows(2) {
        let d = pair[1].timestamp - pair[0].timestamp;
        assert!(
            (33..=34).contains(&d),
            "video step {d} ms at {}",
            pair[1].timestamp
        );
    }
    let frames = assert_continuous_aac(&run);
    assert!(frames >= 135, "{frames}");
    assert_eq!(run.pipeline.stats().audio_concealed, 0);
    assert_ordered(&run.tags);
    assert_clean(&run.flv("pipeline-wrap"), 320, 180);
}

/// Decodes AAC tag bodies with ffmpeg (an FLV of the audio tags alone) into interleaved
/// stereo samples, one decoded frame after the other.
fn ffmpeg_decode_aac(name: &str, bodies: &[&[u8]]) -> Vec<i16> {
    let mut muxer = flv::Muxer::new();
    let mut out = BytesMut::new();
    muxer.write_header(&mut out, true, false);
    muxer.write_tag(&mut out, TagKind::Audio, 0, &[0xAF, 0x00, 0x11, 0x90]);
    for (k, body) in bodies.iter().enumerate() {
        muxer.write_tag(
            &mut out,
            TagKind::Audio,
            AudioTrack::frame_ms(k as u64),
            body,
        );
    }
    let path = test_dir(name).join("audio.flv");
    std::fs::write(&path, &out).unwrap();
    let ffmpeg = streamify_testsupport::require_tool("ffmpeg");
    let output = streamify_testsupport::run(
        std::process::Command::new(ffmpeg)
            .args(["-nostdin", "-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "s16le", "-acodec", "pcm_s16le", "-ac", "2", "-"]),
    );
    output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The output time (ms) of the first loud sample of the pipeline's audio, decoded by ffmpeg.
fn tone_onset_ms(run: &Run) -> f64 {
    let audio = run.media(TagKind::Audio);
    let bodies: Vec<&[u8]> = audio.iter().map(|t| &t.data[..]).collect();
    let pcm = ffmpeg_decode_aac("pipeline-onset", &bodies);
    assert_eq!(
        pcm.len(),
        bodies.len() * 2048,
        "one 1024-sample frame per tag"
    );
    let first = pcm
        .iter()
        .position(|s| s.unsigned_abs() > 2000)
        .expect("no tone in the output");
    (first / 2) as f64 / 48.0
}

/// Video at capture + `video_delay`, audio at capture + `audio_delay`; the tone starts at
/// capture time 1.5 s. Returns (tone onset in the output, timestamp of the video frame
/// captured then).
fn onset_run(video_delay: Duration, audio_delay: Duration, reports: bool) -> (f64, f64) {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(2);
    audio.set_tone(false);
    let (v0, a0) = (3_000_000u32, 4_000_000u32);
    let wall0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for event in schedule(3, video_delay, Some(audio_delay)) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                let (au, _) = video.next_frame(false);
                run.video(video_rtp(v0, n), &au);
                if reports && n == 15 {
                    let now = run.now;
                    // What a sender says: these RTP times were sampled at these instants.
                    let report_at = Duration::from_millis(400);
                    run.pipeline.sender_report(
                        now,
                        Track::Video,
                        v0.wrapping_add((report_at.as_micros() * 90 / 1000) as u32),
                        wall0 + report_at,
                    );
                    run.pipeline.sender_report(
                        now,
                        Track::Audio,
                        a0.wrapping_add((report_at.as_micros() * 48 / 1000) as u32),
                        wall0 + report_at,
                    );
                }
            }
            Event::Audio(n, _) => {
                audio.set_tone(n >= 75);
                let packet = audio.next_packet();
                run.audio(audio_rtp(a0, n), &packet);
            }
        }
    }
    run.finish(Duration::from_millis(3050));
    assert_ordered(&run.tags);
    assert_continuous_aac(&run);
    let onset = tone_onset_ms(&run);
    let video_tags = run.media(TagKind::Video);
    (onset, f64::from(video_tags[45].timestamp))
}

#[test]
fn audio_and_video_line_up_with_the_encoder_delay_accounted_for() {
    let ms = Duration::from_millis;
    let (onset, video) = onset_run(ms(10), ms(10), false);
    // Opus adds 6.5 ms of look-ahead; AAC's 2048 samples are accounted for.
    assert!(
        (onset - video - 6.5).abs() < 8.0,
        "tone at {onset} ms, video at {video} ms"
    );
}

#[test]
fn sender_reports_align_tracks_that_arrive_skewed() {
    let ms = Duration::from_millis;
    let aligned = |(onset, video): (f64, f64)| {
        assert!(
            (onset - video - 6.5).abs() < 8.0,
            "tone at {onset} ms, video at {video} ms"
        );
    };
    // Without reports, arrival time rules: audio 200 ms late on the wire is 200 ms late.
    let (onset, video) = onset_run(ms(10), ms(210), false);
    assert!(
        (onset - video - 200.0).abs() < 15.0,
        "tone at {onset}, video at {video}"
    );
    // With sender reports the tracks line up on the sender's clock.
    aligned(onset_run(ms(10), ms(210), true));
    // Audio first and early on the wire (mapped before video): the same.
    let (onset, video) = onset_run(ms(250), ms(10), false);
    assert!(
        (onset - video + 240.0).abs() < 15.0,
        "tone at {onset}, video at {video}"
    );
    aligned(onset_run(ms(250), ms(10), true));
}

#[test]
fn publisher_without_audio_gets_a_silent_aac_track() {
    let config = PipelineConfig {
        publisher_has_audio: false,
        ..PipelineConfig::default()
    };
    let mut run = Run::new(config);
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    plain_stream(&mut run, 3, &mut video, None);
    run.finish(Duration::from_millis(3050));
    let frames = assert_continuous_aac(&run);
    let last_video = run.media(TagKind::Video).last().unwrap().timestamp;
    let last_audio = run.media(TagKind::Audio).last().unwrap().timestamp;
    assert!(
        last_audio + 100 >= last_video && frames > 130,
        "audio keeps up with video: {frames} frames, {last_audio} vs {last_video}"
    );
    assert_eq!(run.pipeline.stats().audio.frames_in, 0);
    assert!(run.pipeline.stats().audio.frames_out as usize == frames);
    assert_ordered(&run.tags);
    let path = run.flv("pipeline-silent");
    assert_clean(&path, 320, 180);
    let (v, a) = ffprobe::start_times(&path);
    assert!((v.unwrap() - a.unwrap()).abs() < 0.1);
}

#[test]
fn keyframe_requests_come_exactly_at_the_interval() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(160, 90, 30, 100_000);
    let mut answer_next = false;
    let mut answered = false;
    let mut keys = Vec::new();
    for event in schedule(9, Duration::ZERO, None) {
        run.at(event.arrival());
        let Event::Video(n, t) = event else { continue };
        let (au, key) = video.next_frame(std::mem::take(&mut answer_next));
        if key {
            keys.push(t);
        }
        run.video(video_rtp(0, n), &au);
        // The publisher answers the first request only, on the next frame.
        if run.requests.len() == 1 && !answered {
            answered = true;
            answer_next = true;
        }
    }
    let interval = Duration::from_secs(2);
    assert_eq!(keys, [Duration::ZERO, frame_time(61)]);
    let expected = [
        interval,
        frame_time(61) + interval,
        frame_time(61) + 2 * interval,
        frame_time(61) + 3 * interval,
    ];
    assert_eq!(run.requests, expected);
    assert_eq!(run.pipeline.stats().keyframe_requests, 4);
    assert_eq!(run.pipeline.stats().keyframe_interval_ms, Some(2033));
}

#[test]
fn garbage_in_never_panics_and_keeps_the_timeline() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(160, 90, 30, 100_000);
    let mut audio = AudioSynth::new(2);
    let mut x = 0x1234_5678u32;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 3) as u8
            })
            .collect()
    };
    for event in schedule(2, Duration::ZERO, Some(Duration::ZERO)) {
        run.at(event.arrival());
        match event {
            Event::Video(n, _) => {
                let (au, _) = video.next_frame(false);
                run.video(video_rtp(0, n), &au);
                let junk = noise(n as usize * 37 % 3000);
                run.video(n as u32 * 7919, &junk);
                run.video(0, &[0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68]);
                run.video(0, &[]);
            }
            Event::Audio(n, _) => {
                let packet = audio.next_packet();
                run.audio(audio_rtp(0, n), &packet);
                let junk = noise(n as usize % 300);
                run.audio(n as u32 * 104_729, &junk);
                run.audio(u32::MAX, &[]);
            }
        }
    }
    run.finish(Duration::from_millis(2050));
    // Bogus video timestamps push the video clock ahead; each track stays monotonic.
    assert_ordered_with(&run.tags, false);
    assert_continuous_aac(&run);
    assert!(run.media(TagKind::Video).len() >= 60);
}

#[test]
fn pipeline_is_send() {
    fn send<T: Send>() {}
    send::<Pipeline>();
}

#[test]
fn aac_encoder_delay_is_2048_samples() {
    // An impulse in, through fdk-aac and ffmpeg's decoder: where it comes out is the delay
    // the output clock accounts for.
    let encoder = audio::aac_encoder(128_000).unwrap();
    let click = 10_000usize;
    let mut input = vec![0i16; 20 * 1024 * 2];
    for s in &mut input[click * 2..click * 2 + 64] {
        *s = 20_000;
    }
    let mut out = vec![0u8; 8192];
    let mut frames = Vec::new();
    for frame in input.chunks(2048) {
        let info = encoder.encode(frame, &mut out).unwrap();
        assert_eq!(info.input_consumed, 2048);
        assert!(
            info.output_size > 0,
            "one AAC frame per 1024 samples from the first"
        );
        let mut body = vec![0xAF, 0x01];
        body.extend_from_slice(&out[..info.output_size]);
        frames.push(body);
    }
    let bodies: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
    let decoded = ffmpeg_decode_aac("aac-delay", &bodies);
    let at = decoded
        .iter()
        .position(|s| s.unsigned_abs() > 5000)
        .unwrap()
        / 2;
    let delay = at as i64 - click as i64;
    assert!((delay - audio::ENCODER_DELAY).abs() <= 16, "delay {delay}");
    let info = encoder.info().unwrap();
    assert_eq!(&info.confBuf[..info.confSize as usize], &[0x11, 0x90]);
}

/// Chromium (WebSocket e2e run): two frames less than a millisecond apart on the output clock
/// were stamped alike, and ffmpeg's strict decode of the recording said "non monotonically
/// increasing dts". Every video frame gets a timestamp of its own.
#[test]
fn chromium_frames_closer_than_a_millisecond_get_timestamps_of_their_own() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let v0 = 5000u32;
    let mut rtp = v0;
    for n in 0..60u64 {
        run.at(frame_time(n));
        // Bursts: every fifth frame comes with the same RTP time as the one before, then one
        // 45 ticks (0.5 ms) later.
        if n % 5 == 4 {
            rtp = rtp.wrapping_add(45);
        } else if n % 5 != 3 {
            rtp = v0.wrapping_add((n * 3000) as u32);
        }
        let (au, _) = video.next_frame(n == 0);
        run.video(rtp, &au);
    }
    run.finish(frame_time(60) + Duration::from_millis(50));
    let stamps: Vec<u32> = run
        .media(TagKind::Video)
        .iter()
        .map(|t| t.timestamp)
        .collect();
    assert!(stamps.len() >= 50, "{stamps:?}");
    for w in stamps.windows(2) {
        assert!(
            w[1] > w[0],
            "two video frames share or go back in time: {stamps:?}"
        );
    }
    assert_ordered(&run.tags);
    let path = run.flv("same-ms-frames");
    ffprobe::strict_decode(&path).expect("strictly clean");
}

/// The strict check the tests rely on refuses a video timestamp that goes back or repeats.
#[test]
fn strict_decode_refuses_video_timestamps_that_go_back_or_repeat() {
    let mut run = Run::new(PipelineConfig::default());
    let mut video = VideoSynth::new(320, 180, 30, 300_000);
    let mut audio = AudioSynth::new(2);
    plain_stream(&mut run, 2, &mut video, Some(&mut audio));
    run.finish(Duration::from_millis(2050));
    let good = run.flv("strict-good");
    ffprobe::strict_decode(&good).expect("the pipeline's own tags are clean");
    for (name, change) in [("strict-back", -40i64), ("strict-repeat", -33)] {
        let mut tags = run.tags.clone();
        let frames: Vec<usize> = (0..tags.len())
            .filter(|&i| tags[i].kind == TagKind::Video && !tags[i].sequence_header)
            .collect();
        let victim = frames[frames.len() / 2];
        let previous = tags[frames[frames.len() / 2 - 1]].timestamp;
        tags[victim].timestamp = if change == -33 {
            previous
        } else {
            (tags[victim].timestamp as i64 + change) as u32
        };
        let broken = Run {
            tags,
            ..Run::new(PipelineConfig::default())
        };
        let path = broken.flv(name);
        assert!(
            ffprobe::strict_decode(&path).is_err(),
            "{name}: a video timestamp {change:+} ms went unnoticed"
        );
    }
}
