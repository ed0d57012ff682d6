//! Streams you can trust (issue 4), with real peers: a str0m WebRTC publisher through the
//! server in process to a private nginx-rtmp.
//!
//! - two destinations where one refuses the publish: the other stays live;
//! - nginx stopped in the middle of a stream: the destination (and the stream) go
//!   `reconnecting`, nginx started again: `live`, and the new recording starts with a keyframe
//!   and decodes strictly clean;
//! - a publisher that drops and a new one within the grace period: the same stream goes on
//!   (no destination reconnect, timestamps keep going forward, one clean recording);
//! - a publisher that drops and does not come back: the stream fails `publisher_lost` after the
//!   grace period, its destination finished cleanly.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use streamify_testsupport::ffprobe;
use support::harness::Harness;
use support::publisher::{PublishOptions, PublishReport, Publisher};
use support::signaling::{Api, StreamInfo, WhipSession};
use support::within;

/// Polls `GET /api/streams/{id}` until `want` holds; panics with the last answer and `what`.
async fn wait_stream(
    harness: &mut Harness,
    id: &str,
    limit: Duration,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let stream = harness.api.get_stream(id).await;
        if want(&stream) {
            return stream;
        }
        if started.elapsed() > limit {
            panic!(
                "after {limit:?} the stream is not {what}: {stream:#}\n{}",
                harness.diagnostics("")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn destination<'a>(stream: &'a Value, id: &str) -> &'a Value {
    stream["destinations"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["id"] == id))
        .unwrap_or(&Value::Null)
}

/// Offers over WHIP and runs the publisher on its own thread (it drops without a word when its
/// media time is over: no DELETE, no DTLS close, like a browser tab that crashed).
async fn start_publisher(
    api: &Api,
    stream: &StreamInfo,
    media_time: Duration,
) -> (
    WhipSession,
    tokio::task::JoinHandle<Result<PublishReport, String>>,
) {
    let publisher = Publisher::new(PublishOptions {
        media_time,
        ..PublishOptions::default()
    });
    let offer = publisher.offer().to_string();
    let session = api.whip_offer(&stream.whip_url, &offer).await;
    let answer = session.answer.clone();
    let running = tokio::task::spawn_blocking(move || publisher.run(&answer));
    (session, running)
}

async fn report_of(
    harness: &mut Harness,
    running: tokio::task::JoinHandle<Result<PublishReport, String>>,
    limit: Duration,
) -> PublishReport {
    let result = within(limit, "the str0m publisher", running)
        .await
        .expect("publisher thread");
    result.unwrap_or_else(|e| panic!("publishing failed: {e}\n{}", harness.diagnostics("")))
}

