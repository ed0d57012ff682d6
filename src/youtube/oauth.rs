//! Google OAuth 2.0, web-server flow with PKCE (S256):
//!
//! 1. [`YouTube::begin_sign_in`]: a random `state` (single use, 10 minute expiry) bound to the
//!    browser by a random cookie whose hash is kept with it, and a PKCE verifier whose S256
//!    challenge goes into the authorization URL (`access_type=offline`, `prompt=consent`, the
//!    `youtube` scope).
//! 2. [`YouTube::finish_sign_in`]: checks the state and the browser cookie, refuses a denied
//!    consent, exchanges the code with the verifier, checks the granted scope, reads the
//!    channel (`channels.list mine=true`), stores the account with its tokens sealed, and opens
//!    a browser session.
//! 3. [`YouTube::access_token`]: the account's access token, refreshed when it expires within a
//!    minute or when Google just rejected it (once per rejection). `invalid_grant` marks the
//!    account as needing to reconnect (`youtube_reauth_required`).
//! 4. [`YouTube::disconnect`]: revokes at Google, then deletes the account and its sessions.

use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

use super::{clip, read_limited, YouTube, YOUTUBE_FORCE_SSL_SCOPE, YOUTUBE_SCOPE};
use crate::error::{Error, ErrorCode, Result};
use crate::store::{now_ms, token_hash, AccountRecord};

/// How long a sign-in may take between start and callback.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Pending sign-ins kept at most (older ones are dropped first).
pub const MAX_PENDING: usize = 1024;
/// An access token is refreshed when it expires within this margin.
pub const REFRESH_MARGIN_MS: i64 = 60_000;
/// Browser sessions last this long.
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
const MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// A sign-in between start and callback.
#[derive(Clone)]
pub struct PendingAuth {
    verifier: String,
    browser_hash: String,
    created: Instant,
}

/// What [`YouTube::begin_sign_in`] gives the browser.
#[derive(Clone)]
pub struct SignInStart {
    /// Google's authorization URL to redirect to.
    pub authorization_url: String,
    /// The value of the browser-binding cookie to set.
    pub browser_cookie: String,
}

/// The callback's query parameters.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    /// `state` as Google sent it back.
    pub state: Option<String>,
    /// The authorization code.
    pub code: Option<String>,
    /// `access_denied` or another OAuth error.
    pub error: Option<String>,
}

impl CallbackParams {
    /// From a raw query string.
    pub fn from_query(query: &str) -> CallbackParams {
        let mut params = CallbackParams::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let v = Some(v.into_owned());
            match &*k {
                "state" => params.state = v,
                "code" => params.code = v,
                "error" => params.error = v,
                _ => {}
            }
        }
        params
    }
}

/// A finished sign-in.
#[derive(Clone)]
pub struct SignedIn {
    /// The account (new or reconnected).
    pub account_id: String,
    /// The channel's title.
    pub channel_title: String,
    /// The session cookie's value.
    pub session_token: String,
}

/// Tokens from the token endpoint.
#[derive(Clone, serde::Deserialize)]
pub struct TokenResponse {
    /// The access token.
    pub access_token: String,
    /// Seconds until it expires.
    #[serde(default)]
    pub expires_in: Option<i64>,
    /// Only on the first exchange (and not on refresh).
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Granted scopes, space separated.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
struct TokenErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// The token endpoint said no.
#[derive(Debug, Clone)]
pub enum TokenFailure {
    /// An OAuth error answer (`invalid_grant`, `invalid_client`...).
    OAuth {
        /// HTTP status.
        status: u16,
        /// `error`.
        error: String,
        /// `error_description`.
        description: String,
    },
    /// Google could not be reached or answered something unusable.
    Unreachable(String),
}

impl TokenFailure {
    fn describe(&self) -> String {
        match self {
            TokenFailure::OAuth {
                error, description, ..
            } if description.is_empty() => error.clone(),
            TokenFailure::OAuth {
                error, description, ..
            } => format!("{error}: {}", clip(description, 200)),
            TokenFailure::Unreachable(why) => why.clone(),
        }
    }
}

fn unreachable(what: &str, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::YoutubeUnreachable,
        format!("Google could not be reached ({what}: {why}); check the server's internet connection and try again"),
    )
}

