//! YouTube: Google sign-in, token refresh and the broadcast lifecycle against a fake of Google
//! (tests/support/fake_google.rs, per shared/youtube-api.md) and a real nginx-rtmp whose
//! `on_publish` callbacks tell the fake when the stream arrives.
//!
//! Run: `cargo test --test youtube` (needs nginx with the RTMP and stream modules, ffmpeg and
//! openssl: `scripts/install-deps.sh test`).

#[path = "support/fake_google.rs"]
mod fake_google;
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fake_google::FakeGoogle;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use streamify::error::{Error, ErrorCode};
use streamify::store::{SecretBox, Store};
use streamify::youtube::live::{
    BroadcastDriver, BroadcastRequest, DriverTiming, LiveApi, Privacy, RtmpPublish, YoutubeEvent,
};
use streamify::youtube::routes::{router, YouTubeRoutes, SESSION_COOKIE, SIGN_IN_COOKIE};
use streamify::youtube::{YouTube, YouTubeConfig};
use streamify_testsupport as testsupport;
use testsupport::ReferenceMedia;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);

/// Our routes on a local port, wired to a fake Google.
struct Harness {
    fake: FakeGoogle,
    youtube: Arc<YouTube>,
    base: String,
    data_dir: PathBuf,
    browser: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn test_timing() -> DriverTiming {
    DriverTiming {
        active_poll_interval: Duration::from_millis(150),
        active_timeout: Duration::from_secs(10),
        transition_poll_interval: Duration::from_millis(100),
        transition_timeout: Duration::from_secs(10),
        health_interval: Duration::from_secs(1),
        ..DriverTiming::default()
    }
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut YouTubeConfig)) -> Harness {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeGoogle::start(&format!("{base}/auth/google/callback")).await;
        let data_dir = testsupport::test_dir("youtube").join("data");
        let store =
            Arc::new(Store::open_with(&data_dir, SecretBox::from_key(&rand::random())).unwrap());
        let mut config = fake.youtube_config(&base);
        config.timing = test_timing();
        adjust(&mut config);
        let youtube = YouTube::new(config, store).unwrap();
        let app = router(YouTubeRoutes {
            youtube: youtube.clone(),
            api_token: Some("automation-token".into()),
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Harness {
            fake,
            youtube,
            base,
            data_dir,
            browser,
            server,
        }
    }

    /// `GET /auth/google/start`: Google's URL and the browser-binding cookie.
    async fn begin(&self) -> (String, String) {
        let r = self
            .browser
            .get(format!("{}/auth/google/start", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "start must redirect to Google");
        let location = header(&r, LOCATION.as_str()).unwrap();
        let cookie = set_cookie(&r, SIGN_IN_COOKIE).expect("sign-in cookie set");
        (location, cookie)
    }

    /// Google's authorization endpoint (the fake auto-approves or refuses): the callback URL.
    async fn authorize(&self, url: &str) -> String {
        let r = self.browser.get(url).send().await.unwrap();
        assert_eq!(
            r.status(),
            302,
            "the fake redirects back: {:?}",
            r.text().await
        );
        header(&r, LOCATION.as_str()).unwrap()
    }

    /// The callback with the given sign-in cookie: (status, session cookie, body).
    async fn callback(&self, url: &str, cookie: Option<&str>) -> (u16, Option<String>, String) {
        let mut req = self.browser.get(url);
        if let Some(c) = cookie {
            req = req.header(COOKIE, format!("{SIGN_IN_COOKIE}={c}"));
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let session = set_cookie(&r, SESSION_COOKIE).filter(|v| !v.is_empty());
        (status, session, r.text().await.unwrap())
    }

    /// The whole sign-in; returns the session cookie value.
    async fn sign_in(&self) -> String {
        let (auth, cookie) = self.begin().await;
        let back = self.authorize(&auth).await;
        let (status, session, body) = self.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 303, "sign-in failed: {body}");
        session.expect("session cookie")
    }

    async fn account(&self, session: &str) -> (u16, serde_json::Value) {
        let r = self
            .browser
            .get(format!("{}/api/youtube/account", self.base))
            .header(COOKIE, format!("{SESSION_COOKIE}={session}"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    fn account_id(&self) -> String {
        self.youtube.store().account_ids().unwrap().remove(0)
    }
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The value of cookie `name` in the response's Set-Cookie headers.
fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    full_set_cookie(r, name).map(|line| {
        line.split(';').next().unwrap()[name.len() + 1..]
            .trim()
            .to_string()
    })
}

fn full_set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn page_code(body: &str) -> &str {
    let start = body
        .find("<code id=\"code\">")
        .expect("error page with a code")
        + 16;
    let end = body[start..].find("</code>").unwrap() + start;
    &body[start..end]
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_string()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out")
}

// ---- sign-in ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_pkce_connects_the_channel_and_sets_a_session_cookie() {
    within(async {
        let h = Harness::start().await;
        let (auth, cookie) = h.begin().await;
        let q = &url::Url::parse(&auth).unwrap();
        let q: std::collections::HashMap<_, _> = q.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(
            q["code_challenge"].len(),
            43,
            "BASE64URL(SHA256) without padding"
        );
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["scope"], "https://www.googleapis.com/auth/youtube");
        assert_eq!(
            q["redirect_uri"],
            format!("{}/auth/google/callback", h.base)
        );
        assert!(q["state"].len() >= 32);
        let back = h.authorize(&auth).await;
        let r = h
            .browser
            .get(&back)
            .header(COOKIE, format!("{SIGN_IN_COOKIE}={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        let line = full_set_cookie(&r, SESSION_COOKIE).unwrap();
        assert!(line.contains("HttpOnly"), "{line}");
        assert!(line.contains("SameSite=Lax"), "{line}");
        assert!(
            !line.contains("Secure"),
            "http public URL: no Secure flag: {line}"
        );
        let session = set_cookie(&r, SESSION_COOKIE).unwrap();

        let (status, view) = h.account(&session).await;
        assert_eq!(status, 200, "{view}");
        assert_eq!(view["account"]["channel_id"], h.fake.channel_id());
        assert_eq!(view["account"]["needs_reconnect"], false);
        assert_eq!(
            view["account"]["quota"]["units_used"], 1,
            "channels.list costs 1"
        );
        for token in h.fake.issued_tokens() {
            assert!(
                !view.to_string().contains(&token),
                "the API must not return tokens"
            );
        }
        // Without a session: 401; the API token works for automation.
        let r = h
            .browser
            .get(format!("{}/api/youtube/account", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = h
            .browser
            .get(format!("{}/api/youtube/account", h.base))
            .bearer_auth("automation-token")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookie_when_public_url_is_https() {
    within(async {
        // The fake registers the http redirect URI, so only the start step is used here.
        let h = Harness::start_with(|c| c.public_url = "https://streamify.example".into()).await;
        let r = h
            .browser
            .get(format!("{}/auth/google/start", h.base))
            .send()
            .await
            .unwrap();
        let line = full_set_cookie(&r, SIGN_IN_COOKIE).unwrap();
        assert!(line.contains("; Secure"), "{line}");
        assert!(
            line.contains("HttpOnly") && line.contains("SameSite=Lax"),
            "{line}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_refused_is_a_clear_error_page() {
    within(async {
        let h = Harness::start().await;
        h.fake.refuse_consent(true);
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        assert!(back.contains("error=access_denied"));
        let (status, session, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 400);
        assert!(session.is_none());
        assert_eq!(page_code(&body), "oauth_consent_refused");
        assert!(body.contains("Allow"), "{body}");
        assert!(h.youtube.store().account_ids().unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_state_is_refused_and_the_real_sign_in_still_works() {
    within(async {
        let h = Harness::start().await;
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        let tampered = replace_param(&back, "state", "forged-state-value");
        let (status, session, body) = h.callback(&tampered, Some(&cookie)).await;
        assert_eq!(status, 400);
        assert!(session.is_none());
        assert_eq!(page_code(&body), "oauth_state_invalid");
        // From another browser (no binding cookie): refused, and the state is not consumed.
        let (status, _, body) = h.callback(&back, None).await;
        assert_eq!(status, 400);
        assert_eq!(page_code(&body), "oauth_state_invalid");
        assert!(body.contains("another browser"), "{body}");
        let (status, session, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 303, "{body}");
        assert!(session.is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_state_is_refused() {
    within(async {
        let h = Harness::start().await;
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        let (status, _, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 303, "{body}");
        let (status, session, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 400);
        assert!(session.is_none());
        assert_eq!(page_code(&body), "oauth_state_invalid");
        assert!(body.contains("already used"), "{body}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_verifier_fails_the_exchange() {
    within(async {
        let h = Harness::start().await;
        // The fake records a challenge no verifier matches, so Google's PKCE check fails.
        h.fake.corrupt_challenge(true);
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        let (status, session, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 400);
        assert!(session.is_none());
        assert_eq!(page_code(&body), "oauth_exchange_failed");
        assert!(body.contains("Invalid code verifier"), "{body}");
        assert!(h.youtube.store().account_ids().unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_token_endpoint_enforces_pkce_and_single_use_codes() {
    within(async {
        let h = Harness::start().await;
        let (auth, _) = h.begin().await;
        let back = h.authorize(&auth).await;
        let code = url::Url::parse(&back)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        let exchange = |verifier: &str| {
            let form = [
                ("code", code.clone()),
                ("client_id", h.fake.client_id()),
                ("client_secret", h.fake.client_secret()),
                ("redirect_uri", format!("{}/auth/google/callback", h.base)),
                ("grant_type", "authorization_code".into()),
                ("code_verifier", verifier.into()),
            ];
            h.browser.post(h.fake.token_url()).form(&form).send()
        };
        let r = exchange("a-verifier-that-is-long-enough-but-not-the-one-used-here-0123")
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "Invalid code verifier.");
        // The code was spent by that attempt.
        let r = exchange("x").await.unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant");
        assert_eq!(body["error_description"], "Bad Request");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channel_and_readonly_scope_are_their_own_errors() {
    within(async {
        let h = Harness::start().await;
        h.fake.set_has_channel(false);
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        let (status, _, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 409);
        assert_eq!(page_code(&body), "youtube_no_channel");

        h.fake.set_has_channel(true);
        h.fake
            .grant_scope("https://www.googleapis.com/auth/youtube.readonly");
        let (auth, cookie) = h.begin().await;
        let back = h.authorize(&auth).await;
        let (status, _, body) = h.callback(&back, Some(&cookie)).await;
        assert_eq!(status, 403);
        assert_eq!(page_code(&body), "youtube_missing_scope");
        assert_eq!(h.fake.revoked().len(), 1, "the unusable grant is revoked");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_at_google_and_deletes_the_tokens() {
    within(async {
        let h = Harness::start().await;
        let session = h.sign_in().await;
        let account = h.youtube.store().account(&h.account_id()).unwrap().unwrap();
        let refresh = account.refresh_token.clone().unwrap();
        let r = h
            .browser
            .delete(format!("{}/api/youtube/account", h.base))
            .header(COOKIE, format!("{SESSION_COOKIE}={session}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["revoked_at_google"], true);
        assert_eq!(h.fake.revoked(), vec![refresh]);
        assert!(h.youtube.store().account_ids().unwrap().is_empty());
        let (status, _) = h.account(&session).await;
        assert_eq!(status, 401, "the session ended with the account");
    })
    .await;
}

// ---- tokens -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_token_is_refreshed_on_401_and_before_expiry() {
    within(async {
        let h = Harness::start().await;
        h.sign_in().await;
        let api = LiveApi::new(h.youtube.clone(), h.account_id());
        // Google expired the token early: one 401, one refresh, the retry succeeds.
        h.fake.expire_access_tokens();
        assert!(api.stream("no-such-stream").await.unwrap().is_none());
        assert_eq!((h.fake.unauthorized(), h.fake.refreshes()), (1, 1));
        // Tokens that expire within the refresh margin are refreshed before use (no 401).
        h.fake.set_access_ttl(Duration::from_secs(30));
        h.fake.expire_access_tokens();
        api.stream("no-such-stream").await.unwrap();
        assert_eq!((h.fake.unauthorized(), h.fake.refreshes()), (2, 2));
        api.stream("no-such-stream").await.unwrap();
        assert_eq!(
            (h.fake.unauthorized(), h.fake.refreshes()),
            (2, 3),
            "refreshed ahead of expiry, without a 401"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_refresh_token_requires_reauth() {
    within(async {
        let h = Harness::start().await;
        let session = h.sign_in().await;
        let api = LiveApi::new(h.youtube.clone(), h.account_id());
        h.fake.revoke_all();
        let err = Error::from(api.stream("x").await.unwrap_err());
        assert_eq!(err.code, ErrorCode::YoutubeReauthRequired);
        assert!(
            err.message.contains("/auth/google/start"),
            "{}",
            err.message
        );
        let (_, view) = h.account(&session).await;
        assert_eq!(view["account"]["needs_reconnect"], true);
        // Further calls fail at once, without asking Google.
        let unauthorized = h.fake.unauthorized();
        let err = Error::from(api.stream("x").await.unwrap_err());
        assert_eq!(err.code, ErrorCode::YoutubeReauthRequired);
        assert_eq!(h.fake.unauthorized(), unauthorized);
        // Signing in again clears the flag.
        h.sign_in().await;
        assert!(api.stream("x").await.unwrap().is_none());
    })
    .await;
}

// ---- broadcasts ---------------------------------------------------------------------------

/// Publishes a reference FLV in real time with the project's RTMP client; stops cleanly.
struct FlvPublisher {
    flv: PathBuf,
    ca_file: Option<PathBuf>,
    urls: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), String>>>,
}

impl FlvPublisher {
    fn new(flv: PathBuf, ca_file: Option<PathBuf>) -> FlvPublisher {
        FlvPublisher {
            flv,
            ca_file,
            urls: Vec::new(),
            stop: None,
            task: None,
        }
    }
}

async fn pump(
    mut publisher: rtmp::tokio::Publisher,
    flv: PathBuf,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Result<(), String> {
    let data = tokio::fs::read(&flv).await.map_err(|e| e.to_string())?;
    let mut demuxer = flv::Demuxer::new();
    demuxer.push(&data);
    let start = tokio::time::Instant::now();
    let mut base = None;
    while let Some(tag) = demuxer.pull().map_err(|e| e.to_string())? {
        let base = *base.get_or_insert(tag.timestamp);
        let due = start + Duration::from_millis(u64::from(tag.timestamp - base));
        tokio::select! {
            r = publisher.drive_until(due) => r.map_err(|e| e.to_string())?,
            _ = &mut stop => break,
        }
        match tag.kind {
            flv::TagKind::Audio => publisher.send_audio(tag.timestamp, tag.data).map(drop),
            flv::TagKind::Video => publisher.send_video(tag.timestamp, tag.data).map(drop),
            flv::TagKind::Script => publisher.send_metadata_tag(tag.timestamp, &tag.data),
        }
        .map_err(|e| e.to_string())?;
    }
    publisher
        .finish()
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

impl RtmpPublish for FlvPublisher {
    async fn start_publish(&mut self, url: &str) -> streamify::error::Result<()> {
        self.urls.push(url.to_string());
        let options = rtmp::tokio::ConnectOptions {
            ca_file: self.ca_file.clone(),
            ..Default::default()
        };
        let publisher = rtmp::tokio::Publisher::connect(url, options)
            .await
            .map_err(|e| Error::new(ErrorCode::RtmpConnectFailed, e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(pump(publisher, self.flv.clone(), rx)));
        Ok(())
    }

    async fn stop_publish(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("publisher stops within 10 s")
                .expect("publisher task");
            result.expect("the publish ran cleanly");
        }
    }
}

fn reference() -> PathBuf {
    tokio::task::block_in_place(|| {
        testsupport::reference_flv(ReferenceMedia {
            seconds: 10,
            width: 640,
            height: 360,
            gop: 60,
        })
    })
}

fn request(title: &str) -> BroadcastRequest {
    BroadcastRequest {
        title: title.into(),
        description: "Streamify test".into(),
        privacy: Privacy::Unlisted,
        owner_stream: Some("stream-1".into()),
    }
}

/// The calls without repeated polls: `a, list, list, b` -> `a, list, b`.
fn squeeze(calls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in calls {
        if out.last() != Some(c) {
            out.push(c.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_goes_live_over_real_rtmps_and_completes() {
    within(async {
        let h = Harness::start().await;
        let nginx = h.fake.start_ingestion();
        let session = h.sign_in().await;
        let account = h.account_id();
        h.fake
            .set_health_issues(vec![serde_json::json!({"type": "gopSizeLong",
            "severity": "warning", "reason": "Keyframe interval too long",
            "description": "Use a keyframe interval of 2 seconds."})]);
        let calls_before = h.fake.calls().len();
        let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
        let driver = BroadcastDriver::new(h.youtube.clone(), &account).with_events(tx);
        let mut publisher = FlvPublisher::new(reference(), nginx.ca_cert.clone());

        let live = driver
            .start(&request("Streamify e2e"), &mut publisher)
            .await
            .expect("goes live");
        assert_eq!(publisher.urls.len(), 1);
        assert!(
            publisher.urls[0].starts_with(&format!(
                "rtmps://127.0.0.1:{}/live2/",
                nginx.rtmps_port.unwrap()
            )),
            "publishes to the RTMPS ingestion address"
        );
        let key = h.fake.stream_keys().remove(0);
        assert!(publisher.urls[0].ends_with(&key));
        assert!(
            h.fake.publish_log().contains(&format!("publish {key}")),
            "nginx saw the publish"
        );
        let broadcast = h.fake.broadcast(&live.broadcast_id).unwrap();
        assert_eq!(broadcast["status"]["lifeCycleStatus"], "live");
        assert_eq!(broadcast["status"]["privacyStatus"], "unlisted");
        assert_eq!(broadcast["status"]["selfDeclaredMadeForKids"], false);
        assert_eq!(broadcast["contentDetails"]["enableAutoStart"], false);
        assert_eq!(broadcast["contentDetails"]["enableAutoStop"], false);
        assert_eq!(
            broadcast["contentDetails"]["monitorStream"]["enableMonitorStream"],
            false
        );
        assert_eq!(
            broadcast["contentDetails"]["boundStreamId"],
            live.stream_id.as_str()
        );
        assert_eq!(
            live.watch_url,
            format!("https://www.youtube.com/watch?v={}", live.broadcast_id)
        );

        let health = driver.health(&live).await.unwrap();
        assert_eq!(health.stream_status, "active");
        assert_eq!(health.health, "bad");
        assert_eq!(health.issues[0].kind, "gopSizeLong");

        driver.stop(&live, &mut publisher).await.expect("completes");
        let broadcast = h.fake.broadcast(&live.broadcast_id).unwrap();
        assert_eq!(broadcast["status"]["lifeCycleStatus"], "complete");
        assert!(broadcast["snippet"]["actualStartTime"].is_string());
        assert!(broadcast["snippet"]["actualEndTime"].is_string());
        // A second stop is harmless: redundantTransition counts as done.
        driver
            .stop(&live, &mut publisher)
            .await
            .expect("redundant complete is done");

        let calls = squeeze(&h.fake.calls()[calls_before..]);
        assert_eq!(
            calls,
            [
                "liveBroadcasts.insert",
                "liveStreams.insert",
                "liveBroadcasts.bind",
                "liveStreams.list",
                "liveBroadcasts.transition(live)",
                "liveBroadcasts.list",
                "liveStreams.list",
                "liveBroadcasts.transition(complete)",
            ]
        );
        let mut seen = Vec::new();
        while let Ok(e) = events.try_recv() {
            seen.push(e);
        }
        assert!(matches!(seen[0], YoutubeEvent::BroadcastCreated { .. }));
        assert!(seen.contains(&YoutubeEvent::StreamActive));
        assert!(seen.contains(&YoutubeEvent::Live));
        assert_eq!(seen.last(), Some(&YoutubeEvent::Completed));

        // The quota count matches what Google charged.
        let (_, view) = h.account(&session).await;
        assert_eq!(view["account"]["quota"]["units_used"], h.fake.quota_used());
        assert!(h.fake.quota_used() >= 50 * 5);

        // What YouTube received (through nginx) is a clean recording.
        let recording = nginx.recording(&key);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !h
            .fake
            .publish_log()
            .contains(&format!("publish_done {key}"))
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::task::block_in_place(|| testsupport::ffprobe::strict_decode(&recording))
            .unwrap_or_else(|e| panic!("{} does not decode cleanly: {e}", recording.display()));

        // No token, client secret or stream key in the database files in plain text.
        let mut secrets = h.fake.issued_tokens();
        secrets.push(h.fake.client_secret());
        secrets.extend(h.fake.stream_keys());
        support::assert_no_plaintext(&h.data_dir, &secrets);
        let record = h
            .youtube
            .store()
            .broadcast(&live.broadcast_id)
            .unwrap()
            .unwrap();
        assert_eq!(record.state, "complete");
        assert!(
            record.ingest_url.unwrap().ends_with(&key),
            "sealed, not lost"
        );
    })
    .await;
}

/// Runs `BroadcastDriver::run` in a task; returns its events, the stop switch and the task
/// (which hands the publisher back with the result).
#[allow(clippy::type_complexity)]
fn spawn_run(
    h: &Harness,
    publisher: FlvPublisher,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<YoutubeEvent>,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<(
        streamify::error::Result<streamify::youtube::live::LiveSession>,
        FlvPublisher,
    )>,
) {
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let driver = BroadcastDriver::new(h.youtube.clone(), h.account_id()).with_events(tx);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut publisher = publisher;
        let result = driver.run(&request("run"), &mut publisher, stop_rx).await;
        (result, publisher)
    });
    (events, stop_tx, task)
}

async fn next_live(events: &mut tokio::sync::mpsc::UnboundedReceiver<YoutubeEvent>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), events.recv()).await {
            Ok(Some(YoutubeEvent::Live)) => return,
            Ok(Some(_)) => {}
            other => panic!("no live event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_over_plain_rtmp_reads_health_and_stops_on_request() {
    within(async {
        let h = Harness::start_with(|c| c.prefer_rtmps = false).await;
        let nginx = h.fake.start_ingestion();
        h.sign_in().await;
        let (mut events, stop, task) = spawn_run(&h, FlvPublisher::new(reference(), None));
        next_live(&mut events).await;
        // One health reading (interval 1 s in these tests), then stop.
        match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
            Ok(Some(YoutubeEvent::Health(status))) => assert_eq!(status.health, "good"),
            other => panic!("expected a health reading: {other:?}"),
        }
        stop.send(true).unwrap();
        let (result, publisher) = task.await.unwrap();
        let live = result.expect("a clean run");
        assert!(
            publisher.urls[0].starts_with(&format!("rtmp://127.0.0.1:{}/live2/", nginx.rtmp_port))
        );
        let b = h.fake.broadcast(&live.broadcast_id).unwrap();
        assert_eq!(b["status"]["lifeCycleStatus"], "complete");
        assert!(publisher.task.is_none(), "publisher stopped");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_token_revoked_while_live_ends_with_reauth_required() {
    within(async {
        let h = Harness::start().await;
        let nginx = h.fake.start_ingestion();
        h.sign_in().await;
        let (mut events, _stop, task) =
            spawn_run(&h, FlvPublisher::new(reference(), nginx.ca_cert.clone()));
        next_live(&mut events).await;
        // The user removes Streamify's access at Google while the stream is live.
        h.fake.revoke_all();
        let (result, publisher) = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the run ends")
            .unwrap();
        let err = result.unwrap_err();
        assert_eq!(err.code, ErrorCode::YoutubeReauthRequired);
        assert!(
            err.message.contains("/auth/google/start"),
            "{}",
            err.message
        );
        assert!(
            publisher.task.is_none(),
            "the RTMP publish was closed cleanly"
        );
        let view = h.youtube.account_view(&h.account_id()).unwrap();
        assert_eq!(view["needs_reconnect"], true);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_interrupted_by_a_crash_are_ended_at_the_next_start() {
    within(async {
        let h = Harness::start().await;
        let nginx = h.fake.start_ingestion();
        h.sign_in().await;
        let driver = BroadcastDriver::new(h.youtube.clone(), h.account_id());
        let mut publisher = FlvPublisher::new(reference(), nginx.ca_cert.clone());
        let live = driver
            .start(&request("crash"), &mut publisher)
            .await
            .unwrap();
        // A second broadcast that never went live (created, then the server died).
        let api = LiveApi::new(h.youtube.clone(), h.account_id());
        let orphan = api.insert_broadcast(&request("orphan")).await.unwrap();
        let orphan_id = orphan["id"].as_str().unwrap().to_string();
        h.youtube
            .store()
            .save_broadcast(&streamify::store::BroadcastRecord {
                broadcast_id: orphan_id.clone(),
                account_id: h.account_id(),
                stream_id: None,
                ingest_url: None,
                owner_stream: None,
                state: "created".into(),
            })
            .unwrap();
        // The "crash": the RTMP connection drops without any YouTube call.
        publisher.task.take().unwrap().abort();

        let handled = h.youtube.end_interrupted_broadcasts().await.unwrap();
        assert_eq!(handled, [live.broadcast_id.clone(), orphan_id.clone()]);
        let b = h.fake.broadcast(&live.broadcast_id).unwrap();
        assert_eq!(b["status"]["lifeCycleStatus"], "complete");
        assert!(
            h.fake.broadcast(&orphan_id).is_none(),
            "never-live broadcast deleted"
        );
        // Nothing is left for the next start.
        assert!(h
            .youtube
            .end_interrupted_broadcasts()
            .await
            .unwrap()
            .is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streaming_not_enabled_has_its_code_and_creates_nothing() {
    within(async {
        let h = Harness::start().await;
        h.sign_in().await;
        h.fake.set_live_enabled(false);
        let driver = BroadcastDriver::new(h.youtube.clone(), h.account_id());
        let mut publisher = FlvPublisher::new(PathBuf::from("/nonexistent"), None);
        let err = driver
            .start(&request("x"), &mut publisher)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::YoutubeLiveStreamingNotEnabled);
        assert!(err.message.contains("24 hours"), "{}", err.message);
        assert!(publisher.urls.is_empty());
        assert!(h.fake.broadcast_ids().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exceeded_has_its_code() {
    within(async {
        let h = Harness::start().await;
        h.sign_in().await;
        // Room for the broadcast insert (50) but not the stream insert.
        h.fake.set_quota_limit(h.fake.quota_used() + 60);
        let driver = BroadcastDriver::new(h.youtube.clone(), h.account_id());
        let mut publisher = FlvPublisher::new(PathBuf::from("/nonexistent"), None);
        let err = driver
            .start(&request("x"), &mut publisher)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::YoutubeQuotaExceeded);
        assert!(err.message.contains("midnight Pacific"), "{}", err.message);
        assert!(publisher.urls.is_empty());
        assert!(h.fake.stream_ids().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_never_active_fails_and_cleans_up() {
    within(async {
        let h = Harness::start_with(|c| {
            c.timing.active_timeout = Duration::from_secs(2);
        })
        .await;
        let nginx = h.fake.start_ingestion();
        h.sign_in().await;
        // The RTMP publish really happens, but YouTube never reports the stream active.
        h.fake.set_active_delay(Duration::from_secs(3600));
        let driver = BroadcastDriver::new(h.youtube.clone(), h.account_id());
        let mut publisher = FlvPublisher::new(reference(), nginx.ca_cert.clone());
        let err = driver
            .start(&request("x"), &mut publisher)
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::YoutubeStreamInactive);
        assert!(
            err.message.contains("stream status ready"),
            "{}",
            err.message
        );
        let key = h.fake.stream_keys().first().cloned();
        assert!(key.is_none(), "the stream was deleted again");
        let log = h.fake.publish_log();
        assert!(log.iter().any(|l| l.starts_with("publish ")), "{log:?}");
        assert!(
            h.fake.broadcast_ids().is_empty(),
            "the broadcast was deleted again"
        );
        assert!(h.fake.stream_ids().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_configured_answers_a_clear_error() {
    within(async {
        let h = Harness::start_with(|c| {
            c.client_id = None;
            c.client_secret = None;
        })
        .await;
        let r = h
            .browser
            .get(format!("{}/auth/google/start", h.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        let body = r.text().await.unwrap();
        assert_eq!(page_code(&body), "youtube_not_configured");
        assert!(body.contains("STREAMIFY_GOOGLE_CLIENT_ID"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_transitions_have_their_codes() {
    within(async {
        let h = Harness::start().await;
        h.sign_in().await;
        let api = LiveApi::new(h.youtube.clone(), h.account_id());
        let b = api.insert_broadcast(&request("t")).await.unwrap();
        let id = b["id"].as_str().unwrap();
        assert_eq!(b["status"]["lifeCycleStatus"], "created");
        // Unbound and not live: complete is not a valid transition.
        let err = api.transition(id, "complete").await.unwrap_err();
        assert_eq!(err.reason.as_deref(), Some("invalidTransition"));
        assert_eq!(err.error.code, ErrorCode::YoutubeInvalidTransition);
        let s = api.insert_stream("t").await.unwrap();
        let bound = api.bind(id, s["id"].as_str().unwrap()).await.unwrap();
        assert_eq!(bound["status"]["lifeCycleStatus"], "ready");
        // Nothing is published: going live is refused because the stream is inactive.
        let err = api.transition(id, "live").await.unwrap_err();
        assert_eq!(err.reason.as_deref(), Some("errorStreamInactive"));
        assert_eq!(err.error.code, ErrorCode::YoutubeStreamInactive);
        // The monitor stream is off, so testing is not allowed.
        let err = api.transition(id, "testing").await.unwrap_err();
        assert_eq!(err.error.code, ErrorCode::YoutubeInvalidTransition);
        // A non-reusable stream cannot be bound to a second broadcast.
        let other = api.insert_broadcast(&request("t2")).await.unwrap();
        let err = api
            .bind(other["id"].as_str().unwrap(), s["id"].as_str().unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err.reason.as_deref(),
            Some("liveBroadcastBindingNotAllowed")
        );
        assert_eq!(err.error.code, ErrorCode::YoutubeApiError);
        // An unknown stream id lists as empty.
        assert!(api.stream("nope").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_unreachable_has_its_code() {
    within(async {
        let h = Harness::start().await;
        h.sign_in().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut config = h.youtube.config().clone();
        config.api_url = format!("http://{closed}/youtube/v3");
        let offline = YouTube::new(config, h.youtube.store().clone()).unwrap();
        let err = LiveApi::new(offline, h.account_id())
            .stream("x")
            .await
            .unwrap_err();
        assert_eq!(err.error.code, ErrorCode::YoutubeUnreachable);
        assert!(
            err.error.message.contains("liveStreams.list"),
            "{}",
            err.error.message
        );
    })
    .await;
}
