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
//!
//! Every test binary compiles the whole module but uses only part of it.
#![allow(dead_code)]

pub mod browser;
pub mod checks;
pub mod harness;
pub mod logs;
pub mod netns;
pub mod publisher;
pub mod signaling;

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
