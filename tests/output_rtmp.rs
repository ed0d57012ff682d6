//! The RTMP output against a real nginx-rtmp: reference media (ffmpeg's libx264 + AAC-LC
//! 48 kHz, demuxed with `flv`) goes through `output::rtmp` exactly as the pipeline's tags
//! would, and the recordings are checked strictly with ffmpeg/ffprobe.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flv::TagKind;
use streamify::error::ErrorCode;
use streamify::media::MediaTag;
use streamify::output::{self, DestinationState, OutputConfig, OutputContext, OutputStatus};
use streamify_testsupport::{ffprobe, reference_flv, Nginx, NginxOptions, ReferenceMedia};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

/// Stands in for a stream: a tag feed, the latest sequence headers, counts of requests.
struct Feed {
    tx: broadcast::Sender<MediaTag>,
    headers: Mutex<Vec<MediaTag>>,
    keyframe_requests: AtomicU64,
    changes: AtomicU64,
}

impl OutputContext for Feed {
    fn subscribe(&self) -> (broadcast::Receiver<MediaTag>, Vec<MediaTag>) {
        let rx = self.tx.subscribe();
        (rx, self.headers.lock().unwrap().clone())
    }
    fn request_keyframe(&self) {
        self.keyframe_requests.fetch_add(1, Ordering::Relaxed);
    }
    fn output_changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }
}

impl Feed {
    fn new() -> Arc<Feed> {
        Arc::new(Feed {
            tx: broadcast::channel(1024).0,
            headers: Mutex::new(Vec::new()),
            keyframe_requests: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        })
    }

    fn send(&self, tag: MediaTag) {
        if tag.sequence_header {
            let mut h = self.headers.lock().unwrap();
            h.retain(|x| x.kind != tag.kind);
            h.push(tag.clone());
        }
        let _ = self.tx.send(tag);
    }
}

/// The tags of an FLV file, marked the way the pipeline marks them.
fn tags_of(path: &Path) -> Vec<MediaTag> {
    let bytes = std::fs::read(path).expect("reference media");
    let mut demuxer = flv::demux::Demuxer::new();
    demuxer.push(&bytes);
    let mut out = Vec::new();
    while let Some(tag) = demuxer.pull().expect("reference demuxes") {
        let d: &Bytes = &tag.data;
        let (keyframe, sequence_header) = match tag.kind {
            TagKind::Script => (false, true),
            TagKind::Video => (d[0] >> 4 == 1, d[0] & 0x0f == 7 && d[1] == 0),
            TagKind::Audio => (false, d[0] >> 4 == 10 && d[1] == 0),
        };
        out.push(MediaTag {
            kind: tag.kind,
            timestamp: tag.timestamp,
            data: tag.data.clone(),
            keyframe: keyframe && !sequence_header,
            sequence_header,
        });
    }
    out
}

/// Sends `tags` paced at `speed` x real time, repeating them `loops` times with the timeline
/// continuing (headers only in the first round).
async fn play(feed: Arc<Feed>, tags: Vec<MediaTag>, loops: u32, speed: f64) {
    let span = tags.iter().map(|t| t.timestamp).max().unwrap_or(0) + 33;
    let start = Instant::now();
    for round in 0..loops {
        for tag in &tags {
            if round > 0 && tag.sequence_header {
                continue;
            }
            let mut tag = tag.clone();
            tag.timestamp += round * span;
            let at = start + Duration::from_secs_f64(tag.timestamp as f64 / 1000.0 / speed);
            tokio::time::sleep_until(at).await;
            feed.send(tag);
        }
    }
}

fn config() -> OutputConfig {
    OutputConfig {
        failure_budget: Duration::from_secs(30),
        ..OutputConfig::default()
    }
}