fn state_error(message: &str) -> Error {
    Error::new(
        ErrorCode::OauthStateInvalid,
        format!("{message} Start the sign-in again from Streamify (/auth/google/start)."),
    )
}

/// 43-128 characters from `[A-Za-z0-9-._~]`: 48 random bytes in URL-safe base64 (64 chars).
pub fn new_verifier() -> String {
    let bytes: [u8; 48] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `BASE64URL(SHA256(verifier))` without padding.
pub fn s256_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

impl YouTube {
    /// Starts a sign-in: the authorization URL and the browser-binding cookie value.
    pub fn begin_sign_in(&self) -> Result<SignInStart> {
        let (client_id, _) = self.config.credentials()?;
        let state = crate::config::random_token();
        let browser_cookie = crate::config::random_token();
        let verifier = new_verifier();
        let mut url = url::Url::parse(&self.config.auth_url).map_err(|e| {
            Error::new(
                ErrorCode::YoutubeNotConfigured,
                format!("STREAMIFY_GOOGLE_AUTH_URL is not a URL: {e}"),
            )
        })?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri())
            .append_pair("response_type", "code")
            .append_pair("scope", YOUTUBE_SCOPE)
            .append_pair("state", &state)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("include_granted_scopes", "true")
            .append_pair("code_challenge", &s256_challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.created.elapsed() < STATE_TTL);
        while pending.len() >= MAX_PENDING {
            let oldest = pending
                .iter()
                .min_by_key(|(_, p)| p.created)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => pending.remove(&k),
                None => break,
            };
        }
        pending.insert(
            state,
            PendingAuth {
                verifier,
                browser_hash: token_hash(&browser_cookie),
                created: Instant::now(),
            },
        );
        Ok(SignInStart {
            authorization_url: url.into(),
            browser_cookie,
        })
    }

    fn take_pending(&self, state: &str, browser_cookie: Option<&str>) -> Result<PendingAuth> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = pending.get(state) else {
            return Err(state_error(
                "This sign-in is unknown or was already used (the state parameter does not match any sign-in in progress).",
            ));
        };
        // A callback from another browser does not consume the state: the real one may follow.
        let same_browser = browser_cookie.is_some_and(|c| token_hash(c) == entry.browser_hash);
        if !same_browser {
            return Err(state_error(
                "This sign-in was started in another browser (or its cookie is missing), so it cannot be finished here.",
            ));
        }
        let entry = pending.remove(state).expect("present");
        if entry.created.elapsed() >= STATE_TTL {
            return Err(state_error(
                "This sign-in expired (it must finish within 10 minutes).",
            ));
        }
        Ok(entry)
    }

    /// Finishes a sign-in from the callback's parameters and the browser-binding cookie.
    pub async fn finish_sign_in(
        &self,
        params: &CallbackParams,
        browser_cookie: Option<&str>,
    ) -> Result<SignedIn> {
        self.config.credentials()?;
        let Some(state) = params.state.as_deref() else {
            return Err(state_error("The callback has no state parameter."));
        };
        let pending = self.take_pending(state, browser_cookie)?;
        if let Some(error) = &params.error {
            return Err(if error == "access_denied" {
                Error::new(
                    ErrorCode::OauthConsentRefused,
                    "Access was not granted on Google's consent screen, so no YouTube channel was \
                     connected. Start again and choose Allow to let Streamify manage your live streams.",
                )
            } else {
                Error::new(
                    ErrorCode::OauthExchangeFailed,
                    format!(
                        "Google ended the sign-in with the error \"{}\". Start again; if it repeats, check the OAuth client's settings in the Google Cloud console.",
                        clip(error, 64)
                    ),
                )
            });
        }
        let Some(code) = params.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(Error::new(
                ErrorCode::OauthExchangeFailed,
                "Google's answer has no authorization code. Start the sign-in again.",
            ));
        };
        let tokens = self
            .exchange_code(code, &pending.verifier)
            .await
            .map_err(|failure| match failure {
                TokenFailure::Unreachable(why) => unreachable("token exchange", why),
                other => Error::new(
                    ErrorCode::OauthExchangeFailed,
                    format!(
                        "Google refused the sign-in code ({}). Start the sign-in again; if it repeats, check that the client id, secret and redirect URI match the Google Cloud console.",
                        other.describe()
                    ),
                ),
            })?;
        let scopes = tokens.scope.clone().unwrap_or_default();
        if !scopes
            .split_whitespace()
            .any(|s| s == YOUTUBE_SCOPE || s == YOUTUBE_FORCE_SSL_SCOPE)
        {
            self.revoke_token(
                tokens
                    .refresh_token
                    .as_deref()
                    .unwrap_or(&tokens.access_token),
            )
            .await
            .ok();
            return Err(Error::new(
                ErrorCode::YoutubeMissingScope,
                "Google did not grant \"Manage your YouTube account\". Start again and leave that permission ticked on the consent screen.",
            ));
        }
        let (channel_id, channel_title) = self.my_channel(&tokens.access_token).await?;
        let account = AccountRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            channel_id,
            channel_title: channel_title.clone(),
            scopes,
            access_token: tokens.access_token.clone(),
            access_expires_at_ms: now_ms() + tokens.expires_in.unwrap_or(3599) * 1000,
            refresh_token: tokens.refresh_token.clone(),
            needs_reconnect: false,
            created_at_ms: now_ms(),
        };
        let account_id = self.store.upsert_account(&account)?;
        self.count_quota(&account_id, 1);
        let session_token = crate::config::random_token();
        self.store
            .create_session(&session_token, &account_id, SESSION_TTL_MS)?;
        tracing::info!(account = %account_id, channel = %account.channel_id, "YouTube channel connected");
        Ok(SignedIn {
            account_id,
            channel_title,
            session_token,
        })
    }

    async fn token_request(
        &self,
        form: &[(&str, &str)],
    ) -> std::result::Result<TokenResponse, TokenFailure> {
        let response = self
            .http
            .post(&self.config.token_url)
            .form(form)
            .send()
            .await
            .map_err(|e| TokenFailure::Unreachable(without_url(e)))?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_TOKEN_RESPONSE)
            .await
            .map_err(TokenFailure::Unreachable)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body)
                .map_err(|e| TokenFailure::Unreachable(format!("unusable token response: {e}")));
        }
        match serde_json::from_slice::<TokenErrorBody>(&body) {
            Ok(err) => Err(TokenFailure::OAuth {
                status,
                error: err.error,
                description: err.error_description.unwrap_or_default(),
            }),
            Err(_) if status >= 500 => Err(TokenFailure::Unreachable(format!("HTTP {status}"))),
            Err(_) => Err(TokenFailure::OAuth {
                status,
                error: format!("HTTP {status}"),
                description: String::new(),
            }),
        }
    }

    async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
    ) -> std::result::Result<TokenResponse, TokenFailure> {
        let (client_id, client_secret) = self
            .config
            .credentials()
            .map_err(|e| TokenFailure::Unreachable(e.message))?;
        let redirect_uri = self.config.redirect_uri();
        self.token_request(&[
            ("code", code),
            ("client_id", client_id),
            ("client_secret", client_secret),
            ("redirect_uri", &redirect_uri),
            ("grant_type", "authorization_code"),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn my_channel(&self, access_token: &str) -> Result<(String, String)> {
        let url = format!("{}/channels?part=snippet&mine=true", self.config.api_url);
        let response = self
            .http
            .get(&url)
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| unreachable("channels.list", without_url(e)))?;
        let status = response.status().as_u16();
        let body = read_limited(response, 1 << 20)
            .await
            .map_err(|e| unreachable("channels.list", e))?;
        if !(200..300).contains(&status) {
            return Err(
                super::live::GoogleError::from_response(status, &body, "channels.list").error,
            );
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| unreachable("channels.list", format!("unusable answer: {e}")))?;
        let item = value["items"].as_array().and_then(|items| items.first());
        match item {
            Some(item) => {
                let id = item["id"].as_str().unwrap_or_default().to_string();
                if id.is_empty() {
                    return Err(unreachable("channels.list", "a channel without id"));
                }
                let title = item["snippet"]["title"]
                    .as_str()
                    .map(|t| clip(t, 200))
                    .unwrap_or_else(|| id.clone());
                Ok((id, title))
            }
            None => Err(Error::new(
                ErrorCode::YoutubeNoChannel,
                "This Google account has no YouTube channel. Create one at \
                 https://www.youtube.com/create_channel, then connect again.",
            )),
        }
    }

    /// The account's access token, refreshed when it expires within a minute, or when
    /// `rejected` (the token Google just answered 401 to) is still the stored one.
    pub async fn access_token(&self, account_id: &str, rejected: Option<&str>) -> Result<String> {
        self.config.credentials()?;
        let usable = |a: &AccountRecord| {
            a.access_expires_at_ms - now_ms() > REFRESH_MARGIN_MS
                && rejected.is_none_or(|r| r != a.access_token)
        };
        let account = self.load_account(account_id)?;
        if usable(&account) {
            return Ok(account.access_token);
        }
        let _guard = self.refresh_lock.lock().await;
        // Someone else may have refreshed while we waited.
        let account = self.load_account(account_id)?;
        if usable(&account) {
            return Ok(account.access_token);
        }
        self.refresh(&account).await
    }

    fn load_account(&self, account_id: &str) -> Result<AccountRecord> {
        let account = self.store.account(account_id)?.ok_or_else(|| {
            Error::new(
                ErrorCode::YoutubeNotConnected,
                "no YouTube account is connected: sign in at /auth/google/start",
            )
        })?;
        if account.needs_reconnect {
            return Err(reauth_error(&account.channel_title, None));
        }
        Ok(account)
    }

    async fn refresh(&self, account: &AccountRecord) -> Result<String> {
        let (client_id, client_secret) = self.config.credentials()?;
        let Some(refresh_token) = account.refresh_token.as_deref() else {
            self.store.set_needs_reconnect(&account.id)?;
            return Err(reauth_error(
                &account.channel_title,
                Some("no refresh token stored"),
            ));
        };
        let result = self
            .token_request(&[
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("refresh_token", refresh_token),
                ("grant_type", "refresh_token"),
            ])
            .await;
        match result {
            Ok(tokens) => {
                let expires = now_ms() + tokens.expires_in.unwrap_or(3599) * 1000;
                self.store.update_tokens(
                    &account.id,
                    &tokens.access_token,
                    expires,
                    tokens.refresh_token.as_deref(),
                )?;
                tracing::debug!(account = %account.id, "access token refreshed");
                Ok(tokens.access_token)
            }
            Err(TokenFailure::OAuth { error, description, .. }) if error == "invalid_grant" => {
                self.store.set_needs_reconnect(&account.id)?;
                tracing::warn!(account = %account.id, "refresh token refused (invalid_grant): the account must reconnect");
                Err(reauth_error(
                    &account.channel_title,
                    Some(&format!("Google: {}", clip(&description, 120))),
                ))
            }
            Err(TokenFailure::Unreachable(why)) => Err(unreachable("token refresh", why)),
            Err(failure @ TokenFailure::OAuth { .. }) => Err(Error::new(
                ErrorCode::YoutubeApiError,
                format!(
                    "Google refused to refresh the access token ({}); check STREAMIFY_GOOGLE_CLIENT_ID and STREAMIFY_GOOGLE_CLIENT_SECRET",
                    failure.describe()
                ),
            )),
        }
    }

    /// Revokes a token at Google. An already dead token (`invalid_token`) counts as revoked.
    pub async fn revoke_token(&self, token: &str) -> Result<()> {
        let mut url = url::Url::parse(&self.config.revoke_url).map_err(|e| {
            Error::new(
                ErrorCode::YoutubeNotConfigured,
                format!("STREAMIFY_GOOGLE_REVOKE_URL is not a URL: {e}"),
            )
        })?;
        url.query_pairs_mut().append_pair("token", token);
        let response = self
            .http
            .post(url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body("")
            .send()
            .await
            .map_err(|e| unreachable("token revocation", without_url(e)))?;
        let status = response.status().as_u16();
        let body = read_limited(response, MAX_TOKEN_RESPONSE)
            .await
            .unwrap_or_default();
        if (200..300).contains(&status) {
            return Ok(());
        }
        match serde_json::from_slice::<TokenErrorBody>(&body) {
            Ok(e) if e.error == "invalid_token" => Ok(()),
            Ok(e) => Err(Error::new(
                ErrorCode::YoutubeApiError,
                format!("Google refused the revocation ({})", clip(&e.error, 64)),
            )),
            Err(_) => Err(unreachable("token revocation", format!("HTTP {status}"))),
        }
    }

    /// Revokes the account's tokens at Google and deletes the account and its sessions.
    /// Returns whether Google confirmed the revocation (the account is deleted either way;
    /// the user can also remove access at https://myaccount.google.com/permissions).
    pub async fn disconnect(&self, account_id: &str) -> Result<bool> {
        let account = self.store.account(account_id)?.ok_or_else(|| {
            Error::new(
                ErrorCode::YoutubeNotConnected,
                "no YouTube account is connected",
            )
        })?;
        // Revoking the refresh token revokes its access tokens too.
        let token = account
            .refresh_token
            .as_deref()
            .unwrap_or(&account.access_token);
        let revoked = match self.revoke_token(token).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(account = %account.id, error = %e, "token revocation failed; deleting the account anyway");
                false
            }
        };
        self.store.delete_account(account_id)?;
        tracing::info!(account = %account.id, revoked, "YouTube account disconnected");
        Ok(revoked)
    }
}

