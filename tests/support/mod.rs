//! Shared helpers of the end-to-end tests (`tests/e2e_*.rs`).
//!
//! - [`publisher`]: a str0m WebRTC client that publishes synthesized H.264 (a keyframe only when
//!   the server asks with PLI/FIR) and Opus, in real time.
//! - [`signaling`]: the REST API, WHIP and the WebSocket signaling, as a client sees them.
//! - [`browser`]: headless Chromium driven over the DevTools protocol, its console captured.
//! - [`netns`]: re-runs one test inside a loopback-only network namespace.
//! - [`checks`]: the recording checks every end-to-end test makes.
//! - [`harness`]: nginx-rtmp + the server in process + an API client for one test.
//! - [`logs`]: the in-process server's log, captured for failure messages.
//! - [`udp_relay`]: a UDP relay between client and server that can cut the network.
//! - [`api`]: the in-process server with its defaults and a client, for the API tests.
//!
//! Every test binary compiles the whole module but uses only part of it.
#![allow(dead_code)]

pub mod api;
pub mod browser;
pub mod checks;
pub mod harness;
pub mod logs;
pub mod netns;
pub mod publisher;
pub mod signaling;
pub mod udp_relay;

use std::future::Future;
use std::time::Duration;

/// Awaits `fut` for at most `limit`; panics with `what` when it takes longer.
pub async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// Held by each end-to-end test of a binary for its whole run: real-time media on two busy
/// cores is measured one test at a time, not two at once.
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Installs the process-wide rustls crypto provider (the HTTP client needs one; the server may
/// have installed it already).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// No `secret` appears in plain text in any file of the database in `dir` (main file, WAL,
/// journal); at least one such file exists.
pub fn assert_no_plaintext(dir: &std::path::Path, secrets: &[String]) {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("data directory") {
        let path = entry.expect("directory entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !name.starts_with(streamify::store::DB_FILE_NAME) {
            continue;
        }
        files += 1;
        let bytes = std::fs::read(&path).expect("database file");
        for secret in secrets {
            assert!(secret.len() >= 8, "not a meaningful secret: {secret:?}");
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds a secret in plain text"
            );
        }
    }
    assert!(files >= 1, "no database file in {}", dir.display());
}
