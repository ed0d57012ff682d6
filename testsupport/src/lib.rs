//! Test harness for real peers, shared by the integration tests of every crate.
//!
//! - [`Nginx`]: a private nginx with the RTMP module (application `live` records every publish,
//!   application `closed` refuses every publish), optionally with a TLS front (RTMPS) whose
//!   certificate is signed by a throw-away CA the test trusts explicitly.
//! - [`reference_flv`]: a reference recording made by ffmpeg (libx264 + AAC-LC 48 kHz).
//! - [`ffprobe`]: strict decoding and stream facts of a recording.
//! - [`synth`]: real H.264 (openh264) and Opus (libopus) made in the test.
//!
//! A missing tool is a test failure with a message that says how to install it, never a skip.

pub mod ffprobe;
mod nginx;
pub mod synth;

pub use nginx::{Nginx, NginxOptions};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Panics with an actionable message when `tool` is not on `PATH`; returns its path.
pub fn require_tool(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    let fallback = Path::new("/usr/sbin").join(tool);
    match found {
        Some(path) => path,
        None if fallback.is_file() => fallback,
        None => panic!(
            "required test peer `{tool}` is not installed: run scripts/install-deps.sh test \
             (the README's test command does this)"
        ),
    }
}

/// A fresh, empty, world-traversable directory for one test (nginx workers run as `nobody`).
/// It is kept after the test so a failure can be inspected; it lives under the system temp dir.
pub fn test_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("streamify-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create test dir");
    set_mode(&dir, 0o755);
    dir
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// Runs a command and panics with its output when it fails.
pub fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Parameters of a reference FLV made by ffmpeg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReferenceMedia {
    /// Seconds of media.
    pub seconds: u32,
    /// Video width and height.
    pub width: u32,
    /// Video height.
    pub height: u32,
    /// Keyframe interval in frames (30 fps).
    pub gop: u32,
}

impl Default for ReferenceMedia {
    fn default() -> Self {
        ReferenceMedia {
            seconds: 6,
            width: 1280,
            height: 720,
            gop: 60,
        }
    }
}

/// A reference FLV (H.264 High with B-frames + AAC-LC 48 kHz stereo, 30 fps, 2.5 Mbit/s) made
/// by ffmpeg from its test sources. Cached per parameter set under the temp dir, so only the
/// first test that asks pays for the encode.
pub fn reference_flv(media: ReferenceMedia) -> PathBuf {
    let ffmpeg = require_tool("ffmpeg");
    let dir = std::env::temp_dir().join("streamify-testmedia");
    std::fs::create_dir_all(&dir).expect("media cache dir");
    let ReferenceMedia {
        seconds,
        width,
        height,
        gop,
    } = media;
    let path = dir.join(format!("ref-{seconds}s-{width}x{height}-g{gop}.flv"));
    if path.is_file() {
        return path;
    }
    // Unique per process and call: tests in one process may race to make the same file.
    static MAKING: AtomicU32 = AtomicU32::new(0);
    let tmp = dir.join(format!(
        "{}.{}-{}.tmp.flv",
        path.display(),
        std::process::id(),
        MAKING.fetch_add(1, Ordering::Relaxed)
    ));
    run(Command::new(ffmpeg)
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={width}x{height}:rate=30"))
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
        ])
        .args(["-b:v", "2500k", "-maxrate", "2500k", "-bufsize", "5000k"])
        .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()])
        .args(["-sc_threshold", "0"])
        .args(["-c:a", "aac", "-ar", "48000", "-ac", "2", "-b:a", "128k"])
        .args(["-f", "flv"])
        .arg(&tmp));
    std::fs::rename(&tmp, &path).expect("publish reference media");
    path
}
