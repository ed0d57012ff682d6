//! YouTube destinations through the whole server (issue 5): Google sign-in through a fake of
//! Google (tests/support/fake_google.rs), a stream created with the session cookie, a real
//! WebRTC client (str0m, synthesized H.264 + Opus) publishing over WHIP, and a real nginx-rtmp
//! behind TLS as YouTube's ingestion, whose `on_publish` callbacks make the fake's stream
//! active. Also: each YouTube failure as the API shows it, stream ownership between two
//! signed-in accounts and the API token, and no secret in the database file.
//!
//! Run: `cargo test --test youtube_e2e` (needs nginx with the RTMP and stream modules, ffmpeg
//! and openssl: `scripts/install-deps.sh test`).

mod support;

#[path = "support/fake_google.rs"]
mod fake_google;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fake_google::FakeGoogle;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{json, Value};
use streamify::config::Config;
use streamify::server::RunningServer;
use streamify::youtube::live::DriverTiming;
use streamify::youtube::routes::{SESSION_COOKIE, SIGN_IN_COOKIE};
use streamify::youtube::YouTubeConfig;
use streamify_testsupport::{ffprobe, free_port, test_dir, Nginx, NginxOptions};
use support::publisher::{PublishOptions, PublishReport, Publisher};
use support::within;

/// How a request identifies itself.
#[derive(Debug, Clone)]
enum Who {
    /// The server's API token.
    Token,
    /// A browser signed in with Google (the session cookie's value).
    Browser(String),
    /// Nobody.
    Anonymous,
}

/// The fake of Google, nginx-rtmp as its ingestion (RTMPS with a test CA), and the server in
/// process configured with that CA and the fake's endpoints.
struct Env {
    fake: FakeGoogle,
    nginx: Nginx,
    server: Option<RunningServer>,
    base: String,
    token: String,
    data_dir: PathBuf,
    http: reqwest::Client,
}

fn timing() -> DriverTiming {
    DriverTiming {
        active_poll_interval: Duration::from_millis(200),
        active_timeout: Duration::from_secs(10),
        transition_poll_interval: Duration::from_millis(100),
        transition_timeout: Duration::from_secs(10),
        health_interval: Duration::from_secs(1),
        ..DriverTiming::default()
    }
}

impl Env {
    async fn start(name: &str, adjust: impl FnOnce(&mut YouTubeConfig)) -> Env {
        support::logs::capture();
        support::install_crypto_provider();
        let dir = test_dir(name);
        // The redirect URI registered at Google must name the server's address up front.
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let fake = FakeGoogle::start(&format!("{base}/auth/google/callback")).await;
        let nginx = fake.start_ingestion();
        let mut youtube = fake.youtube_config(&base);
        youtube.timing = timing();
        adjust(&mut youtube);
        let token = streamify::config::random_token();
        let data_dir = dir.join("data");
        let mut config = Config::local(&data_dir, token.clone());
        config.listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.rtmp_ca_file = nginx.ca_cert.clone();
        config.rtmp_failure_budget = Duration::from_secs(10);
        let server = streamify::server::start_with_youtube(config, youtube)
            .await
            .unwrap_or_else(|e| panic!("the server did not start: {e}"));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap();
        Env {
            fake,
            nginx,
            server: Some(server),
            base,
            token,
            data_dir,
            http,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str, who: &Who) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let r = self.http.request(method, url);
        match who {
            Who::Token => r.bearer_auth(&self.token),
            Who::Browser(session) => r.header(COOKIE, format!("{SESSION_COOKIE}={session}")),
            Who::Anonymous => r,
        }
    }

