//! The HTTP edge (axum): the REST API, WHIP, the WebSocket signaling and `/healthz`.
//! Routes only parse, authorize and call [`streams`](crate::streams); every failure is the
//! crate's [`Error`] rendered as `{"error":{"code":..,"message":..}}`.

pub mod api;
pub mod auth;
pub mod metrics;
pub mod openapi;
pub mod whip;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::config::Limits;
use crate::error::{Error, ErrorCode};
use crate::streams::{Caller, Stream, StreamManager};
use crate::youtube::YouTube;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The streams.
    pub manager: StreamManager,
    /// Bearer token check and failure accounting.
    pub auth: Arc<auth::Auth>,
    /// Single-use WebSocket tickets.
    pub tickets: Arc<ws::Tickets>,
    /// `http://host:port` (or the configured public URL), without a trailing slash.
    pub base_url: String,
    /// Sizes and counts.
    pub limits: Limits,
    /// Turns `true` when the server shuts down (WebSockets close).
    pub shutdown: watch::Receiver<bool>,
    /// YouTube: its session cookie is an identity on the stream routes.
    pub youtube: Option<Arc<YouTube>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The stream `id` if `caller` may see it; `not_found` otherwise, exactly as for a stream
    /// that does not exist.
    pub fn visible_stream(&self, caller: &Caller, id: &str) -> Result<Arc<Stream>, Error> {
        let stream = self.manager.get(id)?;
        if caller.can_see(stream.owner()) {
            Ok(stream)
        } else {
            Err(Error::new(ErrorCode::NotFound, "no such stream"))
        }
    }

    /// The account of the request's YouTube session cookie, if it carries a live one.
    pub fn session_caller(&self, headers: &HeaderMap) -> Option<Caller> {
        let youtube = self.youtube.as_ref()?;
        crate::youtube::routes::session_account(youtube, headers).map(Caller::Account)
    }

    /// `ws://` or `wss://` form of the base URL.
    pub fn ws_base(&self) -> String {
        if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base_url.clone()
        }
    }
}

/// The whole HTTP surface. `extra` routes (YouTube, the web page) are merged in and sit
/// behind the same authentication, CORS and limits.
pub fn router(state: AppState, cors_origins: &[String], extra: Option<Router>) -> Router {
    let mut app = Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/healthz", get(healthz))
        .route("/api/streams", post(api::create).get(api::list))
        .route("/api/streams/{id}", get(api::get).delete(api::delete))
        .route("/metrics", get(metrics::metrics))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/streams/{id}/destinations", post(api::add_destination))
        .route(
            "/api/streams/{id}/destinations/{destination}",
            axum::routing::delete(api::remove_destination),
        )
        .route("/api/streams/{id}/stop", post(api::stop))
        .route("/api/streams/{id}/start", post(api::start))
        .route("/api/streams/{id}/events", get(api::events))
        .route("/api/streams/{id}/ws-ticket", post(ws::ticket))
        .route("/api/streams/{id}/ws", get(ws::upgrade))
        .route("/whip/{id}", post(whip::publish).options(whip::options))
        .route(
            "/whip/{id}/sessions/{session}",
            axum::routing::delete(whip::end)
                .patch(whip::patch)
                .options(whip::options),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    if let Some(extra) = extra {
        // Again after the merge: the fallback reaches only the routes mounted before it.
        app = app
            .merge(extra)
            .method_not_allowed_fallback(method_not_allowed);
    }
    let limit = state.limits.max_body_bytes;
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        content_length_limit(limit, req, next)
    }))
    .layer(middleware::from_fn(utf8_path))
    .layer(middleware::from_fn_with_state(state, auth::require_token))
    .layer(cors(cors_origins))
    .layer(middleware::from_fn(whip::options_headers))
    .layer(
        TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
            // The path only: a WebSocket ticket in the query never reaches the logs.
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        }),
    )
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::ETAG, header::LINK])
        .max_age(std::time::Duration::from_secs(600))
}

/// The browser page (same origin as the API).
async fn index() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-cache")],
        axum::response::Html(include_str!("../../web/index.html")),
    )
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn not_found() -> Error {
    Error::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

async fn content_length_limit(limit: usize, req: Request, next: Next) -> Response {
    let too_big = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64);
    if too_big {
        return too_large(limit).into_response();
    }
    next.run(req).await
}

/// A path whose percent-decoding is not UTF-8 would be refused by axum's `Path` extractor
/// with a plain-text 400; it gets the JSON `invalid_request` instead, for every route.
async fn utf8_path(req: Request, next: Next) -> Response {
    if std::str::from_utf8(&percent_decoded(req.uri().path())).is_err() {
        return Error::new(
            ErrorCode::InvalidRequest,
            "the path is not UTF-8 once percent-decoded",
        )
        .into_response();
    }
    next.run(req).await
}

/// `%XX` decoded; anything else (a lone or malformed `%` too) kept as it is.
fn percent_decoded(path: &str) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn too_large(limit: usize) -> Error {
    Error::new(
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The media type of a request, lower case, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

/// Reads a body of at most `limit` bytes (413 `payload_too_large` beyond).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, Error> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit))
}

/// A JSON body: `application/json` (415 otherwise), within the body limit (413), valid for
/// `T` (400 `invalid_request` with serde's reason).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if media_type(req.headers()).as_deref() != Some("application/json") {
            return Err(Error::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = read_body(req.into_body(), state.limits.max_body_bytes).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            Error::new(
                ErrorCode::InvalidRequest,
                format!(
                    "invalid JSON body: {}",
                    crate::webrtc::sdp::clip(&e.to_string())
                ),
            )
        })
    }
}

/// `SocketAddr` of the client when the server was started with connect info.
pub(crate) fn client_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

#[cfg(test)]
mod tests {
    use super::percent_decoded;

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decoded("/a%2Fb%c3%a9"), b"/a/b\xc3\xa9");
        assert_eq!(percent_decoded("/%ZZ/%+f/%4"), b"/%ZZ/%+f/%4");
        assert!(std::str::from_utf8(&percent_decoded("/api/streams/%C3%28")).is_err());
    }
}
