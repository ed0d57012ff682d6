//! Strict checks of a recording with ffmpeg/ffprobe (exit codes alone lie; see TESTING.md).

use crate::require_tool;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Decodes every packet of `path` with `-xerror`; Ok only if ffmpeg exits 0 and prints
/// nothing at level error (no corrupt frames, no non-monotonic timestamps).
///
/// Timestamps are judged at FLV's own resolution, the millisecond (`-enc_time_base 1:1000`):
/// by default ffmpeg re-stamps decoded video in units of the SPS frame rate, so two valid
/// frames 10 ms apart (a browser answering a keyframe request right after a frame) would
/// collide there and read as a DTS going back. Timestamps that do go back or repeat are still
/// refused.
pub fn strict_decode(path: &Path) -> Result<(), String> {
    let ffmpeg = require_tool("ffmpeg");
    let out = Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-enc_time_base", "1:1000", "-f", "null", "-"])
        .output()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() && stderr.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "ffmpeg strict decode of {} failed ({}): {stderr}",
            path.display(),
            out.status
        ))
    }
}

/// The video stream of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Codec name, e.g. `h264`.
    pub codec: String,
    /// Profile, e.g. `High`, `Constrained Baseline`.
    pub profile: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The audio stream of a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Codec name, e.g. `aac`.
    pub codec: String,
    /// Profile, e.g. `LC`.
    pub profile: String,
    /// Sample rate in Hz.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u32,
}

/// What ffprobe says of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The first video stream.
    pub video: Option<VideoInfo>,
    /// The first audio stream.
    pub audio: Option<AudioInfo>,
    /// Container duration in seconds.
    pub duration: f64,
}

fn ffprobe_json(path: &Path, args: &[&str]) -> Value {
    let ffprobe = require_tool("ffprobe");
    let out = Command::new(ffprobe)
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe json")
}

fn text(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_default().to_string()
}

fn number(v: &Value, key: &str) -> f64 {
    match &v[key] {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Streams and duration of `path`.
pub fn probe(path: &Path) -> Probe {
    let json = ffprobe_json(path, &["-show_streams", "-show_format"]);
    let streams = json["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .map(|s| VideoInfo {
            codec: text(s, "codec_name"),
            profile: text(s, "profile"),
            width: number(s, "width") as u32,
            height: number(s, "height") as u32,
        });
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .map(|s| AudioInfo {
            codec: text(s, "codec_name"),
            profile: text(s, "profile"),
            sample_rate: number(s, "sample_rate") as u32,
            channels: number(s, "channels") as u32,
        });
    Probe {
        video,
        audio,
        duration: number(&json["format"], "duration"),
    }
}

/// One packet as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Presentation time in seconds.
    pub pts: f64,
    /// Decode time in seconds.
    pub dts: f64,
    /// Whether the packet is a keyframe.
    pub keyframe: bool,
    /// Size in bytes.
    pub size: u64,
}

/// Packets of the first video (`"v"`) or audio (`"a"`) stream, in file order.
pub fn packets(path: &Path, stream: &str) -> Vec<Packet> {
    let selector = format!("{stream}:0");
    let json = ffprobe_json(
        path,
        &[
            "-select_streams",
            &selector,
            "-show_entries",
            "packet=pts_time,dts_time,flags,size",
        ],
    );
    json["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| Packet {
            pts: number(p, "pts_time"),
            dts: number(p, "dts_time"),
            keyframe: p["flags"].as_str().is_some_and(|f| f.starts_with('K')),
            size: number(p, "size") as u64,
        })
        .collect()
}

/// The largest distance in seconds between consecutive video keyframes, counting from the
/// first keyframe to the last video packet as well (a trailing long GOP counts).
pub fn max_keyframe_interval(path: &Path) -> f64 {
    let video = packets(path, "v");
    let keys: Vec<f64> = video.iter().filter(|p| p.keyframe).map(|p| p.pts).collect();
    let last = video.iter().map(|p| p.pts).fold(f64::MIN, f64::max);
    let mut worst: f64 = 0.0;
    for pair in keys.windows(2) {
        worst = worst.max(pair[1] - pair[0]);
    }
    if let Some(&k) = keys.last() {
        worst = worst.max(last - k);
    }
    worst
}

/// Start times (first packet pts, seconds) of the video and audio streams.
pub fn start_times(path: &Path) -> (Option<f64>, Option<f64>) {
    let first = |s: &str| packets(path, s).first().map(|p| p.pts);
    (first("v"), first("a"))
}
