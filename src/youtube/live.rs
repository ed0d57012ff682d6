//! The YouTube Live Streaming API client and the broadcast driver.
//!
//! [`LiveApi`] makes one call per method, sends `Authorization: Bearer`, refreshes the token
//! and retries once on a 401, counts the call's quota units for the account (every request
//! costs, even a refused one: 50 for inserts, bind, transitions and deletes, 1 for lists) and
//! maps Google's error (`error.errors[0].reason`) to its own [`ErrorCode`] with a message a
//! person can act on.
//!
//! [`BroadcastDriver`] does the whole sequence against an [`RtmpPublish`] the server plugs in:
//!
//! ```text
//! start: liveBroadcasts.insert -> liveStreams.insert -> liveBroadcasts.bind
//!        -> publish RTMP(S) to ingestion address + "/" + streamName
//!        -> poll liveStreams.list until streamStatus == active (bounded, else
//!           youtube_stream_inactive with the health issues YouTube reported)
//!        -> liveBroadcasts.transition(live) (redundantTransition = done; liveStarting is
//!           waited through by polling liveBroadcasts.list)
//!        any failure before live: stop publishing, delete the broadcast and the stream
//! live:  health() reads healthStatus (call it every DriverTiming::health_interval)
//! stop:  liveBroadcasts.transition(complete) (redundantTransition = done), then stop RTMP
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::oauth::without_url;
use super::{clip, read_limited, YouTube};
use crate::error::{Error, ErrorCode, Result};
use crate::store::BroadcastRecord;

const MAX_API_RESPONSE: usize = 1 << 20;
/// Quota units of a write call (insert, bind, transition, update, delete).
pub const WRITE_COST: i64 = 50;
/// Quota units of a list call.
pub const LIST_COST: i64 = 1;

/// How the driver waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverTiming {
    /// Between two `liveStreams.list` polls while waiting for `active`.
    pub active_poll_interval: Duration,
    /// How long the stream may take to become `active` after the publish started.
    pub active_timeout: Duration,
    /// Between two `liveBroadcasts.list` polls while a transition is in progress.
    pub transition_poll_interval: Duration,
    /// How long `liveStarting` may last.
    pub transition_timeout: Duration,
    /// How often to read `healthStatus` while live (1 quota unit each).
    pub health_interval: Duration,
    /// How often the server looks for broadcasts that no running stream uses any more
    /// (their clean-up failed, e.g. for lack of quota, or outlasted the stop timeout) and
    /// ends them.
    pub cleanup_interval: Duration,
    /// A broadcast must have been left unchanged this long before that clean-up touches it.
    pub cleanup_min_age: Duration,
}

impl Default for DriverTiming {
    fn default() -> Self {
        DriverTiming {
            active_poll_interval: Duration::from_secs(1),
            active_timeout: Duration::from_secs(30),
            transition_poll_interval: Duration::from_secs(1),
            transition_timeout: Duration::from_secs(60),
            health_interval: Duration::from_secs(30),
            cleanup_interval: Duration::from_secs(600),
            cleanup_min_age: Duration::from_secs(60),
        }
    }
}

/// A failed Google API call: HTTP status, Google's reason and the mapped [`Error`].
#[derive(Debug, Clone)]
pub struct GoogleError {
    /// HTTP status (0 when Google was not reached).
    pub status: u16,
    /// `error.errors[0].reason`.
    pub reason: Option<String>,
    /// The error a person sees.
    pub error: Error,
}

impl From<GoogleError> for Error {
    fn from(e: GoogleError) -> Error {
        e.error
    }
}

impl GoogleError {
    fn new(status: u16, reason: Option<String>, error: Error) -> GoogleError {
        GoogleError {
            status,
            reason,
            error,
        }
    }

    fn unreachable(call: &str, why: impl std::fmt::Display) -> GoogleError {
        GoogleError::new(
            0,
            None,
            Error::new(
                ErrorCode::YoutubeUnreachable,
                format!("YouTube could not be reached ({call}: {why}); check the server's internet connection and try again"),
            ),
        )
    }

