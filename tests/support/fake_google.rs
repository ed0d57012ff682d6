//! A fake of Google for tests, faithful to `shared/youtube-api.md`: the OAuth 2.0 endpoints
//! (authorization auto-approving or refusing, token exchange with the PKCE S256 check, refresh,
//! revocation) and the YouTube Data API v3 calls Streamify makes (`channels.list` and the live
//! `liveBroadcasts.*` / `liveStreams.*` calls) with the broadcast and stream state machines,
//! Google's error envelope, scopes and quota.
//!
//! "YouTube receives the stream" is decided by a real RTMP publish: the ingestion addresses
//! point at the test's nginx-rtmp, whose `on_publish` / `on_publish_done` callbacks
//! ([`FakeGoogle::on_publish_url`], [`FakeGoogle::on_publish_done_url`]) make the stream
//! `active` (after a configurable delay) and `inactive`.
//!
//! Include it with `#[path = "support/fake_google.rs"] mod fake_google;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

/// The scope that manages the account.
pub const SCOPE_YOUTUBE: &str = "https://www.googleapis.com/auth/youtube";
/// The other write scope.
pub const SCOPE_FORCE_SSL: &str = "https://www.googleapis.com/auth/youtube.force-ssl";
/// The read-only scope.
pub const SCOPE_READONLY: &str = "https://www.googleapis.com/auth/youtube.readonly";

