//! WHIP (RFC 9725): `POST /whip/{id}` with an SDP offer answers `201 Created`, the SDP answer
//! and a `Location` for the session; `DELETE` on that location ends it; `PATCH` takes trickled
//! candidates (`application/trickle-ice-sdpfrag`, 204); `OPTIONS` answers preflights.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::{media_type, read_body, AppState};
use crate::error::{Error, ErrorCode, Result};
use crate::streams::Caller;

/// `POST /whip/{id}`.
pub async fn publish(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    if media_type(&headers).as_deref() != Some("application/sdp") {
        return Err(Error::new(
            ErrorCode::UnsupportedMediaType,
            "a WHIP offer must be sent as Content-Type: application/sdp",
        ));
    }
    // 404 before reading a body meant for nobody (or for another account's stream).
    state.visible_stream(&caller, &id)?;
    let bytes = read_body(body, state.limits.max_body_bytes).await?;
    let offer = std::str::from_utf8(&bytes)
        .map_err(|_| Error::new(ErrorCode::InvalidSdp, "the SDP offer is not UTF-8 text"))?;
    if offer.trim().is_empty() {
        return Err(Error::new(ErrorCode::InvalidSdp, "the SDP offer is empty"));
    }
    let (session, answer) = state.manager.publish(&id, offer)?;
    let location = format!("/whip/{id}/sessions/{session}");
    let mut response = (StatusCode::CREATED, answer).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{session}\"")) {
        h.insert(header::ETAG, v);
    }
    Ok(response)
}

/// `DELETE /whip/{id}/sessions/{session}`.
pub async fn end(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, session)): Path<(String, String)>,
) -> Result<StatusCode> {
    let stream = state.visible_stream(&caller, &id)?;
    stream.end_session(&session)?;
    Ok(StatusCode::OK)
}

/// `PATCH /whip/{id}/sessions/{session}`: trickled candidates are added (ICE-lite needs none,
/// but they do no harm); an ICE restart is not supported (405, publish again instead).
pub async fn patch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode> {
    if media_type(&headers).as_deref() != Some("application/trickle-ice-sdpfrag") {
        return Err(Error::new(
            ErrorCode::UnsupportedMediaType,
            "PATCH takes Content-Type: application/trickle-ice-sdpfrag",
        ));
    }
    let stream = state.visible_stream(&caller, &id)?;
    let bytes = read_body(body, state.limits.max_body_bytes).await?;
    let frag = String::from_utf8_lossy(&bytes);
    if stream.publisher_session().as_deref() != Some(session.as_str()) {
        return Err(Error::new(
            ErrorCode::NotFound,
            "no such publisher session on this stream",
        ));
    }
    if headers
        .get(header::IF_MATCH)
        .is_some_and(|v| v.as_bytes() == b"\"*\"" || v.as_bytes() == b"*")
    {
        return Err(Error::new(
            ErrorCode::MethodNotAllowed,
            "ICE restarts are not supported: DELETE this session and publish again",
        ));
    }
    for line in frag.lines().map(str::trim) {
        if let Some(candidate) = line.strip_prefix("a=candidate:") {
            stream.add_candidate(&session, &format!("candidate:{candidate}"))?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Adds `Accept-Post`/`Accept-Patch` to `OPTIONS` answers on WHIP routes (the CORS layer
/// answers every `OPTIONS` itself).
pub async fn options_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let whip_options =
        req.method() == axum::http::Method::OPTIONS && req.uri().path().starts_with("/whip/");
    let mut response = next.run(req).await;
    if whip_options {
        let h = response.headers_mut();
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("OPTIONS, POST, PATCH, DELETE"),
        );
        h.insert(
            header::HeaderName::from_static("accept-post"),
            HeaderValue::from_static("application/sdp"),
        );
        h.insert(
            header::HeaderName::from_static("accept-patch"),
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
    }
    response
}

/// `OPTIONS` on WHIP routes (no token needed; CORS headers come from the CORS layer).
pub async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (header::ALLOW, "OPTIONS, POST, PATCH, DELETE"),
            (
                header::HeaderName::from_static("accept-post"),
                "application/sdp",
            ),
            (
                header::HeaderName::from_static("accept-patch"),
                "application/trickle-ice-sdpfrag",
            ),
        ],
    )
        .into_response()
}