    /// Maps a non-2xx answer of `call` (Google's error envelope) to its code and message.
    pub fn from_response(status: u16, body: &[u8], call: &str) -> GoogleError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let first = parsed
            .as_ref()
            .and_then(|v| v["error"]["errors"].as_array())
            .and_then(|a| a.first());
        let reason = first
            .and_then(|e| e["reason"].as_str())
            .map(|r| clip(r, 64));
        let google_message = first
            .and_then(|e| e["message"].as_str())
            .or_else(|| parsed.as_ref().and_then(|v| v["error"]["message"].as_str()))
            .map(|m| clip(m, 200))
            .unwrap_or_default();
        let (code, message) = match reason.as_deref().unwrap_or("") {
            "liveStreamingNotEnabled" | "insufficientLivePermissions" | "livePermissionBlocked" => (
                ErrorCode::YoutubeLiveStreamingNotEnabled,
                "Live streaming is not enabled on this YouTube channel. Enable it in YouTube Studio \
                 (Create > Go live, or https://www.youtube.com/features; the channel must be \
                 verified). The first activation can take up to 24 hours; try again after that."
                    .to_string(),
            ),
            "quotaExceeded" | "dailyLimitExceeded" => (
                ErrorCode::YoutubeQuotaExceeded,
                "The YouTube API quota of this server's Google Cloud project is used up for today. \
                 It resets at midnight Pacific time; a higher quota can be requested in the Google \
                 Cloud console (APIs & Services > YouTube Data API v3 > Quotas)."
                    .to_string(),
            ),
            "insufficientPermissions" | "insufficientScope" => (
                ErrorCode::YoutubeMissingScope,
                "Streamify was not granted \"Manage your YouTube account\". Disconnect the channel, \
                 connect it again and leave that permission ticked on Google's consent screen."
                    .to_string(),
            ),
            "authError" | "unauthorized" => (
                ErrorCode::YoutubeReauthRequired,
                "YouTube rejected Streamify's credentials even after a refresh. Reconnect the \
                 channel at /auth/google/start."
                    .to_string(),
            ),
            "errorStreamInactive" => (
                ErrorCode::YoutubeStreamInactive,
                "YouTube does not receive the stream, so the broadcast cannot change state. Check \
                 that media is being published and that the server reaches YouTube's ingestion."
                    .to_string(),
            ),
            r @ ("invalidTransition" | "redundantTransition") => (
                ErrorCode::YoutubeInvalidTransition,
                format!(
                    "YouTube refused the broadcast transition ({r}: {google_message}). Look at the \
                     broadcast in YouTube Studio; end it there if it is stuck."
                ),
            ),
            "rateLimitExceeded" | "userRequestsExceedRateLimit" => (
                ErrorCode::YoutubeApiError,
                "YouTube is rate limiting this account's requests. Wait a minute and try again."
                    .to_string(),
            ),
            "userBroadcastsExceedLimit" | "concurrentBroadcastsExceedLimit" => (
                ErrorCode::YoutubeApiError,
                "The channel has too many broadcasts (scheduled or live). End or delete some in \
                 YouTube Studio and try again."
                    .to_string(),
            ),
            "backendError" | "internalError" | "errorExecutingTransition" => (
                ErrorCode::YoutubeUnreachable,
                format!("YouTube failed internally during {call}; try again in a moment."),
            ),
            _ if status >= 500 => (
                ErrorCode::YoutubeUnreachable,
                format!("YouTube answered HTTP {status} to {call}; try again in a moment."),
            ),
            other => (
                ErrorCode::YoutubeApiError,
                format!(
                    "YouTube refused {call} (HTTP {status}{}{}).",
                    if other.is_empty() { "" } else { ", " },
                    if other.is_empty() {
                        String::new()
                    } else {
                        format!("{other}: {google_message}")
                    }
                ),
            ),
        };
        GoogleError::new(status, reason, Error::new(code, message))
    }

    fn is(&self, reason: &str) -> bool {
        self.reason.as_deref() == Some(reason)
    }
}

/// Broadcast privacy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Privacy {
    /// Only the owner (the default).
    #[default]
    Private,
    /// Anyone with the link.
    Unlisted,
    /// Everyone.
    Public,
}

impl Privacy {
    /// Google's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Privacy::Private => "private",
            Privacy::Unlisted => "unlisted",
            Privacy::Public => "public",
        }
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastRequest {
    /// Title, 1-100 characters (longer titles are cut).
    pub title: String,
    /// Description, up to 5000 characters (longer ones are cut).
    pub description: String,
    /// Privacy (default private).
    pub privacy: Privacy,
    /// The Streamify stream it serves (kept with the broadcast record).
    pub owner_stream: Option<String>,
}

/// One configuration issue YouTube reports about the incoming stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthIssue {
    /// `gopSizeLong`, `bitrateLow`...
    #[serde(rename = "type")]
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// Short reason.
    pub reason: String,
    /// Longer description.
    pub description: String,
}

/// `liveStreams.list` status of one stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamStatus {
    /// `created`, `ready`, `active`, `inactive`, `error`.
    pub stream_status: String,
    /// `good`, `ok`, `bad`, `noData`, `revoked`.
    pub health: String,
    /// Configuration issues.
    pub issues: Vec<HealthIssue>,
}