    /// Sends a request; `(status, JSON body or Null)`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        who: &Who,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut r = self.request(method, path, who);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let resp = r.send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, who: &Who) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, who, None).await
    }

    async fn post(&self, path: &str, who: &Who, body: Option<Value>) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, who, body).await
    }

    /// The whole Google sign-in as a browser does it; the session cookie's value.
    async fn sign_in(&self) -> String {
        let r = self
            .http
            .get(format!("{}/auth/google/start", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "sign-in start must redirect to Google");
        let google = header(&r, LOCATION.as_str());
        let binding = cookie(&r, SIGN_IN_COOKIE).expect("the sign-in cookie");
        let r = self.http.get(google).send().await.unwrap();
        assert_eq!(r.status(), 302, "the fake approves and redirects back");
        let back = header(&r, LOCATION.as_str());
        let r = self
            .http
            .get(back)
            .header(COOKIE, format!("{SIGN_IN_COOKIE}={binding}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "sign-in failed: {:?}", r.text().await);
        cookie(&r, SESSION_COOKIE).expect("the session cookie")
    }

    /// The account id of a signed-in browser.
    async fn account_id(&self, who: &Who) -> String {
        let (status, body) = self.get("/api/youtube/account", who).await;
        assert_eq!(status, 200, "{body}");
        body["account"]["id"].as_str().unwrap().to_string()
    }

    /// `POST /api/streams` with one YouTube destination; asserts 201.
    async fn create_youtube_stream(&self, who: &Who, title: &str, destination: Value) -> Value {
        let (status, body) = self
            .post(
                "/api/streams",
                who,
                Some(json!({"title": title, "destinations": [destination]})),
            )
            .await;
        assert_eq!(status, 201, "create: {body}");
        body
    }

    /// WHIP offer as `who`: the SDP answer.
    async fn whip(&self, stream: &Value, who: &Who, offer: &str) -> String {
        let resp = self
            .request(
                reqwest::Method::POST,
                stream["whip_url"].as_str().unwrap(),
                who,
            )
            .header("Content-Type", "application/sdp")
            .body(offer.to_string())
            .send()
            .await
            .expect("WHIP POST");
        let status = resp.status().as_u16();
        let answer = resp.text().await.unwrap_or_default();
        assert_eq!(status, 201, "WHIP answered {status}: {answer}");
        answer
    }

    /// Publishes `media_time` of synthesized media to `stream` over WHIP, in the background.
    async fn publish(
        &self,
        stream: &Value,
        who: &Who,
        media_time: Duration,
    ) -> tokio::task::JoinHandle<Result<PublishReport, String>> {
        let publisher = Publisher::new(PublishOptions {
            media_time,
            ..PublishOptions::default()
        });
        let answer = self.whip(stream, who, publisher.offer()).await;
        tokio::task::spawn_blocking(move || publisher.run(&answer))
    }

    /// Polls the stream (as `who`) until `done` holds; panics with the last view after `limit`.
    async fn wait_for(
        &self,
        id: &str,
        who: &Who,
        limit: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = Instant::now();
        loop {
            let (status, view) = self.get(&format!("/api/streams/{id}"), who).await;
            assert_eq!(status, 200, "{view}");
            if done(&view) {
                return view;
            }
            if started.elapsed() > limit {
                panic!(
                    "{what}: not within {limit:?}; stream: {view}\nGoogle calls: {:?}\n\
                     ---- server log ----\n{}\n---- nginx ----\n{}",
                    self.fake.calls(),
                    support::logs::server_log(200),
                    self.nginx.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /api/streams/{id}/stop` (200), then the stream as it is once over (`ended` or
    /// `failed`, within 15 s).
    async fn stop(&self, id: &str, who: &Who) -> Value {
        let (status, body) = self
            .post(&format!("/api/streams/{id}/stop"), who, None)
            .await;
        assert_eq!(status, 200, "{body}");
        self.wait_for(id, who, Duration::from_secs(15), "stream over", |v| {
            matches!(v["state"].as_str(), Some("ended" | "failed"))
        })
        .await
    }

    async fn shutdown(&mut self) {
        if let Some(server) = self.server.take() {
            within(
                Duration::from_secs(20),
                "server shutdown",
                server.shutdown(),
            )
            .await;
        }
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_string()
}

/// The value of cookie `name` set by the response.
fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|line| line.split(';').next()?.split_once('='))
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| v.to_string())
}

fn destination(view: &Value) -> &Value {
    &view["destinations"][0]
}

fn state_of(view: &Value) -> (&str, &str) {
    (
        view["state"].as_str().unwrap_or(""),
        destination(view)["state"].as_str().unwrap_or(""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_in_user_streams_from_webrtc_to_youtube_live_and_back() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    // The clean-up of left broadcasts runs every 200 ms here: it must not touch the broadcast
    // of a running stream.
    let mut env = Env::start("yt-e2e", sweep_often).await;
    let session = env.sign_in().await;
    let me = Who::Browser(session.clone());
    let account = env.account_id(&me).await;
    let created = env
        .create_youtube_stream(
            &me,
            "Streamify end to end",
            json!({"type": "youtube", "privacy": "unlisted", "description": "issue 5"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let d = destination(&created);
    assert_eq!(d["type"], "youtube", "{created}");
    assert_eq!(d["state"], "idle");
    assert_eq!(d["youtube"]["privacy"], "unlisted");
    assert_eq!(d["youtube"]["account_id"], account.as_str());
    assert!(
        d["youtube"]["broadcast_id"].is_null(),
        "nothing created yet"
    );
    assert!(env.fake.broadcast_ids().is_empty());

    // Events as a watcher sees them (the `destination` events carry the `youtube` object).
    let mut events = env
        .request(
            reqwest::Method::GET,
            &format!("/api/streams/{id}/events"),
            &me,
        )
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);

    const MEDIA_TIME: Duration = Duration::from_secs(14);
    let publishing = env.publish(&created, &me, MEDIA_TIME).await;

    // The destination is live only once the broadcast is live on YouTube.
    let live = env
        .wait_for(&id, &me, Duration::from_secs(40), "destination live", |v| {
            state_of(v).1 == "live"
        })
        .await;
    let broadcast_id = env
        .fake
        .broadcast_ids()
        .first()
        .cloned()
        .expect("a broadcast");
    let broadcast = env.fake.broadcast(&broadcast_id).unwrap();
    assert_eq!(broadcast["status"]["lifeCycleStatus"], "live");
    assert_eq!(broadcast["status"]["privacyStatus"], "unlisted");
    assert_eq!(broadcast["snippet"]["title"], "Streamify end to end");
    assert_eq!(live["state"], "live", "{live}");
    let y = &destination(&live)["youtube"];
    assert_eq!(y["broadcast_id"], broadcast_id.as_str(), "{live}");
    assert_eq!(
        y["watch_url"],
        format!("https://www.youtube.com/watch?v={broadcast_id}")
    );
    let key = env
        .fake
        .stream_keys()
        .first()
        .cloned()
        .expect("a stream key");
    let text = live.to_string();
    assert!(!text.contains(&key), "the stream key is shown: {text}");
    let url = destination(&live)["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "rtmps://127.0.0.1:{}/live2/***",
            env.nginx.rtmps_port.unwrap()
        )),
        "the masked ingestion URL (RTMPS through the test CA): {url}"
    );
    let calls = env.fake.calls();
    let first = |name: &str| calls.iter().position(|c| c == name);
    let order = [
        "liveBroadcasts.insert",
        "liveStreams.insert",
        "liveBroadcasts.bind",
        "liveStreams.list",
        "liveBroadcasts.transition(live)",
    ]
    .map(|c| first(c).unwrap_or_else(|| panic!("no {c} in {calls:?}")));
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{calls:?}");
    assert!(
        env.fake.publish_log().contains(&format!("publish {key}")),
        "nginx's on_publish reached the fake: {:?}",
        env.fake.publish_log()
    );

    // Health is read while live; issues appear in the destination and as events.
    env.wait_for(&id, &me, Duration::from_secs(10), "health good", |v| {
        destination(v)["youtube"]["health"] == "good"
    })
    .await;
    env.fake.set_health_issues(vec![json!({"type": "bitrateLow", "severity": "warning",
        "reason": "Video bitrate low", "description": "The stream's bitrate is lower than recommended."})]);
    let bad = env
        .wait_for(&id, &me, Duration::from_secs(10), "health issue", |v| {
            destination(v)["youtube"]["issues"][0]["type"] == "bitrateLow"
        })
        .await;
    assert_eq!(destination(&bad)["youtube"]["health"], "bad");
    assert_eq!(
        destination(&bad)["state"],
        "live",
        "issues alone do not fail it"
    );
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("bitrateLow") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(2), events.chunk()).await {
            Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(_) => break,
            Err(_) => {}
        }
    }
    assert!(
        seen.contains("event: destination") && seen.contains("bitrateLow"),
        "no destination event with the health issue: {seen}"
    );
    assert!(!seen.contains(&key), "an event shows the stream key");
    drop(events);
    env.fake.set_health_issues(Vec::new());

    let report = within(
        MEDIA_TIME + Duration::from_secs(30),
        "the str0m publisher",
        publishing,
    )
    .await
    .unwrap()
    .expect("publishing over WHIP");
    println!(
        "sent {:?} of media ({} video frames, {} keyframes)",
        report.media_sent, report.video_frames, report.keyframes
    );

    // Stop: the broadcast is completed, then the RTMP publish closes.
    let ended = env.stop(&id, &me).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(destination(&ended)["state"], "stopped", "{ended}");
    assert!(destination(&ended)["error"].is_null(), "{ended}");
    let stats = &destination(&ended)["stats"];
    assert!(
        stats["video_frames_sent"].as_u64().unwrap() > 100,
        "{ended}"
    );
    assert!(
        stats["audio_frames_sent"].as_u64().unwrap() > 100,
        "{ended}"
    );
    let broadcast = env.fake.broadcast(&broadcast_id).unwrap();
    assert_eq!(broadcast["status"]["lifeCycleStatus"], "complete");
    let calls = env.fake.calls();
    assert!(
        calls.contains(&"liveBroadcasts.transition(complete)".to_string()),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.ends_with(".delete")),
        "a broadcast that went live is kept: {calls:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !env
        .fake
        .publish_log()
        .contains(&format!("publish_done {key}"))
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        env.fake
            .publish_log()
            .contains(&format!("publish_done {key}")),
        "the RTMP publish was closed: {:?}",
        env.fake.publish_log()
    );

    // What "YouTube" received decodes strictly clean: H.264 + AAC-LC 48 kHz.
    let recording = env.nginx.recording(&key);
    tokio::task::block_in_place(|| ffprobe::strict_decode(&recording))
        .unwrap_or_else(|e| panic!("{} does not decode cleanly: {e}", recording.display()));
    let probe = tokio::task::block_in_place(|| ffprobe::probe(&recording));
    let video = probe.video.as_ref().expect("video in the recording");
    let audio = probe.audio.as_ref().expect("audio in the recording");
    assert_eq!(video.codec, "h264", "{probe:?}");
    assert_eq!((video.width, video.height), (640, 360), "{probe:?}");
    assert_eq!(audio.codec, "aac", "{probe:?}");
    assert_eq!(audio.profile, "LC", "{probe:?}");
    assert_eq!(audio.sample_rate, 48_000, "{probe:?}");
    assert!(probe.duration > 5.0, "{probe:?}");

    // The stored stream keeps the broadcast; neither the log nor the database holds a secret
    // in plain text.
    env.shutdown().await;
    let log = support::logs::server_log(100_000);
    assert!(!log.contains(&key), "the server log shows the stream key");
    assert!(
        !log.contains(&env.fake.client_secret()),
        "the server log shows the client secret"
    );
    let mut secrets = env.fake.issued_tokens();
    secrets.push(env.fake.client_secret());
    secrets.extend(env.fake.stream_keys());
    secrets.push(session);
    support::assert_no_plaintext(&env.data_dir, &secrets);
    let store = streamify::store::Store::open_from_env(&env.data_dir).unwrap();
    let rows = store.destinations(&id).unwrap();
    assert_eq!(rows[0].kind, "youtube");
    assert!(rows[0].public.contains(&broadcast_id), "{}", rows[0].public);
    assert!(rows[0].public.contains("unlisted"), "{}", rows[0].public);
    assert_eq!(
        store.stream(&id).unwrap().unwrap().owner.as_deref(),
        Some(account.as_str())
    );
}

/// Publishes to a new stream with one YouTube destination until the stream fails; returns
/// the failed view.
async fn failing_stream(env: &Env, who: &Who, title: &str) -> Value {
    let created = env
        .create_youtube_stream(who, title, json!({"type": "youtube"}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let publishing = env.publish(&created, who, Duration::from_secs(4)).await;
    let failed = env
        .wait_for(&id, who, Duration::from_secs(30), title, |v| {
            v["state"] == "failed"
        })
        .await;
    let _ = within(Duration::from_secs(30), "the publisher", publishing).await;
    assert_eq!(destination(&failed)["state"], "failed", "{failed}");
    // The stream's own error is the destination's (its only one), not a generic code.
    assert_eq!(
        failed["error"]["code"],
        destination(&failed)["error"]["code"],
        "{failed}"
    );
    failed
}

/// The server's clean-up of broadcasts no running stream uses, every 200 ms without an age
/// limit (10 minutes and 1 minute by default).
fn sweep_often(c: &mut YouTubeConfig) {
    c.timing.cleanup_interval = Duration::from_millis(200);
    c.timing.cleanup_min_age = Duration::ZERO;
}

fn error_code(view: &Value) -> &str {
    destination(view)["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youtube_failures_fail_the_destination_with_their_codes() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let env = Env::start("yt-failures", |c| {
        c.timing.active_timeout = Duration::from_secs(2);
        sweep_often(c);
    })
    .await;
    let me = Who::Browser(env.sign_in().await);

    env.fake.set_live_enabled(false);
    let failed = failing_stream(&env, &me, "not enabled").await;
    assert_eq!(
        error_code(&failed),
        "youtube_live_streaming_not_enabled",
        "{failed}"
    );
    assert!(env.fake.broadcast_ids().is_empty());
    env.fake.set_live_enabled(true);

    env.fake.set_quota_limit(env.fake.quota_used() + 60);
    let failed = failing_stream(&env, &me, "quota").await;
    assert_eq!(error_code(&failed), "youtube_quota_exceeded", "{failed}");
    // The broadcast insert fit in the quota; its deletion did not (as on YouTube), and the
    // periodic clean-up cannot do it either while the quota lasts out.
    assert!(env.fake.stream_ids().is_empty(), "{:?}", env.fake.calls());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.fake.broadcast_ids().len(), 1, "{:?}", env.fake.calls());
    // Quota again (a new day): the clean-up deletes the broadcast nobody uses.
    env.fake.set_quota_limit(1_000_000);
    within(
        Duration::from_secs(10),
        "the left broadcast deleted",
        async {
            while !env.fake.broadcast_ids().is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        },
    )
    .await;

    env.fake.set_active_delay(Duration::from_secs(3600));
    let left_before = env.fake.broadcast_ids();
    let failed = failing_stream(&env, &me, "never active").await;
    assert_eq!(error_code(&failed), "youtube_stream_inactive", "{failed}");
    assert!(
        destination(&failed)["youtube"]["broadcast_id"].is_string(),
        "{failed}"
    );
    assert_eq!(env.fake.broadcast_ids(), left_before, "cleaned up");
    assert!(env.fake.stream_ids().is_empty(), "cleaned up");
    env.fake.set_active_delay(Duration::from_millis(300));

    env.fake.revoke_all();
    let failed = failing_stream(&env, &me, "revoked").await;
    assert_eq!(error_code(&failed), "youtube_reauth_required", "{failed}");
    // Now the account must reconnect before a new YouTube destination is accepted.
    let (status, body) = env
        .post(
            "/api/streams",
            &me,
            Some(json!({"destinations": [{"type": "youtube"}]})),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "youtube_reauth_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youtube_destination_refusals_at_creation() {
    // No Google credentials on the server.
    let port = free_port();
    let data = test_dir("yt-unconfigured").join("data");
    let mut config = Config::local(&data, "unconfigured-token");
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    let server = streamify::server::start_with_youtube(
        config,
        YouTubeConfig::new(&format!("http://127.0.0.1:{port}")),
    )
    .await
    .unwrap();
    let r = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/streams"))
        .bearer_auth("unconfigured-token")
        .json(&json!({"destinations": [{"type": "youtube"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "youtube_not_configured", "{body}");
    server.shutdown().await;

    // Configured, but no account connected yet.
    let env = Env::start("yt-refusals", |_| {}).await;
    let create = |destination: Value| {
        env.post(
            "/api/streams",
            &Who::Token,
            Some(json!({"destinations": [destination]})),
        )
    };
    let (status, body) = create(json!({"type": "youtube"})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "youtube_not_connected");
    let (status, body) = create(json!({"type": "youtube", "privacy": "secret"})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    let (status, body) = create(json!({"type": "youtube", "stream_key": "x"})).await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");
    let (status, body) = create(json!({"type": "youtube", "description": "x".repeat(5001)})).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_belong_to_the_account_that_created_them() {
    let env = Env::start("yt-owners", |_| {}).await;
    let alice = Who::Browser(env.sign_in().await);
    let alice_id = env.account_id(&alice).await;
    env.fake.switch_user("Second Channel");
    let bob = Who::Browser(env.sign_in().await);
    let bob_id = env.account_id(&bob).await;
    assert_ne!(alice_id, bob_id, "two accounts");

    let created = env
        .create_youtube_stream(&alice, "Alice's", json!({"type": "youtube"}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        destination(&created)["youtube"]["account_id"],
        alice_id.as_str(),
        "the owner's account by default"
    );
    let path = format!("/api/streams/{id}");

    // Another account: not found everywhere, and not listed.
    let (status, body) = env.get(&path, &bob).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, list) = env.get("/api/streams", &bob).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 0, "{list}");
    for (method, route) in [
        (reqwest::Method::POST, format!("{path}/stop")),
        (reqwest::Method::POST, format!("{path}/start")),
        (reqwest::Method::DELETE, path.clone()),
        (reqwest::Method::GET, format!("{path}/events")),
        (reqwest::Method::POST, format!("{path}/ws-ticket")),
    ] {
        let (status, body) = env.call(method.clone(), &route, &bob, None).await;
        assert_eq!(status, 404, "{method} {route}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, body) = env
        .post(
            &format!("{path}/destinations"),
            &bob,
            Some(json!({"type": "youtube"})),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let r = env
        .request(reqwest::Method::POST, &format!("/whip/{id}"), &bob)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "WHIP to another account's stream");
    // Bob may not publish to Alice's account either.
    let (status, body) = env
        .post(
            "/api/streams",
            &bob,
            Some(json!({"destinations": [{"type": "youtube", "account_id": alice_id}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");

    // The owner sees and manages it; so does the API token.
    let (status, _) = env.get(&path, &alice).await;
    assert_eq!(status, 200);
    let (_, list) = env.get("/api/streams", &alice).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["streams"][0]["id"], id.as_str());
    let (status, _) = env.post(&format!("{path}/ws-ticket"), &alice, None).await;
    assert_eq!(status, 201);
    // The WebSocket takes the cookie of the owner, from no page or this server's own.
    let ws = |who: &Who, origin: Option<&str>| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}{path}/ws", env.base.replacen("http://", "ws://", 1));
        let mut request = url.into_client_request().unwrap();
        if let Who::Browser(session) = who {
            let value = format!("{SESSION_COOKIE}={session}").parse().unwrap();
            request.headers_mut().insert("cookie", value);
        }
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", origin.parse().unwrap());
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("WebSocket: {e}"),
            }
        }
    };
    assert_eq!(ws(&alice, None).await, 101);
    assert_eq!(ws(&alice, Some(&env.base)).await, 101);
    assert_eq!(ws(&alice, Some("https://evil.example")).await, 401);
    assert_eq!(ws(&bob, None).await, 404);
    let (status, _) = env.get(&path, &Who::Token).await;
    assert_eq!(status, 200);
    let (_, list) = env.get("/api/streams", &Who::Token).await;
    assert!(list["streams"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["id"] == id.as_str()));
    let (status, _) = env.get(&path, &Who::Anonymous).await;
    assert_eq!(status, 401);
    // The session cookie is no key to the operator's metrics.
    let (status, _) = env.get("/metrics", &alice).await;
    assert_eq!(status, 401);

    // With two accounts connected, the API token must say which one.
    let (status, body) = env
        .post(
            "/api/streams",
            &Who::Token,
            Some(json!({"destinations": [{"type": "youtube"}]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_request");
    let automation = env
        .create_youtube_stream(
            &Who::Token,
            "Automation",
            json!({"type": "youtube", "account_id": bob_id}),
        )
        .await;
    assert_eq!(
        destination(&automation)["youtube"]["account_id"],
        bob_id.as_str()
    );
    let (status, _) = env
        .get(
            &format!("/api/streams/{}", automation["id"].as_str().unwrap()),
            &bob,
        )
        .await;
    assert_eq!(status, 404, "a stream of the API token is not an account's");

    let (status, body) = env.call(reqwest::Method::DELETE, &path, &alice, None).await;
    assert_eq!(status, 204, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_before_live_removes_the_broadcast_and_its_stream() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let env = Env::start("yt-stop-early", |c| {
        c.timing.active_timeout = Duration::from_secs(30);
    })
    .await;
    let me = Who::Browser(env.sign_in().await);
    // YouTube never sees the stream arrive, so the destination stays connecting.
    env.fake.set_active_delay(Duration::from_secs(3600));
    let created = env
        .create_youtube_stream(&me, "stopped early", json!({"type": "youtube"}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let publishing = env.publish(&created, &me, Duration::from_secs(6)).await;
    let connecting = env
        .wait_for(
            &id,
            &me,
            Duration::from_secs(20),
            "publishing to YouTube",
            |v| {
                !env.fake.publish_log().is_empty()
                    && destination(v)["youtube"]["broadcast_id"].is_string()
            },
        )
        .await;
    assert_eq!(
        state_of(&connecting),
        ("starting", "connecting"),
        "{connecting}"
    );
    let ended = env.stop(&id, &me).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert_eq!(destination(&ended)["state"], "stopped", "{ended}");
    assert!(
        env.fake.broadcast_ids().is_empty(),
        "{:?}",
        env.fake.calls()
    );
    assert!(env.fake.stream_ids().is_empty(), "{:?}", env.fake.calls());
    let _ = within(Duration::from_secs(30), "the publisher", publishing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_youtube_destination_added_to_a_live_stream_goes_live_beside_the_other() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let mut env = Env::start("yt-added-live", sweep_often).await;
    let me = Who::Browser(env.sign_in().await);
    // Live on a plain RTMP destination first (an nginx of its own: the fake's nginx asks
    // Google about every key it is sent).
    let mut plain = tokio::task::block_in_place(|| Nginx::start(NginxOptions::default()));
    let rtmp = plain.rtmp_url("live", "plain-rtmp-destination");
    let created = env
        .create_youtube_stream(&me, "added later", json!({"type": "rtmp", "url": rtmp}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let publishing = env.publish(&created, &me, Duration::from_secs(12)).await;
    env.wait_for(&id, &me, Duration::from_secs(20), "live on RTMP", |v| {
        v["state"] == "live"
    })
    .await;
    let (status, added) = env
        .post(
            &format!("/api/streams/{id}/destinations"),
            &me,
            Some(json!({"type": "youtube", "privacy": "unlisted"})),
        )
        .await;
    assert_eq!(status, 201, "{added}");
    let did = added["id"].as_str().unwrap().to_string();
    let both = env
        .wait_for(&id, &me, Duration::from_secs(30), "live on both", |v| {
            v["destinations"]
                .as_array()
                .is_some_and(|ds| ds.len() == 2 && ds.iter().all(|d| d["state"] == "live"))
        })
        .await;
    let youtube = both["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == did.as_str())
        .unwrap();
    let broadcast_id = youtube["youtube"]["broadcast_id"].as_str().unwrap();
    assert_eq!(
        env.fake.broadcast(broadcast_id).unwrap()["status"]["lifeCycleStatus"],
        "live",
        "{both}"
    );
    assert_eq!(youtube["youtube"]["privacy"], "unlisted", "{both}");
    let ended = env.stop(&id, &me).await;
    assert_eq!(ended["state"], "ended", "{ended}");
    assert!(
        env.fake
            .calls()
            .contains(&"liveBroadcasts.transition(complete)".to_string()),
        "{:?}",
        env.fake.calls()
    );
    let _ = within(Duration::from_secs(30), "the publisher", publishing).await;
    env.shutdown().await;
    plain.stop();
    // The RTMP destination never stopped while the YouTube one joined.
    let recording = plain.recording("plain-rtmp-destination");
    streamify_testsupport::ffprobe::strict_decode(&recording).expect("clean RTMP recording");
}

/// Google refuses the `complete` at stop (its transient `500 backendError`): the stream still
/// stops at once, and the server's clean-up completes the broadcast a moment later instead of
/// leaving it live on the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_refused_at_stop_is_done_by_the_clean_up() {
    let _serial = support::ONE_AT_A_TIME.lock().await;
    let env = Env::start("yt-complete-later", |c| {
        // The clean-up runs every 200 ms but touches a broadcast only after 2 s unchanged.
        sweep_often(c);
        c.timing.cleanup_min_age = Duration::from_secs(2);
    })
    .await;
    let me = Who::Browser(env.sign_in().await);
    let created = env
        .create_youtube_stream(&me, "complete later", json!({"type": "youtube"}))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let publishing = env.publish(&created, &me, Duration::from_secs(8)).await;
    let live = env
        .wait_for(&id, &me, Duration::from_secs(40), "destination live", |v| {
            state_of(v).1 == "live"
        })
        .await;
    let broadcast_id = destination(&live)["youtube"]["broadcast_id"]
        .as_str()
        .expect("broadcast id")
        .to_string();
    // Live for longer than the clean-up's minimum age: it must still leave it alone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lifecycle = |env: &Env| {
        env.fake.broadcast(&broadcast_id).unwrap()["status"]["lifeCycleStatus"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(lifecycle(&env), "live", "{:?}", env.fake.calls());

    env.fake.fail_once("liveBroadcasts.transition(complete)");
    let ended = env.stop(&id, &me).await;
    // The destination says what happened and what comes next.
    let error = &destination(&ended)["error"];
    assert_eq!(error["code"], "youtube_unreachable", "{ended}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("ends it in the background")),
        "{ended}"
    );
    assert!(
        env.fake
            .calls()
            .contains(&"liveBroadcasts.transition(complete) -> 500".to_string()),
        "{:?}",
        env.fake.calls()
    );
    within(
        Duration::from_secs(15),
        "the clean-up completing the broadcast",
        async {
            while lifecycle(&env) != "complete" {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
    // Refused first, then done once, by the clean-up (the stop does not try again; without
    // the clean-up the broadcast stays live).
    let calls = env.fake.calls();
    let refused = calls
        .iter()
        .position(|c| c == "liveBroadcasts.transition(complete) -> 500");
    let done: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| *c == "liveBroadcasts.transition(complete)")
        .map(|(i, _)| i)
        .collect();
    assert!(
        done.len() == 1 && refused.is_some_and(|r| r < done[0]),
        "{calls:?}"
    );
    let _ = within(Duration::from_secs(30), "the publisher", publishing).await;
}
