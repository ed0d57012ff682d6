//! YouTube: Google sign-in (OAuth 2.0 web-server flow with PKCE), the connected accounts with
//! their tokens sealed in the [`Store`], the Live Streaming API client with quota accounting,
//! and the broadcast driver that takes a stream live and ends it.
//!
//! - [`oauth`]: authorization URL, state (random, single use, bound to the browser by a
//!   cookie, 10 minute expiry), PKCE S256, code exchange, refresh (before expiry and once on a
//!   401), revocation. A refresh answered with `invalid_grant` marks the account as needing to
//!   reconnect; its calls then fail with `youtube_reauth_required`.
//! - [`live`]: `liveBroadcasts.*` / `liveStreams.*` calls, each Google error mapped to its own
//!   [`ErrorCode`](crate::error::ErrorCode), and [`live::BroadcastDriver`] (insert, insert, bind,
//!   publish, wait for `active`, transition `live`; on stop transition `complete`).
//! - [`routes`]: `GET /auth/google/start`, `GET /auth/google/callback`,
//!   `GET|DELETE /api/youtube/account`.
//!
//! The facts about Google's endpoints this follows are in `shared/youtube-api.md`.

pub mod live;
pub mod oauth;
pub mod routes;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::store::Store;

/// Google's real authorization endpoint.
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's real token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's real revocation endpoint.
pub const GOOGLE_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
/// The YouTube Data API v3 base.
pub const YOUTUBE_API_URL: &str = "https://www.googleapis.com/youtube/v3";
/// The scope requested: "Manage your YouTube account".
pub const YOUTUBE_SCOPE: &str = "https://www.googleapis.com/auth/youtube";
/// The other scope that allows the live write calls.
pub const YOUTUBE_FORCE_SSL_SCOPE: &str = "https://www.googleapis.com/auth/youtube.force-ssl";
/// The default daily quota of a Google Cloud project.
pub const DEFAULT_DAILY_QUOTA: i64 = 10_000;

/// YouTube settings, read from the environment by [`YouTubeConfig::from_env`]:
///
/// | variable | default |
/// |---|---|
/// | `STREAMIFY_GOOGLE_CLIENT_ID` | none (YouTube disabled) |
/// | `STREAMIFY_GOOGLE_CLIENT_SECRET` | none (YouTube disabled) |
/// | `STREAMIFY_PUBLIC_URL` | the caller's default (`http://127.0.0.1:8080`) |
/// | `STREAMIFY_GOOGLE_AUTH_URL` | [`GOOGLE_AUTH_URL`] |
/// | `STREAMIFY_GOOGLE_TOKEN_URL` | [`GOOGLE_TOKEN_URL`] |
/// | `STREAMIFY_GOOGLE_REVOKE_URL` | [`GOOGLE_REVOKE_URL`] |
/// | `STREAMIFY_YOUTUBE_API_URL` | [`YOUTUBE_API_URL`] |
/// | `STREAMIFY_YOUTUBE_DAILY_QUOTA` | 10000 (only shown next to the units spent) |
#[derive(Clone)]
pub struct YouTubeConfig {
    /// OAuth client id (a "Web application" client in the Google Cloud console).
    pub client_id: Option<String>,
    /// OAuth client secret. Never logged.
    pub client_secret: Option<String>,
    /// Public base URL of this server, without a trailing slash; the redirect URI is
    /// `{public_url}/auth/google/callback` and cookies get `Secure` when it is https.
    pub public_url: String,
    /// Authorization endpoint.
    pub auth_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// Revocation endpoint.
    pub revoke_url: String,
    /// YouTube Data API base (`.../youtube/v3`).
    pub api_url: String,
    /// The project's daily quota, shown next to the units spent.
    pub daily_quota: i64,
    /// Timeout of one HTTP request to Google.
    pub http_timeout: Duration,
    /// Publish to the `rtmps://` ingestion address (true) or the plain `rtmp://` one.
    pub prefer_rtmps: bool,
    /// Waiting and polling of the broadcast driver.
    pub timing: live::DriverTiming,
}

impl fmt::Debug for YouTubeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YouTubeConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("public_url", &self.public_url)
            .field("auth_url", &self.auth_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("api_url", &self.api_url)
            .field("prefer_rtmps", &self.prefer_rtmps)
            .finish_non_exhaustive()
    }
}