impl StreamStatus {
    fn from_resource(item: &Value) -> StreamStatus {
        let status = &item["status"];
        let health = &status["healthStatus"];
        let issues = health["configurationIssues"]
            .as_array()
            .map(|a| {
                a.iter()
                    .take(50)
                    .map(|i| HealthIssue {
                        kind: clip(i["type"].as_str().unwrap_or_default(), 64),
                        severity: clip(i["severity"].as_str().unwrap_or_default(), 16),
                        reason: clip(i["reason"].as_str().unwrap_or_default(), 200),
                        description: clip(i["description"].as_str().unwrap_or_default(), 500),
                    })
                    .collect()
            })
            .unwrap_or_default();
        StreamStatus {
            stream_status: clip(status["streamStatus"].as_str().unwrap_or("unknown"), 32),
            health: clip(health["status"].as_str().unwrap_or("noData"), 32),
            issues,
        }
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "stream status {}, health {}",
            self.stream_status, self.health
        );
        if !self.issues.is_empty() {
            let issues: Vec<String> = self
                .issues
                .iter()
                .map(|i| format!("{} ({}): {}", i.kind, i.severity, i.reason))
                .collect();
            s.push_str(&format!("; issues: {}", issues.join("; ")));
        }
        s
    }
}

/// Calls of the Live Streaming API for one account.
#[derive(Debug, Clone)]
pub struct LiveApi {
    yt: Arc<YouTube>,
    account_id: String,
}

impl LiveApi {
    /// The API for `account_id`.
    pub fn new(yt: Arc<YouTube>, account_id: impl Into<String>) -> LiveApi {
        LiveApi {
            yt,
            account_id: account_id.into(),
        }
    }

