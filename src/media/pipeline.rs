//! The per-stream pipeline: wires the video track, the audio track and the A/V clock, gates
//! on keyframes, asks for keyframes on time, and interleaves the two tracks by timestamp.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use flv::TagKind;

use super::audio::{self, AudioTrack, PacketFate};
use super::sync::{us_since, AvClock};
use super::video::VideoTrack;
use super::{
    MediaError, MediaTag, PipelineConfig, PipelineOutput, PipelineStats, TagArena, Track,
    TrackStats,
};

/// The output clock runs this far ahead of the media clock so that the AAC encoder's delay
/// needs no negative timestamps: the first AAC frame (all priming) is at 0 and the first
/// keyframe, like the first real audio sample, at 42.67 ms.
const OUTPUT_DELAY_US: i64 = audio::ENCODER_DELAY * 1_000_000 / audio::RATE;
/// A tag waits at most this long for the other track before it goes out anyway.
const MAX_INTERLEAVE_WAIT: Duration = Duration::from_millis(500);
/// When Opus packets stop for this long, silence fills the timeline (lagging this much).
const AUDIO_STALL: Duration = Duration::from_millis(300);
/// While waiting for a keyframe, ask again at most this often.
const KEYFRAME_REQUEST_SPACING: Duration = Duration::from_millis(500);
/// Bit rates are measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Queued {
    tag: MediaTag,
    at: Instant,
}

#[derive(Debug, Default)]
struct RateMeter {
    since: Option<Instant>,
    bytes: u64,
}

impl RateMeter {
    fn add(&mut self, now: Instant, bytes: usize, stats: &mut TrackStats) {
        let since = *self.since.get_or_insert(now);
        self.bytes += bytes as u64;
        let elapsed = now.saturating_duration_since(since);
        if elapsed >= RATE_WINDOW {
            stats.bitrate_bps =
                (u128::from(self.bytes) * 8 * 1_000_000 / elapsed.as_micros().max(1)) as u64;
            self.since = Some(now);
            self.bytes = 0;
        }
    }
}

/// One stream's pipeline (see the module docs for the drive loop).
pub struct Pipeline {
    config: PipelineConfig,
    clock: AvClock,
    start: Instant,
    video: VideoTrack,
    audio: AudioTrack,
    arena: TagArena,
    /// Media time (us) of the output origin: the first keyframe.
    base_us: Option<i64>,
    /// Whether audio is expected from the publisher (configured, or packets came anyway).
    audio_from_publisher: bool,

    video_started: bool,
    waiting_for_key: bool,
    last_key_at: Option<Instant>,
    last_key_media_us: Option<i64>,
    last_request_at: Option<Instant>,

    /// Timestamp of the newest video tag: no later video tag is earlier.
    video_watermark: Option<u32>,
    /// The timestamp of the last video frame that went out (frames never share one).
    last_video_frame_ms: Option<u32>,
    video_queue: VecDeque<Queued>,
    audio_queue: VecDeque<Queued>,
    ready: VecDeque<PipelineOutput>,

    metadata_tag: Option<MediaTag>,
    avc_header_tag: Option<MediaTag>,
    aac_header_tag: Option<MediaTag>,

    stats: PipelineStats,
    video_rate: RateMeter,
    audio_rate: RateMeter,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("base_us", &self.base_us)
            .field("waiting_for_key", &self.waiting_for_key)
            .field("audio", &self.audio)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline whose output clock starts at `now`.
    pub fn new(config: PipelineConfig, now: Instant) -> Result<Pipeline, MediaError> {
        if config.keyframe_interval.is_zero() {
            return Err(MediaError("keyframe interval must not be zero".into()));
        }
        let audio = AudioTrack::new(config.aac_bitrate)?;
        Ok(Pipeline {
            audio_from_publisher: config.publisher_has_audio,
            config,
            clock: AvClock::new(now),
            start: now,
            video: VideoTrack::default(),
            audio,
            arena: TagArena::new(),
            base_us: None,
            video_started: false,
            waiting_for_key: true,
            last_key_at: None,
            last_key_media_us: None,
            last_request_at: None,
            video_watermark: None,
            last_video_frame_ms: None,
            video_queue: VecDeque::with_capacity(64),
            audio_queue: VecDeque::with_capacity(64),
            ready: VecDeque::with_capacity(64),
            metadata_tag: None,
            avc_header_tag: None,
            aac_header_tag: None,
            stats: PipelineStats::default(),
            video_rate: RateMeter::default(),
            audio_rate: RateMeter::default(),
        })
    }

