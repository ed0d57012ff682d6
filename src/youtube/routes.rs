//! HTTP routes of the YouTube sign-in and account, for the server to merge:
//!
//! | route | what |
//! |---|---|
//! | `GET /auth/google/start` | 303 to Google with state + PKCE; sets the browser-binding cookie |
//! | `GET /auth/google/callback` | finishes the sign-in; sets the session cookie; 303 to `/` |
//! | `GET /api/youtube/account` | the connected channel, reconnect flag, quota units today |
//! | `DELETE /api/youtube/account` | revokes the tokens at Google, deletes them; `{"deleted":true,"revoked_at_google":bool}` |
//!
//! Sign-in failures are HTML pages with the code and what to do (never a panic); the API
//! routes answer the crate's JSON error. The API routes accept the session cookie, or the
//! server's API token (`Authorization: Bearer`) for automation, which then acts on the account
//! given by `?account=ID` or else the most recently connected one.
//!
//! ```ignore
//! let youtube = YouTube::new(YouTubeConfig::from_env(&public_url), store.clone())?;
//! let app = api_router.merge(streamify::youtube::routes::router(YouTubeRoutes {
//!     youtube: youtube.clone(),
//!     api_token: Some(config.api_token.clone()),
//! }));
//! ```

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::oauth::{CallbackParams, SESSION_TTL_MS, STATE_TTL};
use super::YouTube;
use crate::error::{Error, ErrorCode};

/// The session cookie (HttpOnly, SameSite=Lax, Secure when the public URL is https).
pub const SESSION_COOKIE: &str = "streamify_session";
/// The cookie that binds a sign-in's state to the browser that started it.
pub const SIGN_IN_COOKIE: &str = "streamify_oauth";

/// What the routes need.
#[derive(Debug, Clone)]
pub struct YouTubeRoutes {
    /// The YouTube service (configuration, store, HTTP client).
    pub youtube: Arc<YouTube>,
    /// The server's API token; when set, `Authorization: Bearer <token>` also works on
    /// `/api/youtube/account`.
    pub api_token: Option<String>,
}

/// The router (state applied), ready to `merge` into the server's.
pub fn router(state: YouTubeRoutes) -> Router {
    Router::new()
        .route("/auth/google/start", get(start))
        .route("/auth/google/callback", get(callback))
        .route(
            "/api/youtube/account",
            get(get_account).delete(delete_account),
        )
        .with_state(state)
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty() && v.len() <= 256)
}

/// The account of the request's session cookie, if any (for the server's own routes:
/// streams belong to the account that created them).
pub fn session_account(youtube: &YouTube, headers: &HeaderMap) -> Option<String> {
    let token = cookie(headers, SESSION_COOKIE)?;
    youtube.store().session_account(token).ok().flatten()
}

fn cookie_header(youtube: &YouTube, name: &str, value: &str, path: &str, max_age: i64) -> String {
    let secure = if youtube.config().cookies_secure() {
        "; Secure"
    } else {
        ""
    };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn error_page(youtube: &YouTube, error: &Error) -> Response {
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>YouTube sign-in failed</title></head>\
         <body><h1>YouTube sign-in failed</h1><p id=\"message\">{}</p>\
         <p>Error code: <code id=\"code\">{}</code></p>\
         <p><a href=\"/auth/google/start\">Try again</a> · <a href=\"/\">Back to Streamify</a></p></body></html>",
        escape(&error.message),
        error.code.as_str()
    );
    // The sign-in cookie has done its job (or the sign-in is over): clear it.
    let clear = cookie_header(youtube, SIGN_IN_COOKIE, "", "/auth/google", 0);
    (
        status,
        AppendHeaders([(SET_COOKIE, clear), (CACHE_CONTROL, "no-store".to_string())]),
        Html(body),
    )
        .into_response()
}

fn json_error(error: &Error) -> Response {
    let status =
        StatusCode::from_u16(error.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(error.to_json())).into_response()
}