    /// The account.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        cost: i64,
        name: &str,
    ) -> Result<Option<Value>, GoogleError> {
        let mut url =
            url::Url::parse(&format!("{}/{path}", self.yt.config.api_url)).map_err(|e| {
                GoogleError::new(
                    0,
                    None,
                    Error::new(
                        ErrorCode::YoutubeNotConfigured,
                        format!("STREAMIFY_YOUTUBE_API_URL is not a URL: {e}"),
                    ),
                )
            })?;
        url.query_pairs_mut().extend_pairs(query);
        let mut rejected: Option<String> = None;
        loop {
            let token = self
                .yt
                .access_token(&self.account_id, rejected.as_deref())
                .await
                .map_err(|e| GoogleError::new(0, None, e))?;
            self.yt.count_quota(&self.account_id, cost);
            let mut request = self
                .yt
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token);
            request = match body {
                Some(body) => request.json(body),
                None if method == reqwest::Method::POST => request
                    .header(reqwest::header::CONTENT_LENGTH, "0")
                    .body(""),
                None => request,
            };
            let response = request
                .send()
                .await
                .map_err(|e| GoogleError::unreachable(name, without_url(e)))?;
            let status = response.status().as_u16();
            let bytes = read_limited(response, MAX_API_RESPONSE)
                .await
                .map_err(|e| GoogleError::unreachable(name, e))?;
            if status == 401 && rejected.is_none() {
                tracing::debug!(call = name, "401 from YouTube: refreshing the token once");
                rejected = Some(token);
                continue;
            }
            if !(200..300).contains(&status) {
                let err = GoogleError::from_response(status, &bytes, name);
                tracing::warn!(call = name, status, reason = ?err.reason, "YouTube API error");
                return Err(err);
            }
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| GoogleError::unreachable(name, format!("unusable answer: {e}")));
        }
    }

    /// `liveBroadcasts.insert`: scheduled now, not made for kids, auto start/stop off,
    /// monitor stream off (so `ready -> live` is allowed).
    pub async fn insert_broadcast(&self, req: &BroadcastRequest) -> Result<Value, GoogleError> {
        let title = clip_plain(&req.title, 100);
        let title = if title.trim().is_empty() {
            "Streamify live".to_string()
        } else {
            title
        };
        let body = json!({
            "snippet": {
                "title": title,
                "description": clip_plain(&req.description, 5000),
                "scheduledStartTime": super::rfc3339(crate::store::now_ms()),
            },
            "status": {
                "privacyStatus": req.privacy.as_str(),
                "selfDeclaredMadeForKids": false,
            },
            "contentDetails": {
                "enableAutoStart": false,
                "enableAutoStop": false,
                "enableDvr": true,
                "latencyPreference": "normal",
                "monitorStream": {"enableMonitorStream": false},
            },
        });
        self.call(
            reqwest::Method::POST,
            "liveBroadcasts",
            &[("part", "snippet,status,contentDetails")],
            Some(&body),
            WRITE_COST,
            "liveBroadcasts.insert",
        )
        .await
        .and_then(|v| required(v, "liveBroadcasts.insert"))
    }

    /// `liveStreams.insert`: rtmp, variable resolution and frame rate, not reusable.
    pub async fn insert_stream(&self, title: &str) -> Result<Value, GoogleError> {
        let body = json!({
            "snippet": {"title": clip_plain(title, 128)},
            "cdn": {"ingestionType": "rtmp", "resolution": "variable", "frameRate": "variable"},
            "contentDetails": {"isReusable": false},
        });
        self.call(
            reqwest::Method::POST,
            "liveStreams",
            &[("part", "snippet,cdn,contentDetails,status")],
            Some(&body),
            WRITE_COST,
            "liveStreams.insert",
        )
        .await
        .and_then(|v| required(v, "liveStreams.insert"))
    }

    /// `liveBroadcasts.bind`.
    pub async fn bind(&self, broadcast_id: &str, stream_id: &str) -> Result<Value, GoogleError> {
        self.call(
            reqwest::Method::POST,
            "liveBroadcasts/bind",
            &[
                ("id", broadcast_id),
                ("streamId", stream_id),
                ("part", "id,snippet,contentDetails,status"),
            ],
            None,
            WRITE_COST,
            "liveBroadcasts.bind",
        )
        .await
        .and_then(|v| required(v, "liveBroadcasts.bind"))
    }

    /// `liveStreams.list id=...`: `None` when YouTube does not know the stream.
    pub async fn stream(&self, stream_id: &str) -> Result<Option<Value>, GoogleError> {
        let list = self
            .call(
                reqwest::Method::GET,
                "liveStreams",
                &[("part", "id,snippet,cdn,status"), ("id", stream_id)],
                None,
                LIST_COST,
                "liveStreams.list",
            )
            .await
            .and_then(|v| required(v, "liveStreams.list"))?;
        Ok(single_item(&list))
    }

    /// `liveBroadcasts.list id=...`: `None` when YouTube does not know the broadcast.
    pub async fn broadcast(&self, broadcast_id: &str) -> Result<Option<Value>, GoogleError> {
        let list = self
            .call(
                reqwest::Method::GET,
                "liveBroadcasts",
                &[
                    ("part", "id,snippet,contentDetails,status"),
                    ("id", broadcast_id),
                    ("broadcastType", "all"),
                ],
                None,
                LIST_COST,
                "liveBroadcasts.list",
            )
            .await
            .and_then(|v| required(v, "liveBroadcasts.list"))?;
        Ok(single_item(&list))
    }

    /// `liveBroadcasts.transition` to `testing`, `live` or `complete`.
    pub async fn transition(&self, broadcast_id: &str, to: &str) -> Result<Value, GoogleError> {
        self.call(
            reqwest::Method::POST,
            "liveBroadcasts/transition",
            &[
                ("broadcastStatus", to),
                ("id", broadcast_id),
                ("part", "id,status"),
            ],
            None,
            WRITE_COST,
            "liveBroadcasts.transition",
        )
        .await
        .and_then(|v| required(v, "liveBroadcasts.transition"))
    }

    /// `liveBroadcasts.delete`.
    pub async fn delete_broadcast(&self, broadcast_id: &str) -> Result<(), GoogleError> {
        self.call(
            reqwest::Method::DELETE,
            "liveBroadcasts",
            &[("id", broadcast_id)],
            None,
            WRITE_COST,
            "liveBroadcasts.delete",
        )
        .await
        .map(drop)
    }

    /// `liveStreams.delete`.
    pub async fn delete_stream(&self, stream_id: &str) -> Result<(), GoogleError> {
        self.call(
            reqwest::Method::DELETE,
            "liveStreams",
            &[("id", stream_id)],
            None,
            WRITE_COST,
            "liveStreams.delete",
        )
        .await
        .map(drop)
    }
}

fn required(value: Option<Value>, call: &str) -> Result<Value, GoogleError> {
    value.ok_or_else(|| GoogleError::unreachable(call, "empty answer"))
}

fn single_item(list: &Value) -> Option<Value> {
    match list["items"].as_array() {
        Some(items) if items.len() == 1 => Some(items[0].clone()),
        _ => None,
    }
}

/// Cuts to `max` characters and drops `<` and `>` (YouTube refuses them in titles).
fn clip_plain(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| *c != '<' && *c != '>')
        .take(max)
        .collect()
}

fn str_field(v: &Value, pointer: &str, call: &str) -> Result<String, GoogleError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .map(str::to_string)
        .ok_or_else(|| GoogleError::unreachable(call, format!("answer without {pointer}")))
}

impl YouTube {
    /// At start-up, after a crash: ends what the previous run left on YouTube. A broadcast
    /// that was live is transitioned to `complete`; one that never went live is deleted with
    /// its stream. Accounts that must reconnect are skipped (marked `abandoned`); other
    /// failures are kept for the next start. Returns the broadcast ids handled.
    pub async fn end_interrupted_broadcasts(self: &Arc<Self>) -> Result<Vec<String>> {
        let records = self.store.open_broadcasts()?;
        self.end_broadcasts(records, "a restart").await
    }