    /// One depacketized H.264 access unit (Annex-B) with its 90 kHz RTP timestamp.
    pub fn push_video(&mut self, now: Instant, rtp_time: u32, annexb: &[u8]) {
        self.stats.video.frames_in += 1;
        self.stats.video.bytes_in += annexb.len() as u64;
        let (_, media_us) = self.clock.packet(Track::Video, now, rtp_time);
        let unit = self.video.convert(&mut self.arena, annexb);
        self.stats.resolution = self.video.resolution;
        if !unit.non_empty {
            self.arena.abandon();
            self.stats.video.frames_dropped += 1;
            return;
        }
        if !self.video_started {
            self.video_started = true;
            self.last_key_at = Some(now);
        }
        if self.waiting_for_key && !(unit.key && self.video.configured()) {
            self.arena.abandon();
            self.stats.video.frames_dropped += 1;
            if let Some(ts) = self.output_ms(media_us) {
                self.advance_video_watermark(ts);
            }
            self.request_keyframe_soon(now);
            self.pump(now);
            return;
        }
        let body = self.arena.finish();
        self.waiting_for_key = false;
        if unit.key {
            if let Some(prev) = self.last_key_media_us {
                self.stats.keyframe_interval_ms = Some(((media_us - prev).max(0) / 1000) as u64);
            }
            self.last_key_media_us = Some(media_us);
            self.last_key_at = Some(now);
        }
        if self.base_us.is_none() {
            self.base_us = Some(media_us);
        }
        let ts = self.output_ms(media_us).unwrap_or(0);
        let ts = self.advance_video_watermark(ts);
        // Two frames closer than a millisecond (a burst after a keyframe request, jitter in
        // the publisher's clock) would share a timestamp, which FLV readers take as a DTS
        // going back: each frame gets its own millisecond; later frames catch up.
        let ts = match self.last_video_frame_ms {
            Some(last) if ts <= last => self.advance_video_watermark(last + 1),
            _ => ts,
        };
        self.last_video_frame_ms = Some(ts);
        if self.video.metadata_pending {
            self.video.metadata_pending = false;
            let tag = MediaTag {
                kind: TagKind::Script,
                timestamp: ts,
                data: self.video.metadata_body(self.config.aac_bitrate),
                keyframe: false,
                sequence_header: true,
            };
            self.metadata_tag = Some(tag.clone());
            self.video_queue.push_back(Queued { tag, at: now });
        }
        if self.video.sequence_header_pending {
            self.video.sequence_header_pending = false;
            if let Some(data) = self.video.sequence_header.clone() {
                let tag = MediaTag {
                    kind: TagKind::Video,
                    timestamp: ts,
                    data,
                    keyframe: true,
                    sequence_header: true,
                };
                self.avc_header_tag = Some(tag.clone());
                self.video_queue.push_back(Queued { tag, at: now });
            }
        }
        self.video_queue.push_back(Queued {
            tag: MediaTag {
                kind: TagKind::Video,
                timestamp: ts,
                data: body,
                keyframe: unit.key,
                sequence_header: false,
            },
            at: now,
        });
        self.fill_audio(now);
        self.pump(now);
    }

    /// One Opus packet with its 48 kHz RTP timestamp.
    pub fn push_audio(&mut self, now: Instant, rtp_time: u32, opus: &[u8]) {
        self.stats.audio.frames_in += 1;
        self.stats.audio.bytes_in += opus.len() as u64;
        self.audio_from_publisher = true;
        let (ext, media_us) = self.clock.packet(Track::Audio, now, rtp_time);
        let Some(base) = self.base_us else {
            // Before the first keyframe there is no output clock yet.
            self.audio.discard(opus);
            self.stats.audio.frames_dropped += 1;
            return;
        };
        let mapped = us_to_samples(media_us - base);
        let pos = self.audio.position(ext, mapped, self.clock.audio_epoch());
        let queue = &mut self.audio_queue;
        let fate = self
            .audio
            .push(now, pos, opus, &mut self.arena, &mut |ts, data, header| {
                queue.push_back(Queued {
                    tag: audio_tag(ts, data, header),
                    at: now,
                });
            });
        if fate == PacketFate::Dropped {
            self.stats.audio.frames_dropped += 1;
        }
        self.stats.audio_concealed = self.audio.concealed_packets();
        self.pump(now);
    }

