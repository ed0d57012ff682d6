//! The checks issue 3 makes of every end-to-end recording, with the figures they measured.

use std::path::Path;
use std::time::Duration;

use streamify_testsupport::ffprobe;

/// Largest keyframe interval allowed (YouTube wants one at least every 2 s; the server asks for
/// one after 2 s without).
pub const MAX_KEYFRAME_INTERVAL: f64 = 2.5;
/// Largest relative difference between the recording's duration and the time sent.
pub const MAX_DURATION_ERROR: f64 = 0.05;
/// Largest difference between the audio and video start times, seconds.
pub const MAX_AV_START_OFFSET: f64 = 0.100;

/// What a recording measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Media time the publisher sent, seconds.
    pub sent: f64,
    /// The recording's duration from its packet timestamps (first start to last end), seconds.
    pub duration: f64,
    /// The container duration ffprobe reports, seconds.
    pub container_duration: f64,
    /// `(duration - sent) / sent`.
    pub duration_error: f64,
    /// Largest keyframe interval, seconds.
    pub max_keyframe_interval: f64,
    /// Audio start minus video start, seconds.
    pub av_start_offset: f64,
    /// Video keyframes in the recording.
    pub keyframes: usize,
    /// Probe facts.
    pub probe: ffprobe::Probe,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let video = self.probe.video.as_ref();
        let audio = self.probe.audio.as_ref();
        write!(
            f,
            "sent {:.3} s, recorded {:.3} s (container {:.3} s), duration error {:+.2} %, \
             max keyframe interval {:.3} s ({} keyframes), A/V start offset {:+.0} ms, \
             video {} {} {}x{}, audio {} {} {} Hz {} ch",
            self.sent,
            self.duration,
            self.container_duration,
            self.duration_error * 100.0,
            self.max_keyframe_interval,
            self.keyframes,
            self.av_start_offset * 1000.0,
            video.map_or("-", |v| v.codec.as_str()),
            video.map_or("-", |v| v.profile.as_str()),
            video.map_or(0, |v| v.width),
            video.map_or(0, |v| v.height),
            audio.map_or("-", |a| a.codec.as_str()),
            audio.map_or("-", |a| a.profile.as_str()),
            audio.map_or(0, |a| a.sample_rate),
            audio.map_or(0, |a| a.channels),
        )
    }
}

/// Measures `recording` against `sent` media time and returns the figures and every check that
/// failed (empty when the recording is good). A missing or empty file is one failure.
pub fn check_recording(recording: &Path, sent: Duration) -> (Option<Figures>, Vec<String>) {
    let mut failures = Vec::new();
    let size = std::fs::metadata(recording).map(|m| m.len()).unwrap_or(0);
    if size < 1024 {
        failures.push(format!(
            "recording {} is missing or nearly empty ({size} bytes)",
            recording.display()
        ));
        return (None, failures);
    }
    if let Err(e) = ffprobe::strict_decode(recording) {
        failures.push(e);
    }
    let probe = ffprobe::probe(recording);
    match &probe.video {
        Some(v) if v.codec == "h264" && v.width > 0 && v.height > 0 => {}
        other => failures.push(format!("video is not H.264 with a size: {other:?}")),
    }
    match &probe.audio {
        Some(a) if a.codec == "aac" && a.profile == "LC" && a.sample_rate == 48_000 => {}
        other => failures.push(format!("audio is not AAC-LC 48 kHz: {other:?}")),
    }
    let video = ffprobe::packets(recording, "v");
    let audio = ffprobe::packets(recording, "a");
    let span = |packets: &[ffprobe::Packet], last_duration: f64| -> Option<(f64, f64)> {
        let first = packets.iter().map(|p| p.pts).fold(f64::INFINITY, f64::min);
        let last = packets
            .iter()
            .map(|p| p.pts)
            .fold(f64::NEG_INFINITY, f64::max);
        (!packets.is_empty()).then_some((first, last + last_duration))
    };
    let video_span = span(&video, video_frame_duration(&video));
    let audio_span = span(&audio, 1024.0 / 48_000.0);
    let (start, end) = match (video_span, audio_span) {
        (Some(v), Some(a)) => (v.0.min(a.0), v.1.max(a.1)),
        (Some(s), None) | (None, Some(s)) => s,
        (None, None) => (0.0, 0.0),
    };
    let duration = end - start;
    let sent = sent.as_secs_f64();
    let duration_error = (duration - sent) / sent;
    if duration_error.abs() > MAX_DURATION_ERROR {
        failures.push(format!(
            "recorded {duration:.3} s of media for {sent:.3} s sent: {:+.2} % (limit {} %)",
            duration_error * 100.0,
            MAX_DURATION_ERROR * 100.0
        ));
    }
    let keyframes = video.iter().filter(|p| p.keyframe).count();
    let max_keyframe_interval = if keyframes == 0 {
        failures.push("the recording has no video keyframe".into());
        f64::INFINITY
    } else {
        ffprobe::max_keyframe_interval(recording)
    };
    if max_keyframe_interval > MAX_KEYFRAME_INTERVAL {
        failures.push(format!(
            "largest keyframe interval {max_keyframe_interval:.3} s > {MAX_KEYFRAME_INTERVAL} s"
        ));
    }
    let av_start_offset = match ffprobe::start_times(recording) {
        (Some(v), Some(a)) => a - v,
        other => {
            failures.push(format!("no start time for both tracks: {other:?}"));
            f64::INFINITY
        }
    };
    if av_start_offset.abs() > MAX_AV_START_OFFSET {
        failures.push(format!(
            "audio starts {:+.0} ms after video (limit {:.0} ms)",
            av_start_offset * 1000.0,
            MAX_AV_START_OFFSET * 1000.0
        ));
    }
    let figures = Figures {
        sent,
        duration,
        container_duration: probe.duration,
        duration_error,
        max_keyframe_interval,
        av_start_offset,
        keyframes,
        probe,
    };
    (Some(figures), failures)
}

/// The median distance between video packets (the last frame's duration), 1/30 s if unknown.
fn video_frame_duration(video: &[ffprobe::Packet]) -> f64 {
    let mut pts: Vec<f64> = video.iter().map(|p| p.pts).collect();
    pts.sort_by(f64::total_cmp);
    let mut gaps: Vec<f64> = pts
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|g| *g > 0.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied().unwrap_or(1.0 / 30.0)
}
