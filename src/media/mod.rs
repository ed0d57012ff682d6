//! The per-stream media pipeline: depacketized WebRTC frames in, FLV tag bodies out.
//!
//! Sans-IO like the crates below it: time is passed in, nothing here owns a socket, a task or a
//! clock. The WebRTC session task drives it:
//!
//! ```text
//! push_video / push_audio / sender_report / video_loss   (as str0m hands them over)
//! handle_timeout(now) when poll_timeout() is due
//! while let Some(out) = poll_output() { Tag -> fan out to destinations, RequestKeyframe -> PLI }
//! ```
//!
//! Every [`MediaTag`] carries one `Bytes` that every destination shares (a refcount, not a copy).
//!
//! INTERFACE CONTRACT (agreed between the media and server engineers; the bodies are being
//! written in `pipeline.rs` and friends by the media engineer).

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

/// Which track an RTCP sender report or a statistic is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Track {
    /// H.264 video (RTP clock 90 kHz).
    Video,
    /// Opus audio (RTP clock 48 kHz).
    Audio,
}

/// Settings of one stream's pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Ask the publisher for a keyframe when none arrived for this long (YouTube wants <= 2 s).
    pub keyframe_interval: Duration,
    /// AAC-LC bit rate in bit/s (48 kHz stereo).
    pub aac_bitrate: u32,
    /// Whether the publisher offered an audio track. Without one (or while none arrives) the
    /// pipeline still produces a valid AAC track of silence.
    pub publisher_has_audio: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            keyframe_interval: Duration::from_secs(2),
            aac_bitrate: 128_000,
            publisher_has_audio: true,
        }
    }
}

/// One FLV tag body ready for every destination (RTMP message payload == FLV tag body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaTag {
    /// Audio, video or script data (`onMetaData`, sent as `@setDataFrame`).
    pub kind: flv::TagKind,
    /// Milliseconds on the stream's output clock: starts at 0, never goes back per track.
    pub timestamp: u32,
    /// The tag body (for video: the 5-byte AVC header + AVCC NAL units).
    pub data: Bytes,
    /// A video keyframe (a destination may start or resume here).
    pub keyframe: bool,
    /// `onMetaData`, the AVC sequence header or the AAC sequence header: a destination that
    /// (re)connects must receive the latest of each before any media.
    pub sequence_header: bool,
}

/// What the pipeline asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipelineOutput {
    /// A tag for every destination, in time order across tracks.
    Tag(MediaTag),
    /// Ask the publisher for a keyframe (PLI or FIR).
    RequestKeyframe,
}

/// Per-track figures for the API.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TrackStats {
    /// Frames received from the publisher.
    pub frames_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Frames (tags) produced for destinations.
    pub frames_out: u64,
    /// Tag bytes produced.
    pub bytes_out: u64,
    /// Frames dropped (before the first keyframe, after a loss, undecodable).
    pub frames_dropped: u64,
    /// Output bit rate over the last few seconds, bit/s.
    pub bitrate_bps: u64,
}

/// Figures of one pipeline.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct PipelineStats {
    /// Video figures.
    pub video: TrackStats,
    /// Audio figures.
    pub audio: TrackStats,
    /// Current video width and height, once an SPS was seen.
    pub resolution: Option<(u32, u32)>,
    /// Measured interval between the last two keyframes, milliseconds.
    pub keyframe_interval_ms: Option<u64>,
    /// Keyframe requests sent to the publisher.
    pub keyframe_requests: u64,
    /// Opus packets concealed (lost or late).
    pub audio_concealed: u64,
}

/// A pipeline could not be built (codec initialisation).
#[derive(Debug, thiserror::Error)]
#[error("media pipeline: {0}")]
pub struct MediaError(pub String);

/// One stream's pipeline (see the module docs for the drive loop).
pub struct Pipeline {
    _private: (),
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").finish_non_exhaustive()
    }
}

#[allow(clippy::todo, unused_variables)]
impl Pipeline {
    /// A pipeline whose output clock starts at `now`.
    pub fn new(config: PipelineConfig, now: Instant) -> Result<Pipeline, MediaError> {
        todo!("media engineer")
    }
    /// One depacketized H.264 access unit (Annex-B) with its 90 kHz RTP timestamp.
    pub fn push_video(&mut self, now: Instant, rtp_time: u32, annexb: &[u8]) {
        todo!("media engineer")
    }
    /// One Opus packet with its 48 kHz RTP timestamp.
    pub fn push_audio(&mut self, now: Instant, rtp_time: u32, opus: &[u8]) {
        todo!("media engineer")
    }
    /// Video was lost beyond repair: drop until the next keyframe (and ask for one).
    pub fn video_loss(&mut self, now: Instant) {
        todo!("media engineer")
    }
    /// An RTCP sender report: `rtp_time` of `track` corresponds to wall-clock `ntp`.
    pub fn sender_report(&mut self, now: Instant, track: Track, rtp_time: u32, ntp: SystemTime) {
        todo!("media engineer")
    }
    /// Time passes (keyframe deadline, silence fill, interleaving flush).
    pub fn handle_timeout(&mut self, now: Instant) {
        todo!("media engineer")
    }
    /// When [`handle_timeout`](Pipeline::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("media engineer")
    }
    /// The next output; drain until `None` after every push or timeout.
    pub fn poll_output(&mut self) -> Option<PipelineOutput> {
        todo!("media engineer")
    }
    /// The latest `onMetaData`, AVC and AAC sequence headers (for a destination that
    /// connects or reconnects mid-stream), in that order.
    pub fn sequence_headers(&self) -> Vec<MediaTag> {
        todo!("media engineer")
    }
    /// Figures for the API.
    pub fn stats(&self) -> PipelineStats {
        todo!("media engineer")
    }
}
