//! End to end with a str0m WebRTC client (issue 3): synthesized H.264 (keyframes only when the
//! server asks) and Opus, published over WHIP and over the WebSocket to the server in process,
//! relayed to a private nginx-rtmp; the recording must decode strictly clean, be H.264 +
//! AAC-LC 48 kHz, last as long as the media sent (within 5 %), have keyframes at most 2.5 s
//! apart, and start audio and video within 100 ms of each other.

mod support;

use std::time::{Duration, Instant};

use streamify_testsupport::ffprobe;
use support::harness::{Harness, Signaling};
use support::publisher::{PublishOptions, PublishReport, Publisher};
use support::signaling::WsSignaling;
use support::within;

/// Media time each test publishes.
const MEDIA_TIME: Duration = Duration::from_secs(12);

async fn publish_and_check(name: &str, signaling: Signaling) {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let mut harness = Harness::start(name).await;
    let stream = harness.create_stream().await;
    let options = PublishOptions {
        media_time: MEDIA_TIME,
        ..PublishOptions::default()
    };
    let publisher = Publisher::new(options);
    let offer = publisher.offer().to_string();
    let publish = |answer: String| tokio::task::spawn_blocking(move || publisher.run(&answer));
    let limit = MEDIA_TIME + Duration::from_secs(40);
    let report: PublishReport = match signaling {
        Signaling::Whip => {
            let session = harness.api.whip_offer(&stream.whip_url, &offer).await;
            let running = publish(session.answer);
            // A second publisher while the first is live is refused (409), and the first
            // goes on undisturbed (the recording checks below).
            tokio::time::sleep(Duration::from_secs(2)).await;
            let intruder = Publisher::new(PublishOptions::default());
            let (status, body) = harness
                .api
                .whip_post_raw(&stream.whip_url, intruder.offer())
                .await;
            let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            assert!(
                status == 409 && error["error"]["code"].is_string(),
                "a second WHIP publisher got {status} {body}, not 409 with an error code"
            );
            println!("{name}: second publisher refused: {status} {body}");
            let result = within(limit, "the str0m publisher", running)
                .await
                .expect("publisher thread");
            let deleted = harness.api.whip_delete(&session.location).await;
            let report = result.unwrap_or_else(|e| {
                panic!(
                    "publishing over WHIP failed: {e}\n{}",
                    harness.diagnostics("")
                )
            });
            assert!(
                matches!(deleted, 200 | 204),
                "WHIP DELETE answered {deleted}\n{}",
                harness.diagnostics("")
            );
            report
        }
        Signaling::WebSocket => {
            let url = harness.api.ws_connect_url(&stream).await;
            let mut ws = WsSignaling::connect(&url).await;
            let answer = ws.offer(&offer).await.unwrap_or_else(|e| {
                panic!("no WebSocket answer: {e}\n{}", harness.diagnostics(""))
            });
            let result = within(limit, "the str0m publisher", publish(answer))
                .await
                .expect("publisher thread");
            let messages = ws.messages();
            ws.bye().await;
            let report = result.unwrap_or_else(|e| {
                panic!(
                    "publishing over the WebSocket failed: {e}\nserver messages: {messages:?}\n{}",
                    harness.diagnostics("")
                )
            });
            assert!(
                !messages.iter().any(|m| m["type"] == "error"),
                "the server sent an error message while publishing: {messages:?}\n{}",
                harness.diagnostics("")
            );
            let summary: Vec<String> = messages
                .iter()
                .map(|m| match m["type"].as_str() {
                    Some("state") => format!("state {} ({})", m["state"], m["reason"]),
                    Some(other) => other.to_string(),
                    None => m.to_string(),
                })
                .collect();
            println!("{name}: server messages: {}", summary.join(", "));
            report
        }
    };
    println!(
        "{name}: publisher connected in {:?}, sent {} video frames ({} keyframes, {} requests \
         at {:?}), {} audio packets, {:?} of media, worst lateness {:?}",
        report.connect_time,
        report.video_frames,
        report.keyframes,
        report.keyframe_requests.len(),
        report.keyframe_requests,
        report.audio_packets,
        report.media_sent,
        report.max_lateness
    );
    // Keyframes only on request: the encoder's first frame plus at most one per request.
    assert!(
        report.keyframes <= 1 + report.keyframe_requests.len() as u64,
        "the publisher sent unrequested keyframes: {report:?}"
    );
    let (figures, _stream) = harness
        .finish_and_check(&stream.id, report.media_sent, "")
        .await;
    // Without the server's keyframe requests a 12 s recording would have one keyframe.
    assert!(
        figures.keyframes >= (MEDIA_TIME.as_secs_f64() / 2.5) as usize,
        "only {} keyframes in {:.1} s: the server does not ask for keyframes",
        figures.keyframes,
        figures.duration
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_whip_publish_records_clean_h264_aac() {
    publish_and_check("str0m-whip", Signaling::Whip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_websocket_publish_records_clean_h264_aac() {
    publish_and_check("str0m-ws", Signaling::WebSocket).await;
}

/// Publishes `options` over WHIP to a fresh stream of `harness`, ends the session with DELETE
/// and checks the recording.
async fn whip_publish_and_check(mut harness: Harness, options: PublishOptions) {
    let stream = harness.create_stream().await;
    let limit = options.media_time + Duration::from_secs(40);
    let publisher = Publisher::new(options);
    let session = harness
        .api
        .whip_offer(&stream.whip_url, publisher.offer())
        .await;
    let answer = session.answer.clone();
    let result = within(
        limit,
        "the str0m publisher",
        tokio::task::spawn_blocking(move || publisher.run(&answer)),
    )
    .await
    .expect("publisher thread");
    let report = result.unwrap_or_else(|e| {
        panic!(
            "publishing over WHIP failed: {e}\n{}",
            harness.diagnostics("")
        )
    });
    assert_eq!(harness.api.whip_delete(&session.location).await, 200);
    harness
        .finish_and_check(&stream.id, report.media_sent, "")
        .await;
}

/// The default deployment binds the WebRTC socket to 0.0.0.0 and advertises the interfaces'
/// addresses: str0m must be told the advertised address a datagram came in on, not 0.0.0.0
/// (it drops STUN for an address that is none of its candidates).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_publishes_to_a_server_bound_to_every_interface() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let harness = Harness::start_with("str0m-any", |c| {
        c.webrtc_udp = "0.0.0.0:0".parse().unwrap();
    })
    .await;
    let advertised = streamify::config::interface_ipv4_addresses();
    let Some(ip) = advertised.first().copied() else {
        panic!("this machine has no non-loopback IPv4 address to advertise: the test needs one");
    };
    whip_publish_and_check(
        harness,
        PublishOptions {
            media_time: Duration::from_secs(6),
            bind_ip: ip,
            ..PublishOptions::default()
        },
    )
    .await;
}

/// Behind a 1:1 NAT (or a relay) the advertised address (`--webrtc-public-ips`) is not the
/// bound one: the publisher reaches the server through a UDP relay listening at 127.0.0.2
/// while the server binds 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_publishes_through_a_relay_at_the_advertised_address() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let public: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let harness = Harness::start_with("str0m-relay", |c| {
        c.webrtc_public_ips = vec![public];
    })
    .await;
    let relay = support::udp_relay::UdpRelay::start(public, harness.udp_addr()).await;
    whip_publish_and_check(
        harness,
        PublishOptions {
            media_time: Duration::from_secs(6),
            ..PublishOptions::default()
        },
    )
    .await;
    assert!(
        relay.forwarded() > 100,
        "{} datagrams relayed",
        relay.forwarded()
    );
}