async fn wait_for(status: &OutputStatus, want: DestinationState, within: Duration) {
    let deadline = Instant::now() + within;
    while status.state() != want {
        assert!(
            Instant::now() < deadline,
            "destination did not become {want:?} within {within:?}: {:?} {:?}",
            status.state(),
            status.error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_clean_h264_aac(path: &Path) -> ffprobe::Probe {
    ffprobe::strict_decode(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let probe = ffprobe::probe(path);
    let video = probe.video.as_ref().expect("a video stream");
    let audio = probe.audio.as_ref().expect("an audio stream");
    assert_eq!(video.codec, "h264");
    assert_eq!(
        (audio.codec.as_str(), audio.profile.as_str()),
        ("aac", "LC")
    );
    assert_eq!(audio.sample_rate, 48_000);
    probe
}

#[tokio::test]
async fn publishes_reference_media_that_decodes_clean() {
    let mut nginx = Nginx::start(NginxOptions::default());
    let tags = tags_of(&reference_flv(ReferenceMedia::default()));
    let feed = Feed::new();
    let status = Arc::new(OutputStatus::default());
    let (stop_tx, stop) = watch::channel(false);
    let url = nginx.rtmp_url("live", "clean-key-0123456789");
    let masked = output::mask_url(&url);
    assert!(!masked.contains("clean-key"));
    let task = output::rtmp::spawn(url, masked, config(), status.clone(), feed.clone(), stop);
    wait_for(&status, DestinationState::Live, Duration::from_secs(10)).await;
    assert!(
        feed.keyframe_requests.load(Ordering::Relaxed) >= 1,
        "asks for a keyframe on connect"
    );
    play(feed.clone(), tags, 1, 3.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the output stops within 5 s")
        .unwrap();
    assert_eq!(status.state(), DestinationState::Stopped);
    let stats = status.stats();
    assert!(
        stats.video_frames_sent >= 180 && stats.audio_frames_sent >= 250,
        "{stats:?}"
    );
    assert_eq!(stats.reconnects, 0);
    nginx.stop();
    let path = nginx.recording("clean-key-0123456789");
    let probe = assert_clean_h264_aac(&path);
    let video = probe.video.unwrap();
    assert_eq!((video.width, video.height), (1280, 720));
    assert!(
        (probe.duration - 6.0).abs() < 0.3,
        "duration {}",
        probe.duration
    );
    let first = &ffprobe::packets(&path, "v")[0];
    assert!(first.keyframe, "the recording starts with a keyframe");
}

#[tokio::test]
async fn refused_publish_fails_at_once_with_the_servers_reason() {
    let nginx = Nginx::start(NginxOptions::default());
    let url = nginx.rtmp_url("live", "taken");
    // Someone already publishes this key: nginx-rtmp answers NetStream.Publish.BadName.
    let mut squatter = rtmp::tokio::Publisher::connect(&url, Default::default())
        .await
        .expect("the first publisher connects");
    let keep = tokio::spawn(async move {
        let _ = squatter
            .drive_until(Instant::now() + Duration::from_secs(20))
            .await;
    });
    let feed = Feed::new();
    let status = Arc::new(OutputStatus::default());
    let (_stop_tx, stop) = watch::channel(false);
    let started = Instant::now();
    let task = output::rtmp::spawn(
        url.clone(),
        output::mask_url(&url),
        config(),
        status.clone(),
        feed,
        stop,
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("a refused destination gives up at once")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status.state(), DestinationState::Failed);
    let error = status.error().expect("an error");
    assert_eq!(error.code, ErrorCode::RtmpPublishRejected);
    assert!(
        error.message.contains("NetStream.Publish.BadName"),
        "{}",
        error.message
    );
    assert_eq!(status.stats().failed_attempts, 1, "no retry");
    keep.abort();
}

#[tokio::test]
async fn unreachable_server_fails_after_the_budget() {
    let port = streamify_testsupport::free_port();
    let url = format!("rtmp://127.0.0.1:{port}/live/nobody");
    let feed = Feed::new();
    let status = Arc::new(OutputStatus::default());
    let (_stop_tx, stop) = watch::channel(false);
    let cfg = OutputConfig {
        failure_budget: Duration::from_secs(2),
        ..OutputConfig::default()
    };
    let started = Instant::now();
    let task = output::rtmp::spawn(
        url.clone(),
        output::mask_url(&url),
        cfg,
        status.clone(),
        feed,
        stop,
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("gives up")
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );
    assert_eq!(status.state(), DestinationState::Failed);
    let error = status.error().unwrap();
    assert_eq!(error.code, ErrorCode::RtmpConnectFailed);
    // Backoff 0.5, 1, 2 s: a handful of attempts, not a busy loop.
    let attempts = status.stats().failed_attempts;
    assert!((2..=5).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn rtmps_with_an_untrusted_certificate_is_a_tls_failure() {
    let nginx = Nginx::start(NginxOptions {
        tls: true,
        ..NginxOptions::default()
    });
    let url = nginx.rtmps_url("live", "tlskey");
    let feed = Feed::new();
    let status = Arc::new(OutputStatus::default());
    let (_stop_tx, stop) = watch::channel(false);
    let task = output::rtmp::spawn(
        url.clone(),
        output::mask_url(&url),
        config(),
        status.clone(),
        feed.clone(),
        stop,
    );
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("fails at once")
        .unwrap();
    assert_eq!(status.error().unwrap().code, ErrorCode::RtmpTlsFailed);

    // With the CA trusted, the same destination publishes.
    let status = Arc::new(OutputStatus::default());
    let (stop_tx, stop) = watch::channel(false);
    let cfg = OutputConfig {
        ca_file: nginx.ca_cert.clone(),
        ..config()
    };
    let task = output::rtmp::spawn(
        url.clone(),
        output::mask_url(&url),
        cfg,
        status.clone(),
        feed,
        stop,
    );
    wait_for(&status, DestinationState::Live, Duration::from_secs(10)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.state(), DestinationState::Stopped);
}

#[tokio::test]
async fn nginx_restarted_mid_stream_reconnects_and_the_new_recording_starts_clean() {
    let mut nginx = Nginx::start(NginxOptions::default());
    let key = "restart-key";
    let tags = tags_of(&reference_flv(ReferenceMedia::default()));
    let feed = Feed::new();
    let status = Arc::new(OutputStatus::default());
    let (stop_tx, stop) = watch::channel(false);
    let url = nginx.rtmp_url("live", key);
    let task = output::rtmp::spawn(
        url.clone(),
        output::mask_url(&url),
        config(),
        status.clone(),
        feed.clone(),
        stop,
    );
    wait_for(&status, DestinationState::Live, Duration::from_secs(10)).await;
    // 3 rounds of 6 s at 2x: 9 s of wall time, 18 s of media.
    let player = tokio::spawn(play(feed.clone(), tags, 3, 2.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests_before = feed.keyframe_requests.load(Ordering::Relaxed);
    nginx.kill();
    wait_for(
        &status,
        DestinationState::Reconnecting,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status.error().unwrap().code, ErrorCode::RtmpConnectionLost);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let nginx = tokio::task::spawn_blocking(move || {
        nginx.restart();
        nginx
    })
    .await
    .unwrap();
    wait_for(&status, DestinationState::Live, Duration::from_secs(15)).await;
    assert!(status.error().is_none(), "live again clears the error");
    assert_eq!(status.stats().reconnects, 1);
    assert!(
        feed.keyframe_requests.load(Ordering::Relaxed) > requests_before,
        "a keyframe is requested on reconnect"
    );
    player.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let mut nginx = nginx;
    nginx.stop();
    // record_unique off: the file holds the recording made after the restart.
    let path = nginx.recording(key);
    assert_clean_h264_aac(&path);
    let video = ffprobe::packets(&path, "v");
    assert!(
        video[0].keyframe,
        "the new recording starts with a keyframe"
    );
    let audio = ffprobe::packets(&path, "a");
    assert!(
        audio[0].dts + 0.1 >= video[0].dts,
        "audio starts with the keyframe, not before"
    );
}