fn reauth_error(channel: &str, detail: Option<&str>) -> Error {
    let detail = detail.map(|d| format!(" ({d})")).unwrap_or_default();
    Error::new(
        ErrorCode::YoutubeReauthRequired,
        format!(
            "Streamify's access to the YouTube channel \"{}\" was revoked or has expired{detail}. Reconnect the channel at /auth/google/start.",
            clip(channel, 100)
        ),
    )
}

/// A reqwest error without its URL (URLs may carry tokens in the query).
pub(crate) fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let e = e.without_url();
    format!("{kind}: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_verifier_and_challenge() {
        let v = new_verifier();
        assert!((43..=128).contains(&v.len()));
        assert!(v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)));
        assert_ne!(v, new_verifier());
        // Expected value computed independently (Python hashlib + base64.urlsafe_b64encode).
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K9uvhYKFBzJV0Yl0MsAXa3ZFbM"),
            "p-xOi4Vuw7P6sd5JaD4IV0Ffvs2zFswdhBFsRFtAubU"
        );
    }

    #[test]
    fn callback_params_parse() {
        let p = CallbackParams::from_query("state=abc&code=4%2F0Ab&scope=x");
        assert_eq!(p.state.as_deref(), Some("abc"));
        assert_eq!(p.code.as_deref(), Some("4/0Ab"));
        assert!(p.error.is_none());
    }
}