/// A drop shorter than the disconnect timeout is bridged by the same session: the relay drops
/// every datagram for 7 s (more than the 5 s of silence that count as disconnected); the view
/// and the events say `disconnected`, then `connected` again; the same session goes on and the
/// recording is one clean stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_network_drop_is_bridged_by_the_same_session() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let public: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let mut harness = Harness::start_with("str0m-short-drop", |c| {
        c.webrtc_public_ips = vec![public];
    })
    .await;
    let relay = support::udp_relay::UdpRelay::start(public, harness.udp_addr()).await;
    let stream = harness.create_stream().await;
    let media_time = Duration::from_secs(16);
    let publisher = Publisher::new(PublishOptions {
        media_time,
        ..PublishOptions::default()
    });
    let session = harness
        .api
        .whip_offer(&stream.whip_url, publisher.offer())
        .await;
    let answer = session.answer.clone();
    let running = tokio::task::spawn_blocking(move || publisher.run(&answer));
    let events = harness.api.follow_events(&stream.id).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = harness.api.get_stream(&stream.id).await;
    assert_eq!(before["state"], "live", "{before}");

    relay.cut();
    let cut_at = Instant::now();
    let quiet = loop {
        let s = harness.api.get_stream(&stream.id).await;
        if s["publisher"]["disconnected"] == true {
            break s;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(7),
            "the publisher never showed as disconnected: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(quiet["publisher_lost"].is_null(), "{quiet}");
    tokio::time::sleep(Duration::from_secs(7).saturating_sub(cut_at.elapsed())).await;
    relay.restore();
    let back = loop {
        let s = harness.api.get_stream(&stream.id).await;
        if s["publisher"]["disconnected"] == false {
            break s;
        }
        assert!(
            cut_at.elapsed() < Duration::from_secs(12),
            "the publisher never came back: {s}\n{}",
            harness.diagnostics("")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(back["state"], "live", "{back}");
    assert_eq!(
        back["publisher"]["session_id"], before["publisher"]["session_id"],
        "the same session: {back}"
    );
    let report = within(
        media_time + Duration::from_secs(40),
        "the publisher",
        running,
    )
    .await
    .expect("publisher thread")
    .unwrap_or_else(|e| panic!("the publisher failed: {e}\n{}", harness.diagnostics("")));
    assert_eq!(harness.api.whip_delete(&session.location).await, 200);
    let seen: Vec<String> = events
        .lock()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d.trim()).ok())
        .filter(|e| e["kind"] == "publisher")
        .map(|e| e["state"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(seen, ["disconnected", "connected"], "publisher events");
    let (recording, ended) = harness.finish(&stream.id).await;
    assert_eq!(
        ended["destinations"][0]["stats"]["reconnects"], 0,
        "{ended}"
    );
    if let Err(e) = ffprobe::strict_decode(&recording) {
        panic!(
            "the recording does not decode clean: {e}\n{}",
            harness.diagnostics("")
        );
    }
    println!(
        "short drop: {} datagrams dropped, publisher sent {:?}; events {seen:?}",
        relay.dropped(),
        report.media_sent
    );
}