    /// While running: ends the open broadcasts whose stream is not running any more (per
    /// `running`), left unchanged for [`DriverTiming::cleanup_min_age`]: a clean-up that
    /// failed (a delete refused for lack of quota, Google unreachable) or outlasted the stop
    /// timeout. Returns the broadcast ids handled; the others are tried again next time.
    pub async fn end_orphaned_broadcasts(
        self: &Arc<Self>,
        running: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let age = i64::try_from(self.config().timing.cleanup_min_age.as_millis()).unwrap_or(0);
        let records = self
            .store
            .open_broadcasts_untouched_since(crate::store::now_ms().saturating_sub(age))?
            .into_iter()
            .filter(|r| !r.owner_stream.as_deref().is_some_and(&running))
            .collect();
        self.end_broadcasts(records, "a failed clean-up").await
    }

    async fn end_broadcasts(
        self: &Arc<Self>,
        records: Vec<BroadcastRecord>,
        after: &str,
    ) -> Result<Vec<String>> {
        let mut handled = Vec::new();
        for record in records {
            let api = LiveApi::new(self.clone(), &record.account_id);
            let id = &record.broadcast_id;
            let result = if record.state == "live" {
                match api.transition(id, "complete").await {
                    Ok(_) => Ok("complete"),
                    Err(e) if e.is("redundantTransition") || e.is("liveBroadcastNotFound") => {
                        Ok("complete")
                    }
                    Err(e) => Err(e),
                }
            } else {
                let broadcast = match api.delete_broadcast(id).await {
                    Err(e) if !e.is("liveBroadcastNotFound") => Err(e),
                    _ => Ok(()),
                };
                let stream = match &record.stream_id {
                    Some(sid) => match api.delete_stream(sid).await {
                        Err(e) if !e.is("liveStreamNotFound") => Err(e),
                        _ => Ok(()),
                    },
                    None => Ok(()),
                };
                broadcast.and(stream).map(|()| "deleted")
            };
            match result {
                Ok(state) => {
                    self.store.set_broadcast_state(id, state)?;
                    tracing::info!(broadcast = %id, state, "ended a broadcast left by {after}");
                    handled.push(id.clone());
                }
                Err(e)
                    if matches!(
                        e.error.code,
                        ErrorCode::YoutubeReauthRequired | ErrorCode::YoutubeNotConnected
                    ) =>
                {
                    self.store.set_broadcast_state(id, "abandoned")?;
                    tracing::warn!(broadcast = %id, "broadcast left by {after} stays on YouTube: the account must reconnect");
                }
                Err(e) => {
                    tracing::warn!(broadcast = %id, error = %e.error, "broadcast left by {after} not ended yet; retrying later");
                }
            }
        }
        Ok(handled)
    }
}

/// Publishes the media to an RTMP(S) URL; the server's output implements it.
pub trait RtmpPublish: Send {
    /// Starts publishing to `url` (it contains the stream key: never log it). Resolves once
    /// the publish is accepted (or failed); media keeps flowing after it returns.
    fn start_publish(&mut self, url: &str) -> impl Future<Output = Result<()>> + Send;
    /// Stops publishing: FCUnpublish, deleteStream, close.
    fn stop_publish(&mut self) -> impl Future<Output = ()> + Send;
}

/// What the driver did, for the stream's state and event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum YoutubeEvent {
    /// `liveBroadcasts.insert` done.
    BroadcastCreated {
        /// Video id.
        broadcast_id: String,
        /// `https://www.youtube.com/watch?v=...`.
        watch_url: String,
    },
    /// `liveStreams.insert` done.
    StreamCreated {
        /// liveStream id.
        stream_id: String,
    },
    /// `bind` done.
    Bound,
    /// RTMP publish to the ingestion address accepted.
    Publishing,
    /// YouTube reports the stream `active`.
    StreamActive,
    /// The broadcast is live.
    Live,
    /// A health reading while live.
    Health(StreamStatus),
    /// `transition(complete)` done (or already complete).
    Completed,
    /// What was created was removed after a failure before going live.
    CleanedUp,
}

/// A broadcast that is live.
#[derive(Clone)]
pub struct LiveSession {
    /// The account.
    pub account_id: String,
    /// The broadcast (video) id.
    pub broadcast_id: String,
    /// The bound liveStream id.
    pub stream_id: String,
    /// `https://www.youtube.com/watch?v=...`.
    pub watch_url: String,
    ingest_url: String,
}

impl std::fmt::Debug for LiveSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSession")
            .field("account_id", &self.account_id)
            .field("broadcast_id", &self.broadcast_id)
            .field("stream_id", &self.stream_id)
            .field("watch_url", &self.watch_url)
            .finish_non_exhaustive()
    }
}