/// A running fake. Dropping it stops the server.
pub struct FakeGoogle {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Google user's YouTube channel.
#[derive(Clone)]
struct Channel {
    id: String,
    title: String,
}

#[derive(Clone)]
struct CodeGrant {
    channel: Channel,
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    challenge_method: String,
    scope: String,
    used: bool,
    issued: Instant,
}

#[derive(Clone)]
struct AccessGrant {
    channel: Channel,
    scope: String,
    expires: Instant,
    refresh: Option<String>,
}

#[derive(Clone)]
struct RefreshGrant {
    channel: Channel,
    scope: String,
    revoked: bool,
}

struct FakeBroadcast {
    resource: Value,
    life: String,
    /// (final state, when it is reached) while a transition is in progress.
    pending: Option<(String, Instant)>,
}

struct FakeStream {
    resource: Value,
    stream_name: String,
    publishing_since: Option<Instant>,
    was_active: bool,
}

struct FakeState {
    client_id: String,
    client_secret: String,
    redirect_uris: Vec<String>,
    refuse_consent: bool,
    corrupt_challenge: bool,
    grant_scope: String,
    channel_id: String,
    channel_title: String,
    has_channel: bool,
    live_enabled: bool,
    quota_limit: i64,
    quota_used: i64,
    access_ttl: Duration,
    active_delay: Duration,
    starting_delay: Duration,
    health_issues: Vec<Value>,
    ingest_rtmp: String,
    ingest_rtmps: String,
    codes: HashMap<String, CodeGrant>,
    access: HashMap<String, AccessGrant>,
    refresh: HashMap<String, RefreshGrant>,
    broadcasts: Vec<(String, FakeBroadcast)>,
    streams: Vec<(String, FakeStream)>,
    calls: Vec<String>,
    authorize_queries: Vec<HashMap<String, String>>,
    refreshes: u32,
    unauthorized: u32,
    revoked: Vec<String>,
    publish_log: Vec<String>,
    /// Calls (as labelled in `calls`) to answer once with Google's transient 500 instead.
    fail_once: Vec<String>,
}

fn random_string(len: usize, alphabet: &[u8]) -> String {
    (0..len)
        .map(|_| alphabet[rand::random_range(0..alphabet.len())] as char)
        .collect()
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
const KEY_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Google's error envelope (§2).
fn api_error(status: u16, domain: &str, reason: &str, message: &str) -> Response {
    let status_text = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "INTERNAL",
    };
    let body = json!({"error": {"code": status, "message": message, "errors": [
        {"message": message, "domain": domain, "reason": reason}], "status": status_text}});
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

fn unauthenticated() -> Response {
    let message = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let body = json!({"error": {"code": 401, "message": message, "errors": [{"message": "Invalid Credentials",
        "domain": "global", "reason": "authError", "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED"}});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

fn token_error(status: u16, error: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn query_map(query: &Option<String>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn redirect(to: String) -> Response {
    (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
}

impl FakeState {
    fn settle(&mut self, now: Instant) {
        let active_delay = self.active_delay;
        let issues = self.health_issues.clone();
        for (_, s) in &mut self.streams {
            let active = s.publishing_since.is_some_and(|t| now >= t + active_delay);
            let status = if active {
                s.was_active = true;
                "active"
            } else if s.was_active {
                "inactive"
            } else {
                "ready"
            };
            let health = if active {
                if issues.is_empty() {
                    json!({"status": "good", "lastUpdateTimeSeconds": "0", "configurationIssues": []})
                } else {
                    json!({"status": "bad", "lastUpdateTimeSeconds": "0", "configurationIssues": issues.clone()})
                }
            } else {
                json!({"status": "noData"})
            };
            s.resource["status"] = json!({"streamStatus": status, "healthStatus": health});
        }
        for (_, b) in &mut self.broadcasts {
            if let Some((target, at)) = b.pending.clone() {
                if now >= at {
                    b.pending = None;
                    b.life = target;
                    if b.life == "live" {
                        b.resource["snippet"]["actualStartTime"] = json!(rfc3339_now());
                        b.resource["status"]["recordingStatus"] = json!("recording");
                    }
                }
            }
            b.resource["status"]["lifeCycleStatus"] = json!(b.life);
        }
    }

    fn stream_active(&self, stream_id: &str) -> bool {
        self.streams
            .iter()
            .find(|(id, _)| id == stream_id)
            .is_some_and(|(_, s)| s.resource["status"]["streamStatus"] == "active")
    }

    fn broadcast_mut(&mut self, id: &str) -> Option<&mut FakeBroadcast> {
        self.broadcasts
            .iter_mut()
            .find(|(b, _)| b == id)
            .map(|(_, b)| b)
    }
}

type Shared = Arc<Mutex<FakeState>>;

fn lock(state: &Shared) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeGoogle {
    /// Starts the fake on a free loopback port with one client registered for
    /// `redirect_uri` and one signed-in Google user who owns a channel with live streaming
    /// enabled and the default quota (10,000 units).
    pub async fn start(redirect_uri: &str) -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let channel_tail = random_string(22, ID_ALPHABET);
        let state = Arc::new(Mutex::new(FakeState {
            client_id: format!(
                "{}-fake.apps.googleusercontent.com",
                random_string(12, KEY_ALPHABET)
            ),
            client_secret: format!("GOCSPX-{}", random_string(28, ID_ALPHABET)),
            redirect_uris: vec![redirect_uri.to_string()],
            refuse_consent: false,
            corrupt_challenge: false,
            grant_scope: SCOPE_YOUTUBE.into(),
            channel_id: format!("UC{channel_tail}"),
            channel_title: "Fake Channel".into(),
            has_channel: true,
            live_enabled: true,
            quota_limit: 10_000,
            quota_used: 0,
            access_ttl: Duration::from_secs(3599),
            active_delay: Duration::from_millis(300),
            starting_delay: Duration::from_millis(300),
            health_issues: Vec::new(),
            fail_once: Vec::new(),
            ingest_rtmp: "rtmp://127.0.0.1:1/live2".into(),
            ingest_rtmps: "rtmps://127.0.0.1:1/live2".into(),
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            broadcasts: Vec::new(),
            streams: Vec::new(),
            calls: Vec::new(),
            authorize_queries: Vec::new(),
            refreshes: 0,
            unauthorized: 0,
            revoked: Vec::new(),
            publish_log: Vec::new(),
        }));
        let app = Router::new()
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/token", post(token))
            .route("/revoke", post(revoke))
            .route("/rtmp/on_publish", post(on_publish))
            .route("/rtmp/on_publish_done", post(on_publish_done))
            .route("/youtube/v3/{*rest}", any(youtube_api))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeGoogle { addr, state, task }
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Authorization endpoint.
    pub fn auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.base())
    }
    /// Token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base())
    }
    /// Revocation endpoint.
    pub fn revoke_url(&self) -> String {
        format!("{}/revoke", self.base())
    }
    /// YouTube Data API base.
    pub fn api_url(&self) -> String {
        format!("{}/youtube/v3", self.base())
    }
    /// nginx-rtmp `on_publish` target.
    pub fn on_publish_url(&self) -> String {
        format!("{}/rtmp/on_publish", self.base())
    }
    /// nginx-rtmp `on_publish_done` target.
    pub fn on_publish_done_url(&self) -> String {
        format!("{}/rtmp/on_publish_done", self.base())
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }

    /// The registered client id.
    pub fn client_id(&self) -> String {
        self.state().client_id.clone()
    }
    /// The registered client secret.
    pub fn client_secret(&self) -> String {
        self.state().client_secret.clone()
    }
    /// The channel id of the user who signs in (see [`FakeGoogle::switch_user`]).
    pub fn channel_id(&self) -> String {
        self.state().channel_id.clone()
    }
    /// From now on another Google user (with a channel of its own titled `title`) signs in;
    /// returns its channel id. Tokens already issued keep their user.
    pub fn switch_user(&self, title: &str) -> String {
        let mut s = self.state();
        s.channel_id = format!("UC{}", random_string(22, ID_ALPHABET));
        s.channel_title = title.into();
        s.channel_id.clone()
    }
    /// The user refuses consent (`error=access_denied`).
    pub fn refuse_consent(&self, refuse: bool) {
        self.state().refuse_consent = refuse;
    }
    /// The next codes carry a challenge that no verifier matches (the exchange then fails
    /// with `invalid_grant` / "Invalid code verifier.").
    pub fn corrupt_challenge(&self, corrupt: bool) {
        self.state().corrupt_challenge = corrupt;
    }
    /// The scopes the user grants (space separated).
    pub fn grant_scope(&self, scope: &str) {
        self.state().grant_scope = scope.into();
    }
    /// Whether the user has a YouTube channel.
    pub fn set_has_channel(&self, has: bool) {
        self.state().has_channel = has;
    }
    /// Whether live streaming is enabled on the channel.
    pub fn set_live_enabled(&self, enabled: bool) {
        self.state().live_enabled = enabled;
    }
    /// The project's daily quota.
    pub fn set_quota_limit(&self, units: i64) {
        self.state().quota_limit = units;
    }
    /// Quota units spent so far.
    pub fn quota_used(&self) -> i64 {
        self.state().quota_used
    }
    /// Lifetime of new access tokens.
    pub fn set_access_ttl(&self, ttl: Duration) {
        self.state().access_ttl = ttl;
    }
    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in self.state().access.values_mut() {
            grant.expires = now;
        }
    }
    /// The user revokes the app's access: every refresh and access token dies.
    pub fn revoke_all(&self) {
        let mut s = self.state();
        for grant in s.refresh.values_mut() {
            grant.revoked = true;
        }
        s.access.clear();
    }
    /// How long after the RTMP publish starts the stream becomes `active`.
    /// The next call labelled `label` (as in [`FakeGoogle::calls`], e.g.
    /// `liveBroadcasts.transition(complete)`) fails with Google's transient
    /// `500 backendError` and changes nothing; the one after it runs.
    pub fn fail_once(&self, label: &str) {
        self.state().fail_once.push(label.to_string());
    }
    pub fn set_active_delay(&self, delay: Duration) {
        self.state().active_delay = delay;
    }
    /// How long `testStarting` / `liveStarting` last.
    pub fn set_starting_delay(&self, delay: Duration) {
        self.state().starting_delay = delay;
    }
    /// Configuration issues reported while the stream is active (health becomes `bad`).
    pub fn set_health_issues(&self, issues: Vec<Value>) {
        self.state().health_issues = issues;
    }
    /// Points the ingestion addresses at the test's nginx (`.../live2`).
    pub fn set_ingestion(&self, rtmp: &str, rtmps: &str) {
        let mut s = self.state();
        s.ingest_rtmp = rtmp.into();
        s.ingest_rtmps = rtmps.into();
    }
    /// The API calls made so far, e.g. `liveBroadcasts.insert`, `liveBroadcasts.transition(live)`.
    pub fn calls(&self) -> Vec<String> {
        self.state().calls.clone()
    }
    /// The query of each authorization request.
    pub fn authorize_queries(&self) -> Vec<HashMap<String, String>> {
        self.state().authorize_queries.clone()
    }
    /// Successful refreshes.
    pub fn refreshes(&self) -> u32 {
        self.state().refreshes
    }
    /// API requests answered 401 (missing, unknown or expired access token).
    pub fn unauthorized(&self) -> u32 {
        self.state().unauthorized
    }
    /// Tokens revoked through the revocation endpoint.
    pub fn revoked(&self) -> Vec<String> {
        self.state().revoked.clone()
    }
    /// Every access and refresh token ever issued.
    pub fn issued_tokens(&self) -> Vec<String> {
        let s = self.state();
        s.access.keys().chain(s.refresh.keys()).cloned().collect()
    }
    /// Every stream key (streamName) handed out.
    pub fn stream_keys(&self) -> Vec<String> {
        self.state()
            .streams
            .iter()
            .map(|(_, s)| s.stream_name.clone())
            .collect()
    }
    /// `publish <key>` / `publish_done <key>` / `refused <key>` as nginx reported them.
    pub fn publish_log(&self) -> Vec<String> {
        self.state().publish_log.clone()
    }
    /// A broadcast resource as the API would return it.
    pub fn broadcast(&self, id: &str) -> Option<Value> {
        let mut s = self.state();
        s.settle(Instant::now());
        s.broadcasts
            .iter()
            .find(|(b, _)| b == id)
            .map(|(_, b)| b.resource.clone())
    }
    /// Ids of broadcasts that exist (not deleted).
    pub fn broadcast_ids(&self) -> Vec<String> {
        self.state()
            .broadcasts
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
    /// Ids of streams that exist (not deleted).
    pub fn stream_ids(&self) -> Vec<String> {
        self.state()
            .streams
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }
}

// ---- OAuth --------------------------------------------------------------------------------

async fn authorize(State(state): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let q = query_map(&query);
    let mut s = lock(&state);
    s.authorize_queries.push(q.clone());
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    // Problems with the client or redirect URI are shown to the user, never redirected.
    if get("client_id") != s.client_id {
        return (StatusCode::UNAUTHORIZED, "Error 401: invalid_client").into_response();
    }
    let redirect_uri = get("redirect_uri");
    if !s.redirect_uris.contains(&redirect_uri) {
        return (StatusCode::BAD_REQUEST, "Error 400: redirect_uri_mismatch").into_response();
    }
    let state_param = get("state");
    let back = |pairs: &[(&str, &str)]| {
        let mut url = url::Url::parse(&redirect_uri).unwrap();
        url.query_pairs_mut().extend_pairs(pairs);
        redirect(url.to_string())
    };
    if get("response_type") != "code" || get("scope").is_empty() {
        return back(&[("error", "invalid_request"), ("state", &state_param)]);
    }
    let method = q
        .get("code_challenge_method")
        .cloned()
        .unwrap_or_else(|| "plain".into());
    if q.contains_key("code_challenge") && method != "S256" && method != "plain" {
        return back(&[("error", "invalid_request"), ("state", &state_param)]);
    }
    if s.refuse_consent {
        return back(&[("error", "access_denied"), ("state", &state_param)]);
    }
    let code = format!("4/0A{}", random_string(60, ID_ALPHABET));
    let challenge = q.get("code_challenge").map(|c| {
        if s.corrupt_challenge {
            format!("{c}x")
        } else {
            c.clone()
        }
    });
    let scope = s.grant_scope.clone();
    let client_id = s.client_id.clone();
    let channel = Channel {
        id: s.channel_id.clone(),
        title: s.channel_title.clone(),
    };
    s.codes.insert(
        code.clone(),
        CodeGrant {
            channel,
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge,
            challenge_method: method,
            scope: scope.clone(),
            used: false,
            issued: Instant::now(),
        },
    );
    back(&[("state", &state_param), ("code", &code), ("scope", &scope)])
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return token_error(400, "invalid_request", "Invalid Content-Type");
    }
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut s = lock(&state);
    if get("client_id") != s.client_id || get("client_secret") != s.client_secret {
        return token_error(401, "invalid_client", "Unauthorized");
    }
    let ttl = s.access_ttl;
    let issue = |s: &mut FakeState, channel: &Channel, scope: &str, refresh: Option<String>| {
        let access = format!("ya29.fake-{}", random_string(80, ID_ALPHABET));
        s.access.insert(
            access.clone(),
            AccessGrant {
                channel: channel.clone(),
                scope: scope.into(),
                expires: Instant::now() + ttl,
                refresh,
            },
        );
        access
    };
    match get("grant_type").as_str() {
        "authorization_code" => {
            let code = get("code");
            let Some(grant) = s.codes.get_mut(&code) else {
                return token_error(400, "invalid_grant", "Bad Request");
            };
            // A code is good for one attempt, within 10 minutes.
            if grant.used || grant.issued.elapsed() > Duration::from_secs(600) {
                return token_error(400, "invalid_grant", "Bad Request");
            }
            grant.used = true;
            let grant = grant.clone();
            if grant.client_id != get("client_id") {
                return token_error(400, "invalid_grant", "Bad Request");
            }
            if grant.redirect_uri != get("redirect_uri") {
                return token_error(400, "redirect_uri_mismatch", "Bad Request");
            }
            if let Some(challenge) = &grant.challenge {
                let Some(verifier) = f.get("code_verifier") else {
                    return token_error(400, "invalid_request", "Missing code verifier.");
                };
                let computed = if grant.challenge_method == "S256" {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .encode(sha2::Sha256::digest(verifier.as_bytes()))
                } else {
                    verifier.clone()
                };
                if &computed != challenge {
                    return token_error(400, "invalid_grant", "Invalid code verifier.");
                }
            }
            let refresh = format!("1//fake-{}", random_string(90, ID_ALPHABET));
            s.refresh.insert(
                refresh.clone(),
                RefreshGrant {
                    channel: grant.channel.clone(),
                    scope: grant.scope.clone(),
                    revoked: false,
                },
            );
            let access = issue(&mut s, &grant.channel, &grant.scope, Some(refresh.clone()));
            Json(json!({"access_token": access, "expires_in": ttl.as_secs(), "refresh_token": refresh,
                "scope": grant.scope, "token_type": "Bearer"}))
            .into_response()
        }
        "refresh_token" => {
            let refresh = get("refresh_token");
            let (channel, scope) = match s.refresh.get(&refresh) {
                Some(g) if !g.revoked => (g.channel.clone(), g.scope.clone()),
                _ => {
                    return token_error(400, "invalid_grant", "Token has been expired or revoked.")
                }
            };
            s.refreshes += 1;
            let access = issue(&mut s, &channel, &scope, Some(refresh));
            Json(
                json!({"access_token": access, "expires_in": ttl.as_secs(), "scope": scope,
                "token_type": "Bearer"}),
            )
            .into_response()
        }
        _ => token_error(400, "unsupported_grant_type", "Invalid grant_type"),
    }
}

async fn revoke(State(state): State<Shared>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let mut params = query_map(&query);
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    let token = params.get("token").cloned().unwrap_or_default();
    let mut s = lock(&state);
    if let Some(grant) = s.access.remove(&token) {
        // Revoking an access token also revokes its refresh token (and its other tokens).
        if let Some(refresh) = grant.refresh {
            if let Some(g) = s.refresh.get_mut(&refresh) {
                g.revoked = true;
            }
            s.access
                .retain(|_, g| g.refresh.as_deref() != Some(refresh.as_str()));
        }
    } else if s.refresh.get(&token).is_some_and(|g| !g.revoked) {
        s.refresh.get_mut(&token).unwrap().revoked = true;
        s.access
            .retain(|_, g| g.refresh.as_deref() != Some(token.as_str()));
    } else {
        return token_error(400, "invalid_token", "Token expired or revoked");
    }
    s.revoked.push(token);
    StatusCode::OK.into_response()
}

// ---- nginx-rtmp callbacks -----------------------------------------------------------------

async fn on_publish(State(state): State<Shared>, body: Bytes) -> Response {
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let name = f.get("name").cloned().unwrap_or_default();
    let mut s = lock(&state);
    match s.streams.iter_mut().find(|(_, st)| st.stream_name == name) {
        Some((_, stream)) => {
            stream.publishing_since = Some(Instant::now());
            s.publish_log.push(format!("publish {name}"));
            StatusCode::OK.into_response()
        }
        None => {
            // YouTube refuses a publish with an unknown stream key.
            s.publish_log.push(format!("refused {name}"));
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

async fn on_publish_done(State(state): State<Shared>, body: Bytes) -> Response {
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let name = f.get("name").cloned().unwrap_or_default();
    let mut s = lock(&state);
    if let Some((_, stream)) = s.streams.iter_mut().find(|(_, st)| st.stream_name == name) {
        stream.publishing_since = None;
    }
    s.publish_log.push(format!("publish_done {name}"));
    StatusCode::OK.into_response()
}

// ---- YouTube Data API v3 ------------------------------------------------------------------

struct Call<'a> {
    name: &'a str,
    cost: i64,
    write: bool,
    live: bool,
}

fn classify(method: &Method, path: &str, q: &HashMap<String, String>) -> Option<Call<'static>> {
    let (name, write, live): (&'static str, bool, bool) = match (method.as_str(), path) {
        ("GET", "channels") => ("channels.list", false, false),
        ("POST", "liveBroadcasts") => ("liveBroadcasts.insert", true, true),
        ("PUT", "liveBroadcasts") => ("liveBroadcasts.update", true, true),
        ("GET", "liveBroadcasts") => ("liveBroadcasts.list", false, true),
        ("DELETE", "liveBroadcasts") => ("liveBroadcasts.delete", true, true),
        ("POST", "liveBroadcasts/bind") => ("liveBroadcasts.bind", true, true),
        ("POST", "liveBroadcasts/transition") => ("liveBroadcasts.transition", true, true),
        ("POST", "liveStreams") => ("liveStreams.insert", true, true),
        ("GET", "liveStreams") => ("liveStreams.list", false, true),
        ("DELETE", "liveStreams") => ("liveStreams.delete", true, true),
        _ => return None,
    };
    let _ = q;
    Some(Call {
        name,
        cost: if write { 50 } else { 1 },
        write,
        live,
    })
}

fn parts_ok(q: &HashMap<String, String>, allowed: &[&str]) -> bool {
    q.get("part")
        .is_some_and(|p| !p.is_empty() && p.split(',').all(|part| allowed.contains(&part.trim())))
}

fn bad_part() -> Response {
    api_error(
        400,
        "youtube.part",
        "unknownPart",
        "The request's part parameter is missing or names an unknown part.",
    )
}

async fn youtube_api(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path()
        .trim_start_matches("/youtube/v3/")
        .trim_end_matches('/')
        .to_string();
    let q = query_map(&uri.query().map(str::to_string));
    let Some(call) = classify(&method, &path, &q) else {
        return api_error(404, "global", "notFound", "Not Found");
    };
    let mut s = lock(&state);
    let now = Instant::now();
    s.settle(now);
    // Authentication.
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let Some(grant) = s.access.get(&token).filter(|g| g.expires > now).cloned() else {
        s.unauthorized += 1;
        return unauthenticated();
    };
    // Quota: every request costs, even a refused one; over the limit nothing runs.
    if s.quota_used + call.cost > s.quota_limit {
        let m = "The request cannot be completed because you have exceeded your <a href=\"/youtube/v3/getting-started#quota\">quota</a>.";
        return api_error(403, "youtube.quota", "quotaExceeded", m);
    }
    s.quota_used += call.cost;
    let label = if call.name == "liveBroadcasts.transition" {
        format!(
            "{}({})",
            call.name,
            q.get("broadcastStatus").cloned().unwrap_or_default()
        )
    } else {
        call.name.to_string()
    };
    if let Some(i) = s.fail_once.iter().position(|l| *l == label) {
        s.fail_once.remove(i);
        s.calls.push(format!("{label} -> 500"));
        return api_error(500, "global", "backendError", "Backend Error");
    }
    s.calls.push(label);
    // Scopes.
    let scopes: Vec<&str> = grant.scope.split_whitespace().collect();
    let can_write = scopes.contains(&SCOPE_YOUTUBE) || scopes.contains(&SCOPE_FORCE_SSL);
    let can_read = can_write || scopes.contains(&SCOPE_READONLY);
    if (call.write && !can_write) || !can_read {
        return api_error(
            403,
            "global",
            "insufficientPermissions",
            "Request had insufficient authentication scopes.",
        );
    }
    if call.live && !s.live_enabled {
        let domain = if call.name.starts_with("liveStreams") {
            "youtube.liveStream"
        } else {
            "youtube.liveBroadcast"
        };
        return api_error(
            403,
            domain,
            "liveStreamingNotEnabled",
            "The user is not enabled for live streaming.",
        );
    }
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return api_error(400, "global", "parseError", "Parse Error"),
        }
    };
    match call.name {
        "channels.list" => channels_list(&s, &q, &grant.channel),
        "liveBroadcasts.insert" => broadcast_insert(&mut s, &q, &body, &grant.channel),
        "liveStreams.insert" => stream_insert(&mut s, &q, &body, &grant.channel),
        "liveBroadcasts.bind" => bind(&mut s, &q),
        "liveStreams.list" => streams_list(&s, &q),
        "liveBroadcasts.list" => broadcasts_list(&s, &q),
        "liveBroadcasts.transition" => transition(&mut s, &q, now),
        "liveBroadcasts.delete" => broadcast_delete(&mut s, &q),
        "liveStreams.delete" => stream_delete(&mut s, &q),
        _ => api_error(
            400,
            "global",
            "unsupportedOperation",
            "Not supported by the fake",
        ),
    }
}

fn channels_list(s: &FakeState, q: &HashMap<String, String>, channel: &Channel) -> Response {
    if !parts_ok(
        q,
        &["id", "snippet", "contentDetails", "statistics", "status"],
    ) {
        return bad_part();
    }
    let items = if s.has_channel && q.get("mine").map(String::as_str) == Some("true") {
        vec![
            json!({"kind": "youtube#channel", "etag": "e", "id": channel.id,
            "snippet": {"title": channel.title, "description": "", "publishedAt": "2020-01-01T00:00:00Z"}}),
        ]
    } else {
        Vec::new()
    };
    Json(json!({"kind": "youtube#channelListResponse", "etag": "e",
        "pageInfo": {"totalResults": items.len(), "resultsPerPage": 5}, "items": items}))
    .into_response()
}

fn broadcast_insert(
    s: &mut FakeState,
    q: &HashMap<String, String>,
    body: &Value,
    channel: &Channel,
) -> Response {
    if !parts_ok(q, &["id", "snippet", "contentDetails", "status"]) {
        return bad_part();
    }
    let d = "youtube.liveBroadcast";
    let title = body["snippet"]["title"].as_str().unwrap_or_default();
    if title.is_empty() {
        return api_error(400, d, "titleRequired", "The broadcast title is required.");
    }
    if title.chars().count() > 100 || title.contains('<') || title.contains('>') {
        return api_error(400, d, "invalidTitle", "The broadcast title is invalid.");
    }
    if body["snippet"]["description"]
        .as_str()
        .is_some_and(|t| t.chars().count() > 5000)
    {
        return api_error(400, d, "invalidDescription", "The description is invalid.");
    }
    if body["snippet"]["scheduledStartTime"].as_str().is_none() {
        return api_error(
            400,
            d,
            "scheduledStartTimeRequired",
            "The scheduled start time is required.",
        );
    }
    let privacy = body["status"]["privacyStatus"].as_str().unwrap_or_default();
    if privacy.is_empty() {
        return api_error(
            400,
            d,
            "privacyStatusRequired",
            "The privacy status is required.",
        );
    }
    if !["public", "unlisted", "private"].contains(&privacy) {
        return api_error(400, d, "invalidPrivacyStatus", "Invalid privacy status.");
    }
    let id = random_string(11, ID_ALPHABET);
    let cd = &body["contentDetails"];
    let monitor = cd["monitorStream"]["enableMonitorStream"]
        .as_bool()
        .unwrap_or(true);
    let resource = json!({
        "kind": "youtube#liveBroadcast", "etag": "e", "id": id,
        "snippet": {"publishedAt": rfc3339_now(), "channelId": channel.id, "title": title,
            "description": body["snippet"]["description"].as_str().unwrap_or_default(),
            "scheduledStartTime": body["snippet"]["scheduledStartTime"],
            "liveChatId": format!("Cg0KC{}", random_string(20, ID_ALPHABET)), "isDefaultBroadcast": false},
        "status": {"lifeCycleStatus": "created", "privacyStatus": privacy, "recordingStatus": "notRecording",
            "madeForKids": false,
            "selfDeclaredMadeForKids": body["status"]["selfDeclaredMadeForKids"].as_bool().unwrap_or(false)},
        "contentDetails": {"monitorStream": {"enableMonitorStream": monitor, "broadcastStreamDelayMs": 0},
            "enableEmbed": true, "enableDvr": cd["enableDvr"].as_bool().unwrap_or(true),
            "enableContentEncryption": false, "startWithSlate": false, "recordFromStart": true,
            "enableAutoStart": cd["enableAutoStart"].as_bool().unwrap_or(false),
            "enableAutoStop": cd["enableAutoStop"].as_bool().unwrap_or(false),
            "latencyPreference": cd["latencyPreference"].as_str().unwrap_or("normal"),
            "projection": "rectangular", "closedCaptionsType": "closedCaptionsDisabled"},
    });
    s.broadcasts.push((
        id,
        FakeBroadcast {
            resource: resource.clone(),
            life: "created".into(),
            pending: None,
        },
    ));
    Json(resource).into_response()
}

fn stream_insert(
    s: &mut FakeState,
    q: &HashMap<String, String>,
    body: &Value,
    channel: &Channel,
) -> Response {
    if !parts_ok(q, &["id", "snippet", "cdn", "contentDetails", "status"]) {
        return bad_part();
    }
    let d = "youtube.liveStream";
    let title = body["snippet"]["title"].as_str().unwrap_or_default();
    if title.is_empty() {
        return api_error(400, d, "titleRequired", "The stream title is required.");
    }
    if title.chars().count() > 128 {
        return api_error(400, d, "invalidTitle", "The stream title is invalid.");
    }
    let cdn = &body["cdn"];
    if !cdn.is_object() {
        return api_error(400, d, "cdnRequired", "The cdn settings are required.");
    }
    let ingestion = cdn["ingestionType"].as_str().unwrap_or_default();
    if ingestion.is_empty() {
        return api_error(
            400,
            d,
            "ingestionTypeRequired",
            "The ingestion type is required.",
        );
    }
    if !["rtmp", "dash", "webrtc", "hls"].contains(&ingestion) {
        return api_error(400, d, "invalidIngestionType", "Invalid ingestion type.");
    }
    let resolution = cdn["resolution"].as_str();
    let frame_rate = cdn["frameRate"].as_str();
    match (resolution, frame_rate) {
        (Some(_), None) => {
            return api_error(400, d, "frameRateRequired", "The frame rate is required.")
        }
        (None, Some(_)) => {
            return api_error(400, d, "resolutionRequired", "The resolution is required.")
        }
        _ => {}
    }
    let resolutions = [
        "240p", "360p", "480p", "720p", "1080p", "1440p", "2160p", "variable",
    ];
    if resolution.is_some_and(|r| !resolutions.contains(&r)) {
        return api_error(400, d, "invalidResolution", "Invalid resolution.");
    }
    if frame_rate.is_some_and(|f| !["30fps", "60fps", "variable"].contains(&f)) {
        return api_error(400, d, "invalidFrameRate", "Invalid frame rate.");
    }
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let id = format!("{}{micros}", &channel.id[2..]);
    let key = (0..5)
        .map(|_| random_string(4, KEY_ALPHABET))
        .collect::<Vec<_>>()
        .join("-");
    let reusable = body["contentDetails"]["isReusable"]
        .as_bool()
        .unwrap_or(true);
    let backup = |a: &str| format!("{a}?backup=1");
    let resource = json!({
        "kind": "youtube#liveStream", "etag": "e", "id": id,
        "snippet": {"publishedAt": rfc3339_now(), "channelId": channel.id, "title": title,
            "description": body["snippet"]["description"].as_str().unwrap_or_default(), "isDefaultStream": false},
        "cdn": {"format": "variable", "ingestionType": ingestion,
            "resolution": resolution.unwrap_or("variable"), "frameRate": frame_rate.unwrap_or("variable"),
            "ingestionInfo": {"streamName": key, "ingestionAddress": s.ingest_rtmp,
                "backupIngestionAddress": backup(&s.ingest_rtmp), "rtmpsIngestionAddress": s.ingest_rtmps,
                "rtmpsBackupIngestionAddress": backup(&s.ingest_rtmps)}},
        "status": {"streamStatus": "ready", "healthStatus": {"status": "noData"}},
        "contentDetails": {"closedCaptionsIngestionUrl": format!("http://upload.youtube.com/closedcaption?cid={key}"),
            "isReusable": reusable},
    });
    s.streams.push((
        id,
        FakeStream {
            resource: resource.clone(),
            stream_name: key,
            publishing_since: None,
            was_active: false,
        },
    ));
    Json(resource).into_response()
}

fn bind(s: &mut FakeState, q: &HashMap<String, String>) -> Response {
    if !parts_ok(q, &["id", "snippet", "contentDetails", "status"]) {
        return bad_part();
    }
    let d = "youtube.liveBroadcast";
    let Some(id) = q.get("id").filter(|v| !v.is_empty()).cloned() else {
        return api_error(400, d, "idRequired", "The id parameter is required.");
    };
    if !s.broadcasts.iter().any(|(b, _)| *b == id) {
        return api_error(404, d, "liveBroadcastNotFound", "Broadcast not found.");
    }
    let stream_id = q.get("streamId").cloned();
    if let Some(sid) = &stream_id {
        let Some((_, stream)) = s.streams.iter().find(|(x, _)| x == sid) else {
            return api_error(
                404,
                "youtube.liveStream",
                "liveStreamNotFound",
                "Stream not found.",
            );
        };
        let reusable = stream.resource["contentDetails"]["isReusable"]
            .as_bool()
            .unwrap_or(true);
        let bound_elsewhere = s.broadcasts.iter().any(|(b, fb)| {
            *b != id && fb.resource["contentDetails"]["boundStreamId"].as_str() == Some(sid)
        });
        if !reusable && bound_elsewhere {
            return api_error(
                403,
                d,
                "liveBroadcastBindingNotAllowed",
                "The stream is not reusable and already bound.",
            );
        }
    }
    let b = s.broadcast_mut(&id).unwrap();
    if !matches!(b.life.as_str(), "created" | "ready") {
        return api_error(
            403,
            d,
            "liveBroadcastBindingNotAllowed",
            "The broadcast cannot be bound in its current state.",
        );
    }
    match stream_id {
        Some(sid) => {
            b.resource["contentDetails"]["boundStreamId"] = json!(sid);
            b.resource["contentDetails"]["boundStreamLastUpdateTimeMs"] = json!(rfc3339_now());
            b.life = "ready".into();
        }
        None => {
            if let Some(cd) = b.resource["contentDetails"].as_object_mut() {
                cd.remove("boundStreamId");
            }
            b.life = "created".into();
        }
    }
    b.resource["status"]["lifeCycleStatus"] = json!(b.life);
    Json(b.resource.clone()).into_response()
}

fn list_response(kind: &str, items: Vec<Value>) -> Response {
    Json(json!({"kind": kind, "etag": "e",
        "pageInfo": {"totalResults": items.len(), "resultsPerPage": 5}, "items": items}))
    .into_response()
}

fn streams_list(s: &FakeState, q: &HashMap<String, String>) -> Response {
    if !parts_ok(q, &["id", "snippet", "cdn", "contentDetails", "status"]) {
        return bad_part();
    }
    let ids: Option<Vec<&str>> = q.get("id").map(|v| v.split(',').collect());
    let mine = q.get("mine").map(String::as_str) == Some("true");
    if ids.is_some() == mine {
        return api_error(
            400,
            "youtube.parameter",
            "incompatibleParameters",
            "Exactly one of id or mine is required.",
        );
    }
    let items = s
        .streams
        .iter()
        .filter(|(id, st)| match &ids {
            Some(ids) => ids.contains(&id.as_str()),
            // Non-reusable streams are not returned by mine=true.
            None => st.resource["contentDetails"]["isReusable"] != false,
        })
        .map(|(_, st)| st.resource.clone())
        .collect();
    list_response("youtube#liveStreamListResponse", items)
}

fn broadcasts_list(s: &FakeState, q: &HashMap<String, String>) -> Response {
    if !parts_ok(q, &["id", "snippet", "contentDetails", "status"]) {
        return bad_part();
    }
    let ids: Option<Vec<&str>> = q.get("id").map(|v| v.split(',').collect());
    let filters = [
        ids.is_some(),
        q.contains_key("mine"),
        q.contains_key("broadcastStatus"),
    ];
    if filters.iter().filter(|f| **f).count() != 1 {
        return api_error(
            400,
            "youtube.parameter",
            "incompatibleParameters",
            "Exactly one filter is required.",
        );
    }
    let items = s
        .broadcasts
        .iter()
        .filter(|(id, _)| ids.as_ref().is_none_or(|ids| ids.contains(&id.as_str())))
        .map(|(_, b)| b.resource.clone())
        .collect();
    list_response("youtube#liveBroadcastListResponse", items)
}

fn transition(s: &mut FakeState, q: &HashMap<String, String>, now: Instant) -> Response {
    if !parts_ok(q, &["id", "snippet", "contentDetails", "status"]) {
        return bad_part();
    }
    let d = "youtube.liveBroadcast";
    let help = "https://developers.google.com/youtube/v3/live/docs/liveBroadcasts/transition";
    let _ = help;
    let Some(target) = q.get("broadcastStatus").filter(|v| !v.is_empty()).cloned() else {
        return api_error(
            400,
            d,
            "statusRequired",
            "The broadcastStatus parameter is required.",
        );
    };
    let Some(id) = q.get("id").filter(|v| !v.is_empty()).cloned() else {
        return api_error(400, d, "idRequired", "The id parameter is required.");
    };
    let starting = s.starting_delay;
    let (life, pending, bound, monitor) = match s.broadcasts.iter().find(|(b, _)| *b == id) {
        Some((_, b)) => (
            b.life.clone(),
            b.pending.as_ref().map(|(t, _)| t.clone()),
            b.resource["contentDetails"]["boundStreamId"]
                .as_str()
                .map(str::to_string),
            b.resource["contentDetails"]["monitorStream"]["enableMonitorStream"]
                .as_bool()
                .unwrap_or(true),
        ),
        None => return api_error(404, d, "liveBroadcastNotFound", "Broadcast not found."),
    };
    let redundant = || {
        api_error(
            403,
            d,
            "redundantTransition",
            "The broadcast is already in the requested status or processing to the requested status.",
        )
    };
    let invalid = || {
        api_error(
            403,
            d,
            "invalidTransition",
            "The broadcast can't transition from its current status to the requested status.",
        )
    };
    let inactive = || {
        api_error(
            403,
            d,
            "errorStreamInactive",
            "The requested transition is not allowed when the stream that is bound to the broadcast is inactive.",
        )
    };
    let active = bound.as_deref().is_some_and(|sid| s.stream_active(sid));
    let (intermediate, final_state) = match target.as_str() {
        "testing" => {
            if life == "testing" || pending.as_deref() == Some("testing") {
                return redundant();
            }
            if life != "ready" || !monitor {
                return invalid();
            }
            if !active {
                return inactive();
            }
            ("testStarting", "testing")
        }
        "live" => {
            if life == "live" || pending.as_deref() == Some("live") {
                return redundant();
            }
            let allowed = life == "testing" || (life == "ready" && !monitor);
            if !allowed {
                return invalid();
            }
            if !active {
                return inactive();
            }
            ("liveStarting", "live")
        }
        "complete" => {
            if life == "complete" {
                return redundant();
            }
            if !matches!(life.as_str(), "testing" | "live" | "liveStarting") {
                return invalid();
            }
            ("complete", "complete")
        }
        _ => return api_error(400, d, "invalidValue", "Invalid value for broadcastStatus."),
    };
    let b = s.broadcast_mut(&id).unwrap();
    if final_state == "complete" {
        b.pending = None;
        b.life = "complete".into();
        b.resource["snippet"]["actualEndTime"] = json!(rfc3339_now());
        b.resource["status"]["recordingStatus"] = json!("recorded");
    } else {
        b.life = intermediate.into();
        b.pending = Some((final_state.into(), now + starting));
    }
    b.resource["status"]["lifeCycleStatus"] = json!(b.life);
    Json(b.resource.clone()).into_response()
}

fn broadcast_delete(s: &mut FakeState, q: &HashMap<String, String>) -> Response {
    let d = "youtube.liveBroadcast";
    let id = q.get("id").cloned().unwrap_or_default();
    let Some(pos) = s.broadcasts.iter().position(|(b, _)| *b == id) else {
        return api_error(404, d, "liveBroadcastNotFound", "Broadcast not found.");
    };
    if matches!(
        s.broadcasts[pos].1.life.as_str(),
        "live" | "liveStarting" | "testing" | "testStarting"
    ) {
        return api_error(
            403,
            d,
            "liveBroadcastDeletionNotAllowed",
            "The broadcast cannot be deleted while it is live or testing.",
        );
    }
    s.broadcasts.remove(pos);
    StatusCode::NO_CONTENT.into_response()
}

fn stream_delete(s: &mut FakeState, q: &HashMap<String, String>) -> Response {
    let d = "youtube.liveStream";
    let id = q.get("id").cloned().unwrap_or_default();
    let Some(pos) = s.streams.iter().position(|(x, _)| *x == id) else {
        return api_error(404, d, "liveStreamNotFound", "Stream not found.");
    };
    let bound_open = s.broadcasts.iter().any(|(_, b)| {
        b.resource["contentDetails"]["boundStreamId"].as_str() == Some(id.as_str())
            && b.life != "complete"
    });
    if bound_open {
        return api_error(
            403,
            d,
            "liveStreamDeletionNotAllowed",
            "The stream is bound to a broadcast that has still not completed.",
        );
    }
    s.streams.remove(pos);
    StatusCode::NO_CONTENT.into_response()
}

/// Streamify's side of the wiring: its YouTube settings pointing at this fake, and the
/// nginx-rtmp that plays YouTube's ingestion.
impl FakeGoogle {
    /// The server's YouTube settings for this fake (client credentials, the four endpoint
    /// URLs), read through the same lookup as the environment, with `public_url` as the
    /// server's address and a 10 s HTTP timeout.
    pub fn youtube_config(&self, public_url: &str) -> streamify::youtube::YouTubeConfig {
        let vars = [
            ("STREAMIFY_GOOGLE_CLIENT_ID", self.client_id()),
            ("STREAMIFY_GOOGLE_CLIENT_SECRET", self.client_secret()),
            ("STREAMIFY_PUBLIC_URL", public_url.to_string()),
            ("STREAMIFY_GOOGLE_AUTH_URL", self.auth_url()),
            ("STREAMIFY_GOOGLE_TOKEN_URL", self.token_url()),
            ("STREAMIFY_GOOGLE_REVOKE_URL", self.revoke_url()),
            ("STREAMIFY_YOUTUBE_API_URL", self.api_url()),
        ];
        let mut config = streamify::youtube::YouTubeConfig::from_lookup("http://unused", |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        });
        config.http_timeout = Duration::from_secs(10);
        config
    }

    /// Starts nginx-rtmp (plain + TLS front) whose publish callbacks come to this fake, and
    /// makes it the ingestion address of every stream the fake creates.
    pub fn start_ingestion(&self) -> streamify_testsupport::Nginx {
        use streamify_testsupport::{Nginx, NginxOptions};
        let nginx = tokio::task::block_in_place(|| {
            Nginx::start(NginxOptions {
                tls: true,
                on_publish: Some(self.on_publish_url()),
                on_publish_done: Some(self.on_publish_done_url()),
                ..Default::default()
            })
        });
        self.set_ingestion(
            &format!("rtmp://127.0.0.1:{}/live2", nginx.rtmp_port),
            &format!("rtmps://127.0.0.1:{}/live2", nginx.rtmps_port.unwrap()),
        );
        nginx
    }
}
