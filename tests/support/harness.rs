//! One end-to-end run: a private nginx-rtmp, the Streamify server in process, an API client;
//! then, after the publisher is done, the recording is checked and every log printed on failure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;
use streamify::config::Config;
use streamify_testsupport::{test_dir, Nginx, NginxOptions};

use super::checks::{check_recording, Figures};
use super::signaling::{Api, StreamInfo};
use super::within;

/// How the publisher signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signaling {
    /// WHIP: HTTP POST of the offer, DELETE to end.
    Whip,
    /// The WebSocket: `offer`/`answer` messages, `bye` to end.
    WebSocket,
}

/// nginx + server + API client for one test.
pub struct Harness {
    /// The test's name (stream key and file names).
    pub name: String,
    /// Scratch directory (kept for inspection).
    pub dir: PathBuf,
    /// The RTMP ingest.
    pub nginx: Nginx,
    /// The server under test (taken at shutdown).
    server: Option<streamify::server::RunningServer>,
    /// An authorized API client.
    pub api: Api,
    /// The logs were already printed with a failure.
    reported: bool,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Starts nginx-rtmp and the server (loopback, free ports).
    pub async fn start(name: &str) -> Harness {
        Harness::start_with(name, |_| {}).await
    }

    /// Starts nginx-rtmp and the server with its configuration changed by `edit`.
    pub async fn start_with(name: &str, edit: impl FnOnce(&mut Config)) -> Harness {
        super::logs::capture();
        super::install_crypto_provider();
        let dir = test_dir(name);
        let nginx = Nginx::start(NginxOptions::default());
        let token = streamify::config::random_token();
        let mut config = Config::local(dir.join("data"), token.clone());
        edit(&mut config);
        let server = streamify::server::start(config)
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {e}"));
        let api = Api::new(&format!("http://{}", server.http_addr()), &token);
        Harness {
            name: name.to_string(),
            dir,
            nginx,
            server: Some(server),
            api,
            reported: false,
        }
    }

    /// The server's HTTP address.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("server running").http_addr()
    }

    /// The server's WebRTC UDP address.
    pub fn udp_addr(&self) -> std::net::SocketAddr {
        self.server.as_ref().expect("server running").udp_addr()
    }

    /// The RTMP URL of this test's recording.
    pub fn rtmp_url(&self) -> String {
        self.nginx.rtmp_url("live", &self.name)
    }

    /// Creates the test's stream, publishing to nginx.
    pub async fn create_stream(&self) -> StreamInfo {
        self.api.create_stream(&self.name, &self.rtmp_url()).await
    }

    /// Stops the stream, the server (destinations finish their publish) and nginx (recordings
    /// finalized); returns the stream as it was just before the stop.
    pub async fn stop_everything(&mut self, stream_id: &str) -> Value {
        let stream = self.api.get_stream(stream_id).await;
        let _ = self.api.stop_stream(stream_id).await;
        if let Some(server) = self.server.take() {
            within(
                Duration::from_secs(20),
                "server shutdown",
                server.shutdown(),
            )
            .await;
        }
        self.nginx.stop();
        stream
    }

    /// The logs a failure message should show (server, nginx), plus `extra` (browser console...).
    pub fn diagnostics(&mut self, extra: &str) -> String {
        self.reported = true;
        diagnostics(&self.nginx, &self.dir, extra)
    }

    /// After the publisher has left: waits until the recording stops growing, then stops the
    /// stream, the server and nginx (recording finalized). Returns the recording's path and
    /// the stream as it was just before the stop.
    pub async fn finish(&mut self, stream_id: &str) -> (PathBuf, Value) {
        let recording = self.nginx.recording(&self.name);
        wait_until_stable(&recording, Duration::from_secs(20)).await;
        let stream = self.stop_everything(stream_id).await;
        (recording, stream)
    }

    /// After the publisher has left: waits until the recording stops growing, reads the
    /// stream's figures from the API, stops the server and nginx (recording finalized), then
    /// checks the recording against `sent`. Panics with every log if a check fails.
    pub async fn finish_and_check(
        mut self,
        stream_id: &str,
        sent: Duration,
        extra_logs: &str,
    ) -> (Figures, Value) {
        let (recording, stream) = self.finish(stream_id).await;
        let name = self.name.clone();
        let (figures, failures) = check_recording(&recording, sent);
        let figures_text = figures
            .as_ref()
            .map_or_else(|| "no figures".to_string(), |f| f.to_string());
        println!("{name}: {figures_text}");
        println!("{name}: stream after publishing: {stream}");
        if !failures.is_empty() {
            panic!(
                "{name}: the recording {} failed {} check(s):\n  - {}\nfigures: {figures_text}\n\
                 stream: {stream}\n{}",
                recording.display(),
                failures.len(),
                failures.join("\n  - "),
                self.diagnostics(extra_logs)
            );
        }
        (figures.expect("figures when all checks pass"), stream)
    }
}

impl Drop for Harness {
    /// A test that panics before [`Harness::finish_and_check`] still shows the logs.
    fn drop(&mut self) {
        if std::thread::panicking() && !self.reported {
            eprintln!("{}", diagnostics(&self.nginx, &self.dir, ""));
        }
    }
}

fn diagnostics(nginx: &Nginx, dir: &std::path::Path, extra: &str) -> String {
    format!(
        "---- server log (last 300 lines) ----\n{}\n---- nginx error log ----\n{}\n{extra}\n\
         ---- scratch dir: {} ----",
        super::logs::server_log(300),
        nginx.log(),
        dir.display()
    )
}

/// Waits until `path` exists and its size has not changed for 1.5 s (the server has stopped
/// publishing), at most `limit`.
async fn wait_until_stable(path: &std::path::Path, limit: Duration) {
    let started = Instant::now();
    let mut last = (0u64, Instant::now());
    while started.elapsed() < limit {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size != last.0 {
            last = (size, Instant::now());
        } else if size > 0 && last.1.elapsed() >= Duration::from_millis(1500) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