impl LiveSession {
    /// The ingestion URL with the stream key (for reconnects). Never log it.
    pub fn ingest_url(&self) -> &str {
        &self.ingest_url
    }
}

/// Takes a broadcast live and ends it.
#[derive(Debug, Clone)]
pub struct BroadcastDriver {
    api: LiveApi,
    timing: DriverTiming,
    events: Option<tokio::sync::mpsc::UnboundedSender<YoutubeEvent>>,
}

#[derive(Default)]
struct Created {
    broadcast_id: Option<String>,
    stream_id: Option<String>,
    publishing: bool,
}

impl BroadcastDriver {
    /// A driver for `account_id` with the service's configured timing.
    pub fn new(yt: Arc<YouTube>, account_id: impl Into<String>) -> BroadcastDriver {
        let timing = yt.config.timing.clone();
        BroadcastDriver {
            api: LiveApi::new(yt, account_id),
            timing,
            events: None,
        }
    }

    /// Sends every [`YoutubeEvent`] to `events`.
    pub fn with_events(mut self, events: tokio::sync::mpsc::UnboundedSender<YoutubeEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// The API calls it uses.
    pub fn api(&self) -> &LiveApi {
        &self.api
    }

    fn emit(&self, event: YoutubeEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }

    fn store(&self) -> &crate::store::Store {
        self.api.yt.store()
    }

    /// Creates the broadcast and stream, binds them, publishes, waits until YouTube receives
    /// the stream and goes live. On failure everything created is removed again.
    pub async fn start<P: RtmpPublish>(
        &self,
        req: &BroadcastRequest,
        publisher: &mut P,
    ) -> Result<LiveSession> {
        let mut created = Created::default();
        match self.start_inner(req, publisher, &mut created).await {
            Ok(session) => Ok(session),
            Err(e) => {
                tracing::warn!(code = %e.code, "YouTube start failed; cleaning up");
                self.clean_up(&created, publisher).await;
                Err(e)
            }
        }
    }

    async fn start_inner<P: RtmpPublish>(
        &self,
        req: &BroadcastRequest,
        publisher: &mut P,
        created: &mut Created,
    ) -> Result<LiveSession> {
        let broadcast = self.api.insert_broadcast(req).await?;
        let broadcast_id = str_field(&broadcast, "/id", "liveBroadcasts.insert")?;
        created.broadcast_id = Some(broadcast_id.clone());
        let watch_url = format!("https://www.youtube.com/watch?v={broadcast_id}");
        let mut record = BroadcastRecord {
            broadcast_id: broadcast_id.clone(),
            account_id: self.api.account_id.clone(),
            stream_id: None,
            ingest_url: None,
            owner_stream: req.owner_stream.clone(),
            state: "created".into(),
        };
        self.store().save_broadcast(&record)?;
        self.emit(YoutubeEvent::BroadcastCreated {
            broadcast_id: broadcast_id.clone(),
            watch_url: watch_url.clone(),
        });

        let stream = self.api.insert_stream(&req.title).await?;
        let stream_id = str_field(&stream, "/id", "liveStreams.insert")?;
        created.stream_id = Some(stream_id.clone());
        let info = "/cdn/ingestionInfo";
        let stream_name = str_field(&stream, &format!("{info}/streamName"), "liveStreams.insert")?;
        let rtmps = str_field(
            &stream,
            &format!("{info}/rtmpsIngestionAddress"),
            "liveStreams.insert",
        );
        let rtmp = str_field(
            &stream,
            &format!("{info}/ingestionAddress"),
            "liveStreams.insert",
        );
        let address = match (self.api.yt.config.prefer_rtmps, rtmps, rtmp) {
            (true, Ok(a), _) | (false, _, Ok(a)) | (_, Ok(a), Err(_)) | (_, Err(_), Ok(a)) => a,
            (_, Err(e), Err(_)) => return Err(e.into()),
        };
        let ingest_url = format!("{}/{stream_name}", address.trim_end_matches('/'));
        record.stream_id = Some(stream_id.clone());
        record.ingest_url = Some(ingest_url.clone());
        self.store().save_broadcast(&record)?;
        self.emit(YoutubeEvent::StreamCreated {
            stream_id: stream_id.clone(),
        });

        self.api.bind(&broadcast_id, &stream_id).await?;
        self.store().set_broadcast_state(&broadcast_id, "bound")?;
        self.emit(YoutubeEvent::Bound);

        created.publishing = true;
        publisher.start_publish(&ingest_url).await?;
        self.emit(YoutubeEvent::Publishing);

        self.wait_active(&stream_id).await?;
        self.emit(YoutubeEvent::StreamActive);

        self.go_live(&broadcast_id, &stream_id).await?;
        self.store().set_broadcast_state(&broadcast_id, "live")?;
        self.emit(YoutubeEvent::Live);
        Ok(LiveSession {
            account_id: self.api.account_id.clone(),
            broadcast_id,
            stream_id,
            watch_url,
            ingest_url,
        })
    }

    async fn wait_active(&self, stream_id: &str) -> Result<()> {
        let started = Instant::now();
        let deadline = started + self.timing.active_timeout;
        loop {
            let status = self
                .api
                .stream(stream_id)
                .await?
                .map(|item| StreamStatus::from_resource(&item));
            let summary = match &status {
                Some(s) if s.stream_status == "active" => return Ok(()),
                Some(s) => s.summary(),
                None => "YouTube no longer lists the stream".to_string(),
            };
            if Instant::now() + self.timing.active_poll_interval > deadline {
                return Err(Error::new(
                    ErrorCode::YoutubeStreamInactive,
                    format!(
                        "YouTube did not receive the stream within {} s ({summary}). Check that \
                         the publisher sends video and audio and that this server can reach \
                         YouTube's ingestion servers (RTMPS, port 443).",
                        self.timing.active_timeout.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(self.timing.active_poll_interval).await;
        }
    }

    async fn go_live(&self, broadcast_id: &str, stream_id: &str) -> Result<()> {
        let mut attempts = 0;
        let status = loop {
            attempts += 1;
            match self.api.transition(broadcast_id, "live").await {
                Ok(b) => break b["status"]["lifeCycleStatus"].as_str().map(str::to_string),
                Err(e) if e.is("redundantTransition") => break None,
                // YouTube may lag a moment behind the active status it just reported.
                Err(e) if e.is("errorStreamInactive") && attempts < 3 => {
                    tokio::time::sleep(self.timing.active_poll_interval).await;
                }
                Err(e) if e.is("errorStreamInactive") => {
                    let health = self
                        .api
                        .stream(stream_id)
                        .await
                        .ok()
                        .flatten()
                        .map(|s| StreamStatus::from_resource(&s).summary())
                        .unwrap_or_default();
                    return Err(Error::new(
                        ErrorCode::YoutubeStreamInactive,
                        format!("{} ({health})", e.error.message),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        };
        if status.as_deref() == Some("live") {
            return Ok(());
        }
        self.wait_lifecycle(broadcast_id, "live").await
    }

    async fn wait_lifecycle(&self, broadcast_id: &str, target: &str) -> Result<()> {
        let deadline = Instant::now() + self.timing.transition_timeout;
        loop {
            let broadcast = self.api.broadcast(broadcast_id).await?.ok_or_else(|| {
                Error::new(
                    ErrorCode::YoutubeApiError,
                    "The broadcast disappeared from YouTube (deleted in YouTube Studio?).",
                )
            })?;
            let status = broadcast["status"]["lifeCycleStatus"]
                .as_str()
                .unwrap_or("unknown");
            if status == target {
                return Ok(());
            }
            if matches!(status, "complete" | "revoked") {
                return Err(Error::new(
                    ErrorCode::YoutubeInvalidTransition,
                    format!("The broadcast became {status} instead of {target}."),
                ));
            }
            if Instant::now() + self.timing.transition_poll_interval > deadline {
                return Err(Error::new(
                    ErrorCode::YoutubeInvalidTransition,
                    format!(
                        "YouTube did not finish the transition to {target} within {} s (still {}).",
                        self.timing.transition_timeout.as_secs(),
                        clip(status, 32)
                    ),
                ));
            }
            tokio::time::sleep(self.timing.transition_poll_interval).await;
        }
    }

    async fn clean_up<P: RtmpPublish>(&self, created: &Created, publisher: &mut P) {
        if created.publishing {
            publisher.stop_publish().await;
        }
        if let Some(id) = &created.broadcast_id {
            match self.api.delete_broadcast(id).await {
                Ok(()) => {
                    let _ = self.store().set_broadcast_state(id, "deleted");
                }
                Err(e) => tracing::warn!(error = %e.error, "could not delete the broadcast"),
            }
        }
        if let Some(id) = &created.stream_id {
            if let Err(e) = self.api.delete_stream(id).await {
                tracing::warn!(error = %e.error, "could not delete the liveStream");
            }
        }
        if created.broadcast_id.is_some() {
            self.emit(YoutubeEvent::CleanedUp);
        }
    }

    /// Reads the stream's health (1 quota unit); call it every
    /// [`DriverTiming::health_interval`] while live and show the issues.
    pub async fn health(&self, session: &LiveSession) -> Result<StreamStatus> {
        let item = self.api.stream(&session.stream_id).await?.ok_or_else(|| {
            Error::new(
                ErrorCode::YoutubeApiError,
                "YouTube no longer lists the broadcast's stream.",
            )
        })?;
        let status = StreamStatus::from_resource(&item);
        self.emit(YoutubeEvent::Health(status.clone()));
        Ok(status)
    }

    /// The whole life of a YouTube destination in one task: [`start`](Self::start), then
    /// [`watch_health`](Self::watch_health) until `stop` turns true, then
    /// [`stop`](Self::stop). A failure while live (for example `youtube_reauth_required`
    /// after the user revoked access) ends the broadcast and the publish and is returned.
    /// Progress goes to the events channel ([`YoutubeEvent::BroadcastCreated`] carries the
    /// watch URL for the stream's API view).
    pub async fn run<P: RtmpPublish>(
        &self,
        req: &BroadcastRequest,
        publisher: &mut P,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<LiveSession> {
        let session = self.start(req, publisher).await?;
        let watched = self.watch_health(&session, stop).await;
        let stopped = self.stop(&session, publisher).await;
        watched.and(stopped).map(|()| session)
    }

    /// Reads the health every [`DriverTiming::health_interval`] (each reading is also sent as
    /// a [`YoutubeEvent::Health`]) until `stop` turns true (`Ok`) or a reading fails with an
    /// error that retrying cannot fix (reauth required, quota exceeded, stream gone: `Err`).
    /// Passing failures (Google unreachable) are logged and retried at the next interval.
    pub async fn watch_health(
        &self,
        session: &LiveSession,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<()> {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.health_interval) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return Ok(());
                    }
                    continue;
                }
            }
            if *stop.borrow() {
                return Ok(());
            }
            match self.health(session).await {
                Ok(_) => {}
                Err(e) if e.code == ErrorCode::YoutubeUnreachable => {
                    tracing::warn!(error = %e, "YouTube health reading failed; retrying later");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends the broadcast (`transition complete`, redundant counts as done), then stops
    /// publishing. Publishing stops even when the transition fails.
    pub async fn stop<P: RtmpPublish>(
        &self,
        session: &LiveSession,
        publisher: &mut P,
    ) -> Result<()> {
        let result = match self.api.transition(&session.broadcast_id, "complete").await {
            Ok(_) => Ok(()),
            Err(e) if e.is("redundantTransition") => Ok(()),
            Err(e) => Err(Error::from(e)),
        };
        publisher.stop_publish().await;
        if result.is_ok() {
            let _ = self
                .store()
                .set_broadcast_state(&session.broadcast_id, "complete");
            self.emit(YoutubeEvent::Completed);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(code: u16, reason: &str) -> Vec<u8> {
        json!({"error": {"code": code, "message": "m", "errors": [
            {"domain": "youtube.liveBroadcast", "reason": reason, "message": "m"}]}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn google_reasons_map_to_their_codes() {
        let cases = [
            (
                403,
                "liveStreamingNotEnabled",
                ErrorCode::YoutubeLiveStreamingNotEnabled,
            ),
            (403, "quotaExceeded", ErrorCode::YoutubeQuotaExceeded),
            (
                403,
                "insufficientPermissions",
                ErrorCode::YoutubeMissingScope,
            ),
            (401, "authError", ErrorCode::YoutubeReauthRequired),
            (403, "errorStreamInactive", ErrorCode::YoutubeStreamInactive),
            (
                403,
                "invalidTransition",
                ErrorCode::YoutubeInvalidTransition,
            ),
            (500, "backendError", ErrorCode::YoutubeUnreachable),
            (400, "invalidTitle", ErrorCode::YoutubeApiError),
        ];
        for (status, reason, code) in cases {
            let e = GoogleError::from_response(status, &envelope(status, reason), "x");
            assert_eq!(e.error.code, code, "{reason}");
            assert_eq!(e.reason.as_deref(), Some(reason));
        }
        let e = GoogleError::from_response(403, &envelope(403, "liveStreamingNotEnabled"), "x");
        assert!(e.error.message.contains("24 hours"));
        // Not an envelope at all.
        let e = GoogleError::from_response(502, b"<html>", "x");
        assert_eq!(e.error.code, ErrorCode::YoutubeUnreachable);
        assert_eq!(e.reason, None);
    }

    #[test]
    fn health_issues_are_read() {
        let item = json!({"status": {"streamStatus": "active", "healthStatus": {
            "status": "bad", "configurationIssues": [{"type": "gopSizeLong", "severity": "error",
            "reason": "Keyframe interval too long", "description": "Use 2 s"}]}}});
        let s = StreamStatus::from_resource(&item);
        assert_eq!(s.stream_status, "active");
        assert_eq!(s.health, "bad");
        assert_eq!(s.issues[0].kind, "gopSizeLong");
        assert!(s.summary().contains("gopSizeLong"));
    }
}
