//! End to end with headless Chromium (issue 3): the page the server serves at `/` captures the
//! fake camera and microphone and publishes over WHIP or over the WebSocket; the server relays
//! to a private nginx-rtmp and the recording must pass the same checks as the str0m tests
//! (strictly clean, H.264 + AAC-LC 48 kHz, duration within 5 % of the time sent, keyframes at
//! most 2.5 s apart, audio and video starting within 100 ms of each other).
//!
//! Chromium gathers ICE candidates on loopback only inside a network namespace that has
//! nothing else: each test re-executes itself under `unshare -n` (root) and the server, nginx
//! and Chromium all run in there. A missing chromium or unshare fails the test.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use streamify_testsupport::require_tool;
use support::browser::Chromium;
use support::harness::{Harness, Signaling};
use support::netns;

/// Wall time the browser publishes once connected.
const PUBLISH_TIME: Duration = Duration::from_secs(15);
/// The whole inner run (Chromium start, connect, publish, checks) on a busy machine.
const INNER_LIMIT: Duration = Duration::from_secs(180);

fn browser_test(name: &str, signaling: Signaling) {
    if !netns::inside(name) {
        require_tool("chromium");
        let _serial = support::ONE_AT_A_TIME.blocking_lock();
        netns::run_inside(name, INNER_LIMIT);
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(publish_from_browser(name, signaling));
}

async fn publish_from_browser(name: &str, signaling: Signaling) {
    let mut harness = Harness::start(name).await;
    let stream = harness.create_stream().await;
    let browser = Chromium::launch(&harness.dir).await;
    let page = format!("http://{}/", harness.http_addr());
    browser.navigate(&page).await;
    let has_api = browser
        .eval("typeof window.streamify === 'object'")
        .await
        .unwrap_or(Value::Bool(false));
    assert_eq!(
        has_api,
        Value::Bool(true),
        "{page} is not the Streamify page (no window.streamify)\n{}",
        harness.diagnostics(&browser.logs())
    );
    let token = serde_json::to_string(harness.api.token()).expect("token JSON");
    let publish = match signaling {
        Signaling::Whip => format!(
            "streamify.publishWhip({{whipUrl: {}, token: {token}}})",
            serde_json::to_string(&stream.whip_url).expect("url JSON")
        ),
        Signaling::WebSocket => format!(
            "streamify.publishWs({{streamId: {}, token: {token}}})",
            serde_json::to_string(&stream.id).expect("id JSON")
        ),
    };
    if let Err(e) = browser.eval(&publish).await {
        panic!(
            "the page could not publish: {e}\n{}",
            harness.diagnostics(&browser.logs())
        );
    }
    browser
        .wait_for(
            "streamify.state.phase === 'live' || streamify.state.phase === 'error'",
            Duration::from_secs(30),
            "the browser's peer connection",
        )
        .await;
    // Publish for PUBLISH_TIME, failing early if the page reports an error.
    let started = Instant::now();
    while started.elapsed() < PUBLISH_TIME {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let phase = browser
            .eval("streamify.state.phase")
            .await
            .unwrap_or_default();
        if phase != "live" {
            let state = browser.eval("streamify.state").await.unwrap_or_default();
            panic!(
                "the page left `live` after {:?}: {state}\n{}",
                started.elapsed(),
                harness.diagnostics(&browser.logs())
            );
        }
    }
    let during = browser.eval("streamify.state").await.unwrap_or_default();
    let sent = browser
        .eval("streamify.stop()")
        .await
        .unwrap_or_else(|e| panic!("stop: {e}\n{}", harness.diagnostics(&browser.logs())));
    let sent = sent
        .as_f64()
        .unwrap_or_else(|| panic!("stop() returned no sent time: {sent}"));
    println!("{name}: the page published {sent:.3} s; its state before stopping: {during}");
    let logs = browser.logs();
    drop(browser);
    harness
        .finish_and_check(&stream.id, Duration::from_secs_f64(sent), &logs)
        .await;
}

#[test]
fn browser_whip_publish_records_clean_h264_aac() {
    browser_test(
        "browser_whip_publish_records_clean_h264_aac",
        Signaling::Whip,
    );
}

#[test]
fn browser_websocket_publish_records_clean_h264_aac() {
    browser_test(
        "browser_websocket_publish_records_clean_h264_aac",
        Signaling::WebSocket,
    );
}