    /// Video was lost beyond repair: drop until the next keyframe (and ask for one).
    pub fn video_loss(&mut self, now: Instant) {
        self.waiting_for_key = true;
        self.request_keyframe_soon(now);
    }

    /// An RTCP sender report: `rtp_time` of `track` corresponds to wall-clock `ntp`.
    pub fn sender_report(&mut self, _now: Instant, track: Track, rtp_time: u32, ntp: SystemTime) {
        self.clock.sender_report(track, rtp_time, ntp);
    }

    /// Time passes (keyframe deadline, silence fill, interleaving flush).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.keyframe_deadline() {
            if now >= deadline {
                self.request_keyframe(now);
            }
        }
        self.fill_audio(now);
        self.pump(now);
    }

    /// When [`handle_timeout`](Pipeline::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flush = [self.video_queue.front(), self.audio_queue.front()]
            .into_iter()
            .flatten()
            .map(|q| q.at + MAX_INTERLEAVE_WAIT)
            .min();
        [self.keyframe_deadline(), self.audio_fill_deadline(), flush]
            .into_iter()
            .flatten()
            .min()
    }

    /// End of stream: every tag still waiting for the other track goes out now, in time
    /// order. Drain [`poll_output`](Pipeline::poll_output) afterwards.
    pub fn flush(&mut self, now: Instant) {
        self.pump(now);
        while !self.video_queue.is_empty() || !self.audio_queue.is_empty() {
            let take_video = match (self.video_queue.front(), self.audio_queue.front()) {
                (Some(v), Some(a)) => v.tag.timestamp <= a.tag.timestamp,
                (v, _) => v.is_some(),
            };
            self.emit(now, take_video);
        }
    }

    /// The next output; drain until `None` after every push or timeout.
    pub fn poll_output(&mut self) -> Option<PipelineOutput> {
        self.ready.pop_front()
    }

    /// The latest `onMetaData`, AVC and AAC sequence headers (for a destination that
    /// connects or reconnects mid-stream), in that order.
    pub fn sequence_headers(&self) -> Vec<MediaTag> {
        [
            &self.metadata_tag,
            &self.avc_header_tag,
            &self.aac_header_tag,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// Figures for the API.
    pub fn stats(&self) -> PipelineStats {
        self.stats.clone()
    }

    // -- keyframes ---------------------------------------------------------------------------

    /// When the next keyframe request is due: `keyframe_interval` after the newer of the last
    /// keyframe and the last request. Only once video flows.
    fn keyframe_deadline(&self) -> Option<Instant> {
        let last = match (self.last_key_at, self.last_request_at) {
            (Some(k), Some(r)) => k.max(r),
            (k, r) => k.or(r)?,
        };
        Some(last + self.config.keyframe_interval)
    }

    fn request_keyframe(&mut self, now: Instant) {
        self.last_request_at = Some(now);
        self.stats.keyframe_requests += 1;
        self.ready.push_back(PipelineOutput::RequestKeyframe);
    }

    /// Asks for a keyframe now unless one was asked for very recently.
    fn request_keyframe_soon(&mut self, now: Instant) {
        let spacing = KEYFRAME_REQUEST_SPACING.min(self.config.keyframe_interval);
        let recent = self
            .last_request_at
            .is_some_and(|at| now.saturating_duration_since(at) < spacing);
        if !recent {
            self.request_keyframe(now);
        }
    }

    // -- clocks --------------------------------------------------------------------------------

    /// Output milliseconds of a media time (None before the output origin is known).
    fn output_ms(&self, media_us: i64) -> Option<u32> {
        let base = self.base_us?;
        Some(((media_us - base + OUTPUT_DELAY_US).max(0) / 1000) as u32)
    }

    /// Raises the video watermark to `ts` and returns the (never decreasing) video timestamp.
    fn advance_video_watermark(&mut self, ts: u32) -> u32 {
        let ts = self.video_watermark.map_or(ts, |w| w.max(ts));
        self.video_watermark = Some(ts);
        ts
    }

    // -- audio fill ------------------------------------------------------------------------------

    /// How far silence should have filled the audio timeline by `now`: up to now for a
    /// publisher without audio; for one with audio only once its packets stopped, lagging
    /// [`AUDIO_STALL`] behind where they would be.
    fn audio_fill_target(&self, now: Instant) -> Option<i64> {
        let base = self.base_us?;
        let stall_us = AUDIO_STALL.as_micros() as i64;
        if !self.audio_from_publisher {
            return Some(us_to_samples(self.clock.now_us(now) - base));
        }
        Some(match self.audio.last_packet() {
            Some((end, at)) => end + us_to_samples(us_since(at, now) - stall_us),
            None => us_to_samples(self.clock.now_us(now) - base - stall_us),
        })
    }

    /// The inverse of [`audio_fill_target`]: when the fill target reaches the sample that
    /// completes the next AAC frame.
    fn audio_fill_deadline(&self) -> Option<Instant> {
        let base = self.base_us?;
        let needed = self.audio.filled() + self.audio.needed_for_next_frame();
        let stall_us = AUDIO_STALL.as_micros() as i64;
        let (from, us) = if !self.audio_from_publisher {
            (self.start, base + samples_to_us_ceil(needed))
        } else {
            match self.audio.last_packet() {
                Some((end, at)) => (at, samples_to_us_ceil(needed - end) + stall_us),
                None => (self.start, base + stall_us + samples_to_us_ceil(needed)),
            }
        };
        Some(from + Duration::from_micros(us.max(0) as u64))
    }

    fn fill_audio(&mut self, now: Instant) {
        let Some(target) = self.audio_fill_target(now) else {
            return;
        };
        let missing = target - self.audio.filled();
        if missing <= 0 {
            return;
        }
        if self.audio.last_packet().is_some() {
            // The publisher's audio stopped: this is concealment too.
            self.audio.concealed_samples += missing as u64;
            self.stats.audio_concealed = self.audio.concealed_packets();
        }
        let queue = &mut self.audio_queue;
        self.audio
            .fill_silence(missing, &mut self.arena, &mut |ts, data, header| {
                queue.push_back(Queued {
                    tag: audio_tag(ts, data, header),
                    at: now,
                });
            });
    }

    // -- interleaving ----------------------------------------------------------------------------

    /// Moves tags from the track queues to the output in timestamp order: a tag goes out once
    /// the other track cannot produce anything earlier, or once it waited too long.
    fn pump(&mut self, now: Instant) {
        loop {
            let video = self.video_queue.front();
            let audio = self.audio_queue.front();
            let take_video = match (video, audio) {
                (None, None) => break,
                // onMetaData goes out as soon as it is made.
                (Some(v), _) if v.tag.kind == TagKind::Script => true,
                (Some(v), Some(a)) => v.tag.timestamp <= a.tag.timestamp,
                (Some(v), None) => {
                    if v.tag.timestamp <= self.audio.watermark_ms()
                        || now.saturating_duration_since(v.at) >= MAX_INTERLEAVE_WAIT
                    {
                        true
                    } else {
                        break;
                    }
                }
                (None, Some(a)) => {
                    let settled = self.video_watermark.is_some_and(|w| a.tag.timestamp <= w);
                    if settled || now.saturating_duration_since(a.at) >= MAX_INTERLEAVE_WAIT {
                        false
                    } else {
                        break;
                    }
                }
            };
            self.emit(now, take_video);
        }
    }

    /// Moves the front tag of one track's queue to the output.
    fn emit(&mut self, now: Instant, video: bool) {
        let queue = if video {
            &mut self.video_queue
        } else {
            &mut self.audio_queue
        };
        let Some(Queued { tag, .. }) = queue.pop_front() else {
            return;
        };
        let (stats, meter) = match tag.kind {
            TagKind::Audio => (&mut self.stats.audio, &mut self.audio_rate),
            _ => (&mut self.stats.video, &mut self.video_rate),
        };
        if !tag.sequence_header {
            stats.frames_out += 1;
        } else if tag.kind == TagKind::Audio {
            self.aac_header_tag = Some(tag.clone());
        }
        stats.bytes_out += tag.data.len() as u64;
        meter.add(now, tag.data.len(), stats);
        self.ready.push_back(PipelineOutput::Tag(tag));
    }
}

fn audio_tag(timestamp: u32, data: Bytes, sequence_header: bool) -> MediaTag {
    MediaTag {
        kind: TagKind::Audio,
        timestamp,
        data,
        keyframe: false,
        sequence_header,
    }
}

/// Samples (48 kHz) in `us` microseconds, rounded down.
fn us_to_samples(us: i64) -> i64 {
    (us * audio::RATE).div_euclid(1_000_000)
}

/// Microseconds of `samples` (48 kHz), rounded up.
fn samples_to_us_ceil(samples: i64) -> i64 {
    -((-samples * 1_000_000).div_euclid(audio::RATE))
}