async fn start(State(state): State<YouTubeRoutes>) -> Response {
    let youtube = &state.youtube;
    match youtube.begin_sign_in() {
        Ok(start) => {
            let cookie = cookie_header(
                youtube,
                SIGN_IN_COOKIE,
                &start.browser_cookie,
                "/auth/google",
                STATE_TTL.as_secs() as i64,
            );
            (
                StatusCode::SEE_OTHER,
                AppendHeaders([
                    (LOCATION, start.authorization_url),
                    (SET_COOKIE, cookie),
                    (CACHE_CONTROL, "no-store".to_string()),
                ]),
            )
                .into_response()
        }
        Err(e) => error_page(youtube, &e),
    }
}

async fn callback(
    State(state): State<YouTubeRoutes>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let youtube = &state.youtube;
    let query = query.unwrap_or_default();
    if query.len() > 8 * 1024 {
        return error_page(
            youtube,
            &Error::new(ErrorCode::InvalidRequest, "The callback URL is too long."),
        );
    }
    let params = CallbackParams::from_query(&query);
    let browser = cookie(&headers, SIGN_IN_COOKIE);
    match youtube.finish_sign_in(&params, browser).await {
        Ok(signed_in) => {
            let session = cookie_header(
                youtube,
                SESSION_COOKIE,
                &signed_in.session_token,
                "/",
                SESSION_TTL_MS / 1000,
            );
            let clear = cookie_header(youtube, SIGN_IN_COOKIE, "", "/auth/google", 0);
            (
                StatusCode::SEE_OTHER,
                AppendHeaders([
                    (LOCATION, "/?youtube=connected".to_string()),
                    (SET_COOKIE, session),
                    (SET_COOKIE, clear),
                    (CACHE_CONTROL, "no-store".to_string()),
                ]),
            )
                .into_response()
        }
        Err(e) => {
            tracing::info!(code = %e.code, "Google sign-in failed");
            error_page(youtube, &e)
        }
    }
}

/// The account a request acts on: the session's, or with the API token `?account=` or the
/// most recently connected one.
fn caller_account(
    state: &YouTubeRoutes,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<String, Error> {
    if let Some(account) = session_account(&state.youtube, headers) {
        return Ok(account);
    }
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let token_ok = match (&state.api_token, bearer) {
        (Some(expected), Some(given)) => constant_time_eq(expected.as_bytes(), given.as_bytes()),
        _ => false,
    };
    if !token_ok {
        return Err(Error::new(
            ErrorCode::Unauthorized,
            "sign in with Google (/auth/google/start) or send the API token",
        ));
    }
    let wanted = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "account")
            .map(|(_, v)| v.into_owned())
    });
    let ids = state.youtube.store().account_ids()?;
    match wanted {
        Some(id) if ids.contains(&id) => Ok(id),
        Some(_) => Err(Error::new(ErrorCode::NotFound, "no such YouTube account")),
        None => ids.into_iter().next().ok_or_else(|| {
            Error::new(
                ErrorCode::YoutubeNotConnected,
                "no YouTube account is connected: sign in at /auth/google/start",
            )
        }),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn get_account(
    State(state): State<YouTubeRoutes>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = caller_account(&state, &headers, query.as_deref())
        .and_then(|id| state.youtube.account_view(&id));
    match result {
        Ok(view) => {
            let mut response = Json(serde_json::json!({ "account": view })).into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => json_error(&e),
    }
}

async fn delete_account(
    State(state): State<YouTubeRoutes>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let id = match caller_account(&state, &headers, query.as_deref()) {
        Ok(id) => id,
        Err(e) => return json_error(&e),
    };
    match state.youtube.disconnect(&id).await {
        Ok(revoked) => {
            let clear = cookie_header(&state.youtube, SESSION_COOKIE, "", "/", 0);
            let mut response = (
                StatusCode::OK,
                AppendHeaders([(SET_COOKIE, clear)]),
                Json(serde_json::json!({"deleted": true, "revoked_at_google": revoked})),
            )
                .into_response();
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => json_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing_and_escaping() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; streamify_session=xyz ; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
