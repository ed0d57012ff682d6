//! Outputs: one task per destination that takes the stream's tags and publishes them.
//! Today the only kind is RTMP/RTMPS ([`rtmp`]).

pub mod rtmp;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::error::{Error, ErrorCode};
use crate::media::MediaTag;

/// Where one destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationState {
    /// Not started (the stream is not sending yet).
    Idle,
    /// Connecting for the first time.
    Connecting,
    /// Publishing.
    Live,
    /// The connection was lost (or never made); retrying with backoff.
    Reconnecting,
    /// Finishing the publish (FCUnpublish, deleteStream).
    Stopping,
    /// Closed cleanly.
    Stopped,
    /// Given up (see `error`).
    Failed,
}

impl DestinationState {
    /// `stopped` or `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, DestinationState::Stopped | DestinationState::Failed)
    }
}

/// Settings shared by every RTMP output.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    /// Extra CA for rtmps.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for one connection attempt (TCP, TLS, RTMP up to the publish answer).
    pub connect_timeout: Duration,
    /// How long a destination keeps retrying after a failure before it gives up.
    pub failure_budget: Duration,
    /// First retry delay (doubles up to `backoff_max`).
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Time allowed for FCUnpublish/deleteStream and the final flush when stopping.
    pub finish_timeout: Duration,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            failure_budget: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(10),
            finish_timeout: Duration::from_secs(3),
        }
    }
}

/// What an output needs from its stream.
pub trait OutputContext: Send + Sync + 'static {
    /// A receiver for the stream's tags and the latest `onMetaData`, AVC and AAC sequence
    /// headers (subscribed first, so nothing falls in between).
    fn subscribe(&self) -> (broadcast::Receiver<MediaTag>, Vec<MediaTag>);
    /// Ask the publisher for a keyframe (after a (re)connect or a lag).
    fn request_keyframe(&self);
    /// A destination changed state.
    fn output_changed(&self);
}

/// Figures of one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OutputStats {
    /// Video tags sent (sequence headers included).
    pub video_frames_sent: u64,
    /// Audio tags sent.
    pub audio_frames_sent: u64,
    /// Tag bytes sent.
    pub bytes_sent: u64,
    /// Frames not sent: back-pressure, lag, or waiting for a keyframe after a (re)connect.
    pub frames_dropped: u64,
    /// Successful reconnections.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub failed_attempts: u64,
    /// Unix milliseconds of the current connection's publish acknowledgement.
    pub connected_at_ms: Option<u64>,
}

#[derive(Debug)]
struct StatusInner {
    state: DestinationState,
    error: Option<Error>,
    reconnects: u64,
    failed_attempts: u64,
    connected_at_ms: Option<u64>,
}

/// The shared, live status of one destination (written by its task, read by the API).
#[derive(Debug)]
pub struct OutputStatus {
    inner: Mutex<StatusInner>,
    video_frames: AtomicU64,
    audio_frames: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
}

impl Default for OutputStatus {
    fn default() -> Self {
        OutputStatus {
            inner: Mutex::new(StatusInner {
                state: DestinationState::Idle,
                error: None,
                reconnects: 0,
                failed_attempts: 0,
                connected_at_ms: None,
            }),
            video_frames: AtomicU64::new(0),
            audio_frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }
}

impl OutputStatus {
    fn lock(&self) -> std::sync::MutexGuard<'_, StatusInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state.
    pub fn state(&self) -> DestinationState {
        self.lock().state
    }

    /// The last error (kept while reconnecting, so the user sees why).
    pub fn error(&self) -> Option<Error> {
        self.lock().error.clone()
    }

    /// A snapshot of the figures.
    pub fn stats(&self) -> OutputStats {
        let inner = self.lock();
        OutputStats {
            video_frames_sent: self.video_frames.load(Ordering::Relaxed),
            audio_frames_sent: self.audio_frames.load(Ordering::Relaxed),
            bytes_sent: self.bytes.load(Ordering::Relaxed),
            frames_dropped: self.dropped.load(Ordering::Relaxed),
            reconnects: inner.reconnects,
            failed_attempts: inner.failed_attempts,
            connected_at_ms: inner.connected_at_ms,
        }
    }

    /// Sets the state (and error); returns whether the state changed.
    pub fn set(&self, state: DestinationState, error: Option<Error>) -> bool {
        let mut inner = self.lock();
        let changed = inner.state != state;
        inner.state = state;
        if error.is_some() || state == DestinationState::Live {
            inner.error = error;
        }
        changed
    }

    fn connected(&self, at_ms: u64, reconnect: bool) {
        let mut inner = self.lock();
        inner.connected_at_ms = Some(at_ms);
        if reconnect {
            inner.reconnects += 1;
        }
    }

    fn attempt_failed(&self) {
        self.lock().failed_attempts += 1;
    }

    fn sent(&self, video: bool, bytes: usize) {
        if video {
            self.video_frames.fetch_add(1, Ordering::Relaxed);
        } else {
            self.audio_frames.fetch_add(1, Ordering::Relaxed);
        }
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }
}

/// A destination URL for logs and the API: the stream key (and any credentials) hidden.
/// `rtmp://host/app/abcd-efgh-ijkl-mnop` becomes `rtmp://host/app/***mnop`.
pub fn mask_url(url: &str) -> String {
    match ::rtmp::RtmpUrl::parse(url) {
        Ok(u) => {
            let scheme = match u.scheme {
                ::rtmp::Scheme::Rtmp => "rtmp",
                ::rtmp::Scheme::Rtmps => "rtmps",
            };
            let host = if u.host.contains(':') {
                format!("[{}]", u.host)
            } else {
                u.host.clone()
            };
            let port = if u.port == u.scheme.default_port() {
                String::new()
            } else {
                format!(":{}", u.port)
            };
            let key = &u.stream_key;
            let key_chars = key.chars().count();
            let tail = if key_chars >= 16 {
                key.chars().skip(key_chars - 4).collect::<String>()
            } else {
                String::new()
            };
            let app = u.app.split('?').next().unwrap_or("");
            format!("{scheme}://{host}{port}/{app}/***{tail}")
        }
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// Checks a destination URL at creation: `rtmp://` or `rtmps://`, host, app and key.
pub fn validate_url(url: &str) -> Result<(), Error> {
    if url.len() > 2048 {
        return Err(Error::new(
            ErrorCode::InvalidRequest,
            "destination URL is too long (2048 bytes at most)",
        ));
    }
    ::rtmp::RtmpUrl::parse(url)
        .map(|_| ())
        .map_err(|e| Error::new(ErrorCode::InvalidRequest, format!("destination URL: {e}")))
}

pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_and_credentials() {
        assert_eq!(
            mask_url("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop"),
            "rtmp://a.rtmp.youtube.com/live2/***mnop"
        );
        assert_eq!(
            mask_url("rtmps://user:secret@example.com:4443/app/short"),
            "rtmps://example.com:4443/app/***"
        );
        assert_eq!(
            mask_url("rtmp://h/live2?backup=1/key-with-sixteen+"),
            "rtmp://h/live2/***een+"
        );
        assert!(!mask_url("rtmp://h/app/SECRETSECRETSECRET").contains("SECRETSECRET"));
        assert_eq!(mask_url("http://x/y/z"), "(invalid URL)");
        assert!(validate_url("rtmp://h/app/key").is_ok());
        assert_eq!(
            validate_url("rtmp://h/").unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }
}
