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
//! Inside: `video.rs` (Annex-B -> AVC, parameter sets, keyframe gating), `audio.rs` (Opus ->
//! PCM timeline with loss concealment -> AAC-LC), `sync.rs` (RTP unwrapping, sender-report
//! A/V clock), `pipeline.rs` (keyframe requests, interleaving, stats).

use std::time::Duration;

use bytes::{Bytes, BytesMut};

mod audio;
mod pipeline;
mod sync;
#[cfg(test)]
mod tests;
mod video;

pub use pipeline::Pipeline;

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
    /// The tag body (for video: the 5-byte AVC header + AVCC NAL units; for script data the
    /// FLV form `"onMetaData", {..}`: send it with `rtmp::ClientSession::send_metadata_tag`,
    /// which puts `@setDataFrame` in front).
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

/// A buffer that tag bodies are written into one after the other and split off as `Bytes`:
/// once the destinations have dropped the earlier tags the same memory is used again, so
/// a frame costs no allocation in the steady state.
#[derive(Debug)]
pub(crate) struct TagArena {
    buf: BytesMut,
}

impl TagArena {
    const CHUNK: usize = 512 * 1024;

    pub(crate) fn new() -> Self {
        TagArena {
            buf: BytesMut::with_capacity(Self::CHUNK),
        }
    }

    /// The buffer to write one tag body into, with room for at least `hint` bytes.
    pub(crate) fn begin(&mut self, hint: usize) -> &mut BytesMut {
        self.buf.clear();
        if self.buf.capacity() < hint {
            self.buf.reserve(hint.max(Self::CHUNK));
        }
        &mut self.buf
    }

    /// The body written since [`begin`](TagArena::begin).
    pub(crate) fn finish(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Forgets what was written since [`begin`](TagArena::begin).
    pub(crate) fn abandon(&mut self) {
        self.buf.clear();
    }
}