/// Strict decode, H.264 + AAC-LC 48 kHz, the first video packet a keyframe, DTS never going
/// back per track. Returns (video packets, audio packets).
fn assert_clean_recording(
    harness: &mut Harness,
    path: &std::path::Path,
) -> (Vec<ffprobe::Packet>, Vec<ffprobe::Packet>) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "recording {} is missing or nearly empty ({size} bytes)\n{}",
        path.display(),
        harness.diagnostics("")
    );
    if let Err(e) = ffprobe::strict_decode(path) {
        panic!(
            "{} does not decode clean: {e}\n{}",
            path.display(),
            harness.diagnostics("")
        );
    }
    let probe = ffprobe::probe(path);
    assert!(
        probe.video.as_ref().is_some_and(|v| v.codec == "h264"),
        "video is not H.264: {probe:?}"
    );
    assert!(
        probe
            .audio
            .as_ref()
            .is_some_and(|a| a.codec == "aac" && a.profile == "LC" && a.sample_rate == 48_000),
        "audio is not AAC-LC 48 kHz: {probe:?}"
    );
    let video = ffprobe::packets(path, "v");
    let audio = ffprobe::packets(path, "a");
    assert!(
        video.first().is_some_and(|p| p.keyframe),
        "the recording does not start with a keyframe"
    );
    for (name, packets) in [("video", &video), ("audio", &audio)] {
        for w in packets.windows(2) {
            assert!(
                w[1].dts >= w[0].dts,
                "{name} DTS goes back: {} after {}",
                w[1].dts,
                w[0].dts
            );
        }
    }
    (video, audio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_destination_never_stops_the_other() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let mut harness = Harness::start("two-destinations").await;
    // Someone already publishes this key: nginx-rtmp refuses a second publisher with
    // NetStream.Publish.BadName (its `deny publish` only closes the connection, after
    // acknowledging the publish, which is a lost connection rather than a refusal).
    let refused = harness.nginx.rtmp_url("live", "two-destinations-taken");
    let mut squatter = rtmp::tokio::Publisher::connect(&refused, Default::default())
        .await
        .expect("the squatter connects");
    let squat = tokio::spawn(async move {
        let _ = squatter
            .drive_until(tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
    });
    let stream = harness
        .api
        .create_stream_from(json!({
            "title": "two destinations",
            "destinations": [
                {"type": "rtmp", "url": harness.rtmp_url()},
                {"type": "rtmp", "url": refused},
            ],
        }))
        .await;
    let media = Duration::from_secs(8);
    let (session, running) = start_publisher(&harness.api, &stream, media).await;
    let live = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(20),
        "live on d1 with d2 failed",
        |s| {
            s["state"] == "live"
                && destination(s, "d1")["state"] == "live"
                && destination(s, "d2")["state"] == "failed"
        },
    )
    .await;
    assert_eq!(
        destination(&live, "d2")["error"]["code"],
        "rtmp_publish_rejected",
        "{live:#}"
    );
    assert!(
        destination(&live, "d2")["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("NetStream.Publish.BadName"),
        "the refusal carries the server's reason: {live:#}"
    );
    assert_eq!(
        destination(&live, "d2")["stats"]["failed_attempts"],
        1,
        "a refusal is not retried: {live:#}"
    );
    assert!(destination(&live, "d1")["error"].is_null(), "{live:#}");
    let report = report_of(&mut harness, running, media + Duration::from_secs(30)).await;
    // Still live on d1 to the end, with media counted.
    let end = harness.api.get_stream(&stream.id).await;
    assert_eq!(end["state"], "live", "{end:#}");
    assert!(
        destination(&end, "d1")["stats"]["video_frames_sent"]
            .as_u64()
            .unwrap_or(0)
            > report.video_frames / 2,
        "{end:#}"
    );
    assert_eq!(harness.api.whip_delete(&session.location).await, 200);
    squat.abort();
    let (figures, _) = harness
        .finish_and_check(&stream.id, report.media_sent, "")
        .await;
    println!("two destinations, d2 refused: d1 recorded {figures}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_stopped_mid_stream_reconnects_and_the_new_recording_is_clean() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let mut harness = Harness::start("nginx-restart").await;
    let stream = harness.create_stream().await;
    let media = Duration::from_secs(14);
    let (session, running) = start_publisher(&harness.api, &stream, media).await;
    wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(20),
        "live",
        |s| s["state"] == "live",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    harness.nginx.kill();
    let lost = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(10),
        "reconnecting",
        |s| s["state"] == "reconnecting" && destination(s, "d1")["state"] == "reconnecting",
    )
    .await;
    assert_eq!(
        destination(&lost, "d1")["error"]["code"],
        "rtmp_connection_lost",
        "{lost:#}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    harness.nginx.restart();
    let back = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(15),
        "live again",
        |s| s["state"] == "live" && destination(s, "d1")["state"] == "live",
    )
    .await;
    let d1 = destination(&back, "d1");
    assert_eq!(d1["stats"]["reconnects"], 1, "{back:#}");
    assert!(
        d1["error"].is_null(),
        "live again clears the error: {back:#}"
    );
    let back_at = Instant::now();
    let report = report_of(&mut harness, running, media + Duration::from_secs(30)).await;
    let after_restart = back_at.elapsed();
    assert_eq!(harness.api.whip_delete(&session.location).await, 200);
    harness.stop_everything(&stream.id).await;
    // record_unique off: the file holds what was sent after the restart.
    let recording = harness.nginx.recording(&harness.name);
    let (video, _) = assert_clean_recording(&mut harness, &recording);
    let recorded = video.last().map_or(0.0, |p| p.pts) - video[0].pts;
    println!(
        "nginx restart: {} video packets, {recorded:.2} s recorded after the restart \
         ({after_restart:?} of publishing then), sent {:?} in all",
        video.len(),
        report.media_sent
    );
    assert!(
        recorded > after_restart.as_secs_f64() * 0.8 - 1.0,
        "only {recorded:.2} s recorded after the restart, {after_restart:?} were sent"
    );
}

/// A server that gives a dropped publisher up quickly (1 s of silence, 1 s disconnected) and
/// waits `grace` for a new one; a stream to nginx, live from a publisher that sends `media`
/// and then drops without a word. Returns once it dropped.
async fn live_then_dropped(
    name: &str,
    grace: Duration,
    media: Duration,
) -> (Harness, StreamInfo, WhipSession, PublishReport) {
    let mut harness = Harness::start_with(name, |c| {
        c.limits.publisher_silence_timeout = Duration::from_secs(1);
        c.limits.ice_disconnect_timeout = Duration::from_secs(1);
        c.limits.publisher_grace = grace;
    })
    .await;
    let stream = harness.create_stream().await;
    let (session, running) = start_publisher(&harness.api, &stream, media).await;
    wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(20),
        "live",
        |s| s["state"] == "live",
    )
    .await;
    let report = report_of(&mut harness, running, media + Duration::from_secs(30)).await;
    (harness, stream, session, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_comes_back_within_the_grace_period_continues_the_stream() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let first_media = Duration::from_secs(6);
    let (mut harness, stream, first, first_report) =
        live_then_dropped("publisher-returns", Duration::from_secs(20), first_media).await;
    // The publisher dropped without a word: the stream waits for it, destinations connected.
    let lost = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(10),
        "waiting for its lost publisher",
        |s| s["publisher_lost"].is_object(),
    )
    .await;
    assert_eq!(lost["state"], "live", "{lost:#}");
    assert_eq!(
        lost["publisher_lost"]["error"]["code"], "ice_failed",
        "{lost:#}"
    );
    assert_eq!(destination(&lost, "d1")["state"], "live", "{lost:#}");
    // Its WHIP session is over; a new publisher takes the stream over.
    let second_media = Duration::from_secs(6);
    let (second, running) = start_publisher(&harness.api, &stream, second_media).await;
    let resumed = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(15),
        "resumed by the second publisher",
        |s| {
            s["publisher_lost"].is_null()
                && s["publisher"]["session_id"].as_str() == second.location.rsplit('/').next()
        },
    )
    .await;
    assert_eq!(resumed["state"], "live", "{resumed:#}");
    let second_report = report_of(
        &mut harness,
        running,
        second_media + Duration::from_secs(30),
    )
    .await;
    assert_eq!(harness.api.whip_delete(&second.location).await, 200);
    let ended = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(10),
        "ended by the second publisher's DELETE",
        |s| s["state"] == "ended",
    )
    .await;
    assert_eq!(ended["reason"], "publisher_left", "{ended:#}");
    let d1 = destination(&ended, "d1");
    assert_eq!(
        d1["stats"]["reconnects"], 0,
        "the destination stayed connected: {ended:#}"
    );
    // The first publisher's session is gone for good.
    assert_eq!(harness.api.whip_delete(&first.location).await, 404);
    harness.stop_everything(&stream.id).await;
    let recording = harness.nginx.recording(&harness.name);
    let recordings = harness.nginx.recordings(&harness.name);
    assert_eq!(recordings.len(), 1, "one recording: {recordings:?}");
    let (video, audio) = assert_clean_recording(&mut harness, &recording);
    // Both publishers' frames are in the one recording, the second after the first.
    let sent = first_report.video_frames + second_report.video_frames;
    assert!(
        video.len() as u64 >= sent * 9 / 10,
        "{} video packets recorded of {sent} sent",
        video.len()
    );
    let (gap_at, gap) = video
        .windows(2)
        .map(|w| (w[0].pts, w[1].pts - w[0].pts))
        .fold((0.0, 0.0), |best, g| if g.1 > best.1 { g } else { best });
    println!(
        "publisher returned: {} video and {} audio packets, the stream paused {gap:.2} s at \
         {gap_at:.2} s; sent {:?} + {:?}",
        video.len(),
        audio.len(),
        first_report.media_sent,
        second_report.media_sent
    );
    assert!(
        gap > 1.0 && gap_at > first_media.as_secs_f64() * 0.8,
        "the pause between the publishers should be in the timeline once: {gap:.2} s at {gap_at:.2} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_that_does_not_come_back_fails_the_stream_publisher_lost() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let (mut harness, stream, _session, report) = live_then_dropped(
        "publisher-lost",
        Duration::from_secs(3),
        Duration::from_secs(4),
    )
    .await;
    let dropped = Instant::now();
    let lost = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(10),
        "waiting for its lost publisher",
        |s| s["publisher_lost"].is_object(),
    )
    .await;
    let until = lost["publisher_lost"]["until_ms"].as_u64().unwrap();
    let since = lost["publisher_lost"]["since_ms"].as_u64().unwrap();
    assert_eq!(until - since, 3_000, "{lost:#}");
    let failed = wait_stream(
        &mut harness,
        &stream.id,
        Duration::from_secs(15),
        "failed",
        |s| s["state"] == "failed",
    )
    .await;
    let waited = dropped.elapsed();
    assert_eq!(failed["reason"], "publisher_lost", "{failed:#}");
    assert_eq!(failed["error"]["code"], "publisher_lost", "{failed:#}");
    assert_eq!(destination(&failed, "d1")["state"], "stopped", "{failed:#}");
    assert!(
        waited >= Duration::from_secs(3),
        "failed after {waited:?}, before the 3 s grace period was over"
    );
    println!("publisher lost: failed {waited:?} after the publisher dropped");
    harness.stop_everything(&stream.id).await;
    let recording = harness.nginx.recording(&harness.name);
    let (video, _) = assert_clean_recording(&mut harness, &recording);
    assert!(video.len() as u64 >= report.video_frames * 9 / 10);
}

