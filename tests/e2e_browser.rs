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
use streamify_testsupport::{ffprobe, require_tool};
use support::browser::Chromium;
use support::checks;
use support::harness::{Harness, Signaling};
use support::netns;
use support::signaling::StreamInfo;
use support::udp_relay::UdpRelay;

/// Wall time the browser publishes once connected.
const PUBLISH_TIME: Duration = Duration::from_secs(15);
/// How long the network is cut under the live page.
const CUT_TIME: Duration = Duration::from_secs(14);
/// The whole inner run (Chromium start, connect, publish, checks) on a busy machine.
const INNER_LIMIT: Duration = Duration::from_secs(180);

/// Outside the namespace: re-runs test `name` inside one (one browser test at a time).
/// Inside: runs `test` on a runtime of its own.
fn in_netns<F: std::future::Future<Output = ()>>(name: &str, test: impl FnOnce() -> F) {
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
        .block_on(test());
}

fn browser_test(name: &str, signaling: Signaling) {
    in_netns(name, || publish_from_browser(name, signaling));
}

/// Launches Chromium on the server's page, makes it publish to `stream` and waits until the
/// page says `live` (or `error`).
async fn open_page_and_publish(
    harness: &mut Harness,
    stream: &StreamInfo,
    signaling: Signaling,
) -> Chromium {
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
    browser
}