impl YouTubeConfig {
    /// Google's real endpoints, no credentials, the given public URL.
    pub fn new(public_url: &str) -> YouTubeConfig {
        YouTubeConfig {
            client_id: None,
            client_secret: None,
            public_url: public_url.trim_end_matches('/').to_string(),
            auth_url: GOOGLE_AUTH_URL.into(),
            token_url: GOOGLE_TOKEN_URL.into(),
            revoke_url: GOOGLE_REVOKE_URL.into(),
            api_url: YOUTUBE_API_URL.into(),
            daily_quota: DEFAULT_DAILY_QUOTA,
            http_timeout: Duration::from_secs(20),
            prefer_rtmps: true,
            timing: live::DriverTiming::default(),
        }
    }

    /// From the process environment; `default_public_url` is used when
    /// `STREAMIFY_PUBLIC_URL` is not set.
    pub fn from_env(default_public_url: &str) -> YouTubeConfig {
        YouTubeConfig::from_lookup(default_public_url, |name| std::env::var(name).ok())
    }

    /// From any variable lookup (the same names as [`YouTubeConfig::from_env`]).
    pub fn from_lookup(
        default_public_url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> YouTubeConfig {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let public_url = get("STREAMIFY_PUBLIC_URL").unwrap_or_else(|| default_public_url.into());
        let mut config = YouTubeConfig::new(&public_url);
        config.client_id = get("STREAMIFY_GOOGLE_CLIENT_ID");
        config.client_secret = get("STREAMIFY_GOOGLE_CLIENT_SECRET");
        if let Some(v) = get("STREAMIFY_GOOGLE_AUTH_URL") {
            config.auth_url = v;
        }
        if let Some(v) = get("STREAMIFY_GOOGLE_TOKEN_URL") {
            config.token_url = v;
        }
        if let Some(v) = get("STREAMIFY_GOOGLE_REVOKE_URL") {
            config.revoke_url = v;
        }
        if let Some(v) = get("STREAMIFY_YOUTUBE_API_URL") {
            config.api_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = get("STREAMIFY_YOUTUBE_DAILY_QUOTA").and_then(|v| v.parse().ok()) {
            config.daily_quota = v;
        }
        config
    }

    /// Whether a client id and secret are set.
    pub fn is_configured(&self) -> bool {
        self.client_id.is_some() && self.client_secret.is_some()
    }

    /// `{public_url}/auth/google/callback`: register exactly this in the Google console.
    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/google/callback", self.public_url)
    }

    /// Cookies get `Secure` when the public URL is https.
    pub fn cookies_secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    fn credentials(&self) -> Result<(&str, &str)> {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(not_configured()),
        }
    }
}

pub(crate) fn not_configured() -> Error {
    Error::new(
        ErrorCode::YoutubeNotConfigured,
        "YouTube is not configured on this server: set STREAMIFY_GOOGLE_CLIENT_ID and \
         STREAMIFY_GOOGLE_CLIENT_SECRET (see the README's YouTube section) and restart",
    )
}