/// The server binary as a child process; killed if the test ends early.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn_server(dir: &std::path::Path, port: u16, token: &str, log: &str) -> Server {
    let log = std::fs::File::create(dir.join(log)).expect("server log file");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_streamify"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--api-token", token, "--webrtc-udp", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(log)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the streamify binary starts");
    let server = Server(child);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let up = http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if up {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_live_finishes_every_destination_and_exits_within_5_s() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    support::install_crypto_provider();
    let mut nginx = streamify_testsupport::Nginx::start(Default::default());
    let dir = streamify_testsupport::test_dir("sigterm-live");
    let port = streamify_testsupport::free_port();
    let token = streamify::config::random_token();
    let server = spawn_server(&dir, port, &token, "server-1.log").await;
    let api = Api::new(&format!("http://127.0.0.1:{port}"), &token);
    let name = "sigterm-live";
    let stream = api.create_stream(name, &nginx.rtmp_url("live", name)).await;
    let (_session, running) = start_publisher(&api, &stream, Duration::from_secs(30)).await;
    let server_log = || std::fs::read_to_string(dir.join("server-1.log")).unwrap_or_default();
    let started = Instant::now();
    loop {
        if api.get_stream(&stream.id).await["state"] == "live" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not live\n{}\n{}",
            server_log(),
            nginx.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut server = server;
    let term = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            term.elapsed() < Duration::from_secs(5),
            "SIGTERM took more than 5 s\n{}",
            server_log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = term.elapsed();
    assert!(exit.success(), "{exit:?}\n{}", server_log());
    // The publisher notices the server is gone; its result does not matter here.
    let _ = tokio::time::timeout(Duration::from_secs(40), running).await;
    let log = server_log();
    assert!(
        log.contains("publisher session ended"),
        "the peer connection was not closed: {log}"
    );
    nginx.stop();
    // The destination finished its publish: nginx closed a recording that decodes clean.
    let recording = nginx.recording(name);
    let size = std::fs::metadata(&recording).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "recording missing ({size} bytes)\n{log}");
    ffprobe::strict_decode(&recording).unwrap_or_else(|e| panic!("{e}\n{log}"));
    let video = ffprobe::packets(&recording, "v");
    assert!(video.first().is_some_and(|p| p.keyframe));
    println!(
        "SIGTERM while live: exited 0 in {took:?}, {} video packets recorded",
        video.len()
    );
    // What the next start shows: stopped, not interrupted.
    let _again = spawn_server(&dir, port, &token, "server-2.log").await;
    let after = api.get_stream(&stream.id).await;
    assert_eq!(after["state"], "ended", "{after:#}");
    assert_eq!(after["reason"], "server_shutdown", "{after:#}");
}