async fn publish_from_browser(name: &str, signaling: Signaling) {
    let mut harness = Harness::start(name).await;
    let stream = harness.create_stream().await;
    let browser = open_page_and_publish(&mut harness, &stream, signaling).await;
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

/// The network drops under a live page (every datagram between Chromium and the server
/// lost for 14 s, through a UDP relay at the server's advertised address): the server marks
/// the publisher disconnected and keeps the stream, the page notices, re-publishes on the
/// same stream with the same camera, and once the network is back the stream goes on: one
/// recording, strictly clean, the pause in its timeline once, a keyframe right after it.
#[test]
fn browser_publishes_again_over_whip_after_the_network_drops() {
    network_drop_test(
        "browser_publishes_again_over_whip_after_the_network_drops",
        Signaling::Whip,
    );
}

/// The same over the WebSocket: a new ticket, a new socket and a new peer connection.
#[test]
fn browser_publishes_again_over_the_websocket_after_the_network_drops() {
    network_drop_test(
        "browser_publishes_again_over_the_websocket_after_the_network_drops",
        Signaling::WebSocket,
    );
}

fn network_drop_test(name: &str, signaling: Signaling) {
    in_netns(name, || network_drop(name, signaling));
}

async fn network_drop(name: &str, signaling: Signaling) {
    let public: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut harness = Harness::start_with(name, |c| {
        c.webrtc_public_ips = vec![public];
    })
    .await;
    let relay = UdpRelay::start(public, harness.udp_addr()).await;
    let stream = harness.create_stream().await;
    let browser = open_page_and_publish(&mut harness, &stream, signaling).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = harness.api.get_stream(&stream.id).await;
    assert_eq!(before["state"], "live", "{before}");

    let events = harness.api.follow_events(&stream.id).await;
    relay.cut();
    let cut_at = Instant::now();
    // The server sees the silence (5 s) and shows its publisher disconnected; the page notices
    // (ICE disconnected for a while) and re-publishes: its new session is signaled over HTTP,
    // but ICE cannot get through until the network is back.
    let mut server_saw = None;
    let (noticed, phase) = loop {
        let phase = browser
            .eval("streamify.state.phase")
            .await
            .unwrap_or_default();
        if phase == "reconnecting" || phase == "error" {
            break (cut_at.elapsed(), phase);
        }
        let s = harness.api.get_stream(&stream.id).await;
        if server_saw.is_none()
            && s["publisher"]["session_id"] == before["publisher"]["session_id"]
            && s["publisher"]["disconnected"] == true
        {
            server_saw = Some(cut_at.elapsed());
        }
        assert!(
            cut_at.elapsed() < CUT_TIME,
            "the page did not notice the drop within {CUT_TIME:?}\n{}",
            harness.diagnostics(&browser.logs())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        phase,
        "reconnecting",
        "the page failed instead of publishing again\n{}",
        harness.diagnostics(&browser.logs())
    );
    let Some(server_saw) = server_saw else {
        panic!(
            "the stream's view never showed its publisher disconnected before the page \
             re-published after {noticed:?}\n{}",
            harness.diagnostics(&browser.logs())
        );
    };
    tokio::time::sleep(CUT_TIME.saturating_sub(cut_at.elapsed())).await;
    let during = harness.api.get_stream(&stream.id).await;
    assert_eq!(
        during["state"], "live",
        "the stream waits for its publisher: {during}"
    );
    println!(
        "{name}: the server showed its publisher disconnected after {server_saw:?}, the page \
         noticed the drop after {noticed:?}; network restored after {:?}, {} datagrams dropped",
        cut_at.elapsed(),
        relay.dropped()
    );
    relay.restore();
    let back = browser
        .wait_for(
            "(streamify.state.phase === 'live' && streamify.state.reconnects >= 1) || streamify.state.phase === 'error'",
            Duration::from_secs(30),
            "the page publishing again",
        )
        .await;
    let page = browser.eval("streamify.state").await.unwrap_or_default();
    assert_eq!(
        page["phase"],
        "live",
        "the page did not publish again: {back} {page}\n{}",
        harness.diagnostics(&browser.logs())
    );
    // The view's publisher figures follow once a second.
    let waited = Instant::now();
    let resumed = loop {
        let s = harness.api.get_stream(&stream.id).await;
        if s["publisher"]["connected"] == true || waited.elapsed() > Duration::from_secs(5) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(resumed["state"], "live", "{resumed}");
    assert!(resumed["publisher_lost"].is_null(), "{resumed}");
    assert_ne!(
        resumed["publisher"]["session_id"], before["publisher"]["session_id"],
        "a new session took the stream over: {resumed}"
    );
    assert_eq!(resumed["publisher"]["connected"], true, "{resumed}");
    assert_eq!(resumed["publisher"]["disconnected"], false, "{resumed}");
    // A watcher of the events saw it all: disconnected, then a new publisher resuming.
    let seen: Vec<String> = events
        .lock()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|e| e["kind"] == "publisher")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        seen.first().is_some_and(|s| s == "disconnected") && seen.contains(&"resumed".into()),
        "publisher events: {seen:?}"
    );
    println!("{name}: publisher events {seen:?}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let sent = browser.eval("streamify.stop()").await.unwrap_or_default();
    let logs = browser.logs();
    drop(browser);
    println!("{name}: page state {page}, published {sent} s");

    let (recording, ended) = harness.finish(&stream.id).await;
    assert_eq!(
        ended["destinations"][0]["stats"]["reconnects"], 0,
        "the destination stayed connected through the drop: {ended}"
    );
    let recordings = harness.nginx.recordings(&harness.name);
    assert_eq!(recordings.len(), 1, "one recording: {recordings:?}");
    if let Err(e) = ffprobe::strict_decode(&recording) {
        panic!(
            "the recording does not decode clean: {e}\n{}",
            harness.diagnostics(&logs)
        );
    }
    let video = ffprobe::packets(&recording, "v");
    let audio = ffprobe::packets(&recording, "a");
    assert!(!audio.is_empty(), "no audio recorded");
    assert!(
        video.first().is_some_and(|p| p.keyframe),
        "the recording starts without a keyframe"
    );
    // Gaps between video frames: the drop once, a keyframe right after it, and keyframes at
    // most 2.5 s apart on either side of it.
    let gaps: Vec<(usize, f64)> = video
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1, w[1].pts - w[0].pts))
        .filter(|(_, gap)| *gap > 1.0)
        .collect();
    assert_eq!(gaps.len(), 1, "one pause in the timeline: {gaps:?}");
    let (after_gap, gap) = gaps[0];
    assert!(
        video[after_gap].keyframe,
        "the first frame after the pause ({gap:.2} s) is not a keyframe"
    );
    let worst_interval = |frames: &[ffprobe::Packet]| {
        let times: Vec<f64> = frames
            .iter()
            .filter(|p| p.keyframe)
            .map(|p| p.pts)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max)
    };
    let worst = worst_interval(&video[..after_gap]).max(worst_interval(&video[after_gap..]));
    assert!(
        worst <= checks::MAX_KEYFRAME_INTERVAL,
        "keyframes {worst:.2} s apart outside the pause"
    );
    println!(
        "{name}: {} video and {} audio packets, paused {gap:.2} s at {:.2} s",
        video.len(),
        audio.len(),
        video[after_gap - 1].pts
    );
}
