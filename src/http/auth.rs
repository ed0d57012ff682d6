//! Bearer-token authentication (constant-time comparison) with a per-client limit on
//! repeated failures. Open without a token: `GET /healthz`, `GET /` (the web page), CORS
//! preflights and WHIP `OPTIONS`, the WebSocket route (it checks its own ticket), and the
//! YouTube routes (`/auth/google/*` is the browser's sign-in; `/api/youtube/*` checks the
//! session cookie or this same token itself).
//!
//! The stream routes (`/api/streams*`, `/whip/*`) also take the YouTube session cookie
//! (`streamify_session`) as the identity of that account. Every authorized request carries its
//! [`Caller`] as a request extension: the token sees every stream, an account its own. The
//! cookie is `SameSite=Lax`, so other sites cannot make a browser send it with a `POST`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::AppState;
use crate::error::{Error, ErrorCode};
use crate::streams::Caller;

/// Failures counted per client over this window.
const WINDOW: Duration = Duration::from_secs(60);
/// Clients tracked at most (oldest forgotten first).
const MAX_CLIENTS: usize = 4096;

/// The API token (as a digest) and the failure counts.
#[derive(Debug)]
pub struct Auth {
    digest: [u8; 32],
    max_failures: u32,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Auth {
    /// Checks tokens against `token`; a client with `max_failures` failures within a minute
    /// gets 429 until the minute is over.
    pub fn new(token: &str, max_failures: u32) -> Auth {
        Auth {
            digest: Sha256::digest(token.as_bytes()).into(),
            max_failures,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Constant-time comparison (of digests, so the length leaks nothing either).
    pub fn token_matches(&self, candidate: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(candidate.as_bytes()).into();
        d.iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether `headers` carry `Authorization: Bearer <the token>`.
    pub fn headers_ok(&self, headers: &HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| self.token_matches(t))
    }

    fn blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|(n, since)| {
            *n >= self.max_failures && now.duration_since(*since) < WINDOW
        })
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, (_, since)| now.duration_since(*since) < WINDOW);
            if map.len() >= MAX_CLIENTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, (_, s))| *s).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn is_open(req: &Request) -> bool {
    let path = req.uri().path();
    if req.method() == Method::OPTIONS {
        return true;
    }
    matches!(
        (req.method(), path),
        (&Method::GET, "/healthz") | (&Method::GET, "/") | (&Method::GET, "/index.html")
    ) || (req.method() == Method::GET && path.starts_with("/api/streams/") && path.ends_with("/ws"))
        // The YouTube routes authenticate themselves (session cookie or this same token).
        || path.starts_with("/auth/google/")
        || path.starts_with("/api/youtube/")
}

/// Routes where a signed-in browser acts as its account (not `/metrics`: that is for the
/// operator's token).
fn takes_session_cookie(path: &str) -> bool {
    path == "/api/streams" || path.starts_with("/api/streams/") || path.starts_with("/whip/")
}

/// The 401 every protected route answers without the right token.
pub fn unauthorized() -> Response {
    let mut r = Error::new(
        ErrorCode::Unauthorized,
        "missing or wrong API token: send Authorization: Bearer <token>",
    )
    .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// The middleware.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_open(&req) {
        return next.run(req).await;
    }
    let ip = super::client_addr(&req).map(|a| a.ip());
    let now = Instant::now();
    if let Some(ip) = ip {
        if state.auth.blocked(ip, now) {
            return Error::new(
                ErrorCode::TooManyAuthFailures,
                "too many failed authentication attempts; wait a minute",
            )
            .into_response();
        }
    }
    let caller = if state.auth.headers_ok(req.headers()) {
        Some(Caller::Token)
    } else if takes_session_cookie(req.uri().path()) {
        state.session_caller(req.headers())
    } else {
        None
    };
    if let Some(caller) = caller {
        let mut req = req;
        req.extensions_mut().insert(caller);
        return next.run(req).await;
    }
    if let Some(ip) = ip {
        state.auth.record_failure(ip, now);
    }
    unauthorized()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_and_failures() {
        let a = Auth::new("s3cret", 3);
        assert!(a.token_matches("s3cret"));
        assert!(!a.token_matches("s3cre"));
        assert!(!a.token_matches(""));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "bearer s3cret".parse().unwrap());
        assert!(a.headers_ok(&h));
        h.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!a.headers_ok(&h));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(!a.blocked(ip, t));
            a.record_failure(ip, t);
        }
        assert!(a.blocked(ip, t));
        assert!(!a.blocked(ip, t + WINDOW));
        assert!(!a.blocked("10.0.0.2".parse().unwrap(), t));
        assert!(takes_session_cookie("/api/streams"));
        assert!(takes_session_cookie("/whip/abc"));
        assert!(!takes_session_cookie("/metrics"));
        assert!(!takes_session_cookie("/api/streamsx"));
    }
}