/// The YouTube service: configuration, HTTP client, store, pending sign-ins and token
/// refresh. Share it as `Arc<YouTube>`.
pub struct YouTube {
    config: YouTubeConfig,
    http: reqwest::Client,
    store: Arc<Store>,
    pending: Mutex<HashMap<String, oauth::PendingAuth>>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for YouTube {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YouTube")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl YouTube {
    /// A service over `store`. Works without credentials: calls then answer
    /// `youtube_not_configured`.
    pub fn new(config: YouTubeConfig, store: Arc<Store>) -> Result<Arc<YouTube>> {
        // reqwest is built without a rustls provider; the whole tree uses aws-lc-rs.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10).min(config.http_timeout))
            .timeout(config.http_timeout)
            .user_agent(concat!("streamify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::new(ErrorCode::Internal, format!("HTTP client: {e}")))?;
        Ok(Arc::new(YouTube {
            config,
            http,
            store,
            pending: Mutex::new(HashMap::new()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &YouTubeConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The public view of an account (no tokens): channel, reconnect flag, quota today.
    pub fn account_view(&self, account_id: &str) -> Result<serde_json::Value> {
        let account = self.store.account(account_id)?.ok_or_else(|| {
            Error::new(
                ErrorCode::YoutubeNotConnected,
                "no YouTube account is connected: sign in at /auth/google/start",
            )
        })?;
        let day = quota_day(crate::store::now_ms());
        let used = self.store.quota(account_id, &day)?;
        Ok(serde_json::json!({
            "id": account.id,
            "channel_id": account.channel_id,
            "channel_title": account.channel_title,
            "channel_url": format!("https://www.youtube.com/channel/{}", account.channel_id),
            "scopes": account.scopes.split_whitespace().collect::<Vec<_>>(),
            "needs_reconnect": account.needs_reconnect,
            "connected_at_ms": account.created_at_ms,
            "quota": {
                "day": day,
                "units_used": used,
                "daily_limit": self.config.daily_quota,
            },
        }))
    }

    /// Quota units this account spent today (Pacific day).
    pub fn quota_used_today(&self, account_id: &str) -> Result<i64> {
        self.store
            .quota(account_id, &quota_day(crate::store::now_ms()))
    }

    pub(crate) fn count_quota(&self, account_id: &str, units: i64) {
        let day = quota_day(crate::store::now_ms());
        if let Err(e) = self.store.add_quota(account_id, &day, units) {
            tracing::warn!(account = account_id, error = %e, "quota units not recorded");
        }
    }
}

/// The quota day of a moment: YouTube's quota resets at midnight Pacific time. This uses
/// the Pacific offset with US daylight saving time (second Sunday of March to the first
/// Sunday of November, changing at 02:00 local time).
pub fn quota_day(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let standard = secs - 8 * 3600;
    let (year, _, _) = civil_from_days(standard.div_euclid(86_400));
    // DST starts 2:00 PST on the second Sunday of March, ends 2:00 PDT (1:00 PST) on the
    // first Sunday of November.
    let start = days_from_civil(year, 3, nth_sunday(year, 3, 2)) * 86_400 + 2 * 3600;
    let end = days_from_civil(year, 11, nth_sunday(year, 11, 1)) * 86_400 + 3600;
    let local = if (start..end).contains(&standard) {
        standard + 3600
    } else {
        standard
    };
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn nth_sunday(year: i64, month: u32, n: i64) -> u32 {
    let first = days_from_civil(year, month, 1);
    // 1970-01-01 was a Thursday: weekday 0 = Sunday.
    let weekday = (first + 4).rem_euclid(7);
    let first_sunday = 1 + (7 - weekday) % 7;
    (first_sunday + 7 * (n - 1)) as u32
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// RFC 3339 UTC timestamp (seconds) of a moment, as Google expects `scheduledStartTime`.
pub fn rfc3339(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> std::result::Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(format!("response larger than {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("response larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Longest Google-provided text we pass on in a message.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out: String = text.chars().take(max).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_googles_endpoints_and_env_overrides() {
        let vars: HashMap<&str, &str> = [
            (
                "STREAMIFY_GOOGLE_CLIENT_ID",
                "id.apps.googleusercontent.com",
            ),
            ("STREAMIFY_GOOGLE_CLIENT_SECRET", "GOCSPX-secret"),
            ("STREAMIFY_PUBLIC_URL", "https://stream.example.com/"),
            (
                "STREAMIFY_YOUTUBE_API_URL",
                "http://127.0.0.1:9/youtube/v3/",
            ),
        ]
        .into();
        let c = YouTubeConfig::from_lookup("http://127.0.0.1:8080", |k| {
            vars.get(k).map(|v| v.to_string())
        });
        assert!(c.is_configured());
        assert_eq!(
            c.redirect_uri(),
            "https://stream.example.com/auth/google/callback"
        );
        assert!(c.cookies_secure());
        assert_eq!(c.auth_url, GOOGLE_AUTH_URL);
        assert_eq!(c.token_url, GOOGLE_TOKEN_URL);
        assert_eq!(c.revoke_url, GOOGLE_REVOKE_URL);
        assert_eq!(c.api_url, "http://127.0.0.1:9/youtube/v3");
        assert!(!format!("{c:?}").contains("GOCSPX"));
        let bare = YouTubeConfig::from_lookup("http://127.0.0.1:8080", |_| None);
        assert!(!bare.is_configured());
        assert!(!bare.cookies_secure());
        assert_eq!(bare.api_url, YOUTUBE_API_URL);
    }

    #[test]
    fn quota_day_follows_pacific_time() {
        // 2026-11-25 07:59:59Z is 23:59:59 PST on the 24th; 08:00Z is midnight.
        assert_eq!(quota_day(1_795_593_599_000), "2026-11-24");
        assert_eq!(quota_day(1_795_593_600_000), "2026-11-25");
        // 2026-07-01 06:59:59Z is 23:59:59 PDT on June 30th; 07:00Z is midnight.
        assert_eq!(quota_day(1_782_889_199_000), "2026-06-30");
        assert_eq!(quota_day(1_782_889_200_000), "2026-07-01");
        assert_eq!(rfc3339(1_795_593_600_000), "2026-11-25T08:00:00Z");
    }
}
