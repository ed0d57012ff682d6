//! `/api/streams`: create, list, read, start, stop, delete, and the event stream (SSE).
//!
//! Every handler acts as the request's [`Caller`] (set by the authentication layer): a stream
//! created with a YouTube session cookie belongs to that account, and other accounts get
//! `not_found` for it and do not list it; the API token sees and manages every stream.

use std::convert::Infallible;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::stream::{self, Stream as FuturesStream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{AppState, JsonBody};
use crate::error::{Error, ErrorCode, Result};
use crate::streams::{Caller, CreateStream, StreamSnapshot, StreamState};

/// A stream as the API answers it: the snapshot plus where to publish.
#[derive(Debug, serde::Serialize)]
pub struct StreamView {
    /// Everything about the stream.
    #[serde(flatten)]
    pub stream: StreamSnapshot,
    /// WHIP endpoint (POST an SDP offer with the bearer token).
    pub whip_url: String,
    /// WebSocket signaling; connect with `?ticket=` from `POST .../ws-ticket` (or with the
    /// bearer token in the `Authorization` header when the client can set headers).
    pub ws_url: String,
}

pub(crate) fn view(state: &AppState, stream: StreamSnapshot) -> StreamView {
    StreamView {
        whip_url: format!("{}/whip/{}", state.base_url, stream.id),
        ws_url: format!("{}/api/streams/{}/ws", state.ws_base(), stream.id),
        stream,
    }
}

/// `POST /api/streams`.
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateStream>,
) -> Result<Response> {
    let stream = state.manager.create(req, &caller)?;
    let location = format!("/api/streams/{}", stream.id());
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(view(&state, stream.snapshot())),
    )
        .into_response())
}

/// Query of `GET /api/streams`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only streams in this state.
    pub state: Option<String>,
    /// Skip this many (default 0).
    pub offset: Option<usize>,
    /// At most this many (default 50, at most 200).
    pub limit: Option<usize>,
}

/// `GET /api/streams`.
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(q) = query.map_err(|e| {
        Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "invalid query: {}",
                crate::webrtc::sdp::clip(&e.body_text())
            ),
        )
    })?;
    let filter = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(StreamState::parse(s).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidRequest,
                "state must be one of created, ready, starting, live, reconnecting, stopping, ended, failed",
            )
        })?),
    };
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(50).min(200);
    let (page, total) = state.manager.list(&caller, filter, offset, limit);
    let streams: Vec<StreamView> = page.into_iter().map(|s| view(&state, s)).collect();
    Ok(Json(serde_json::json!({
        "streams": streams,
        "total": total,
        "offset": offset,
        "limit": limit,
    }))
    .into_response())
}

/// `GET /api/streams/{id}`.
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>> {
    Ok(Json(view(&state, visible_snapshot(&state, &caller, &id)?)))
}

/// The snapshot of stream `id` (live or stored) if `caller` may see it, else `not_found`.
fn visible_snapshot(state: &AppState, caller: &Caller, id: &str) -> Result<StreamSnapshot> {
    let snapshot = state.manager.snapshot(id)?;
    if caller.can_see(snapshot.owner.as_deref()) {
        Ok(snapshot)
    } else {
        Err(Error::new(ErrorCode::NotFound, "no such stream"))
    }
}

/// `POST /api/streams/{id}/stop`.
pub async fn stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>> {
    let stream = state.visible_stream(&caller, &id)?;
    stream.stop()?;
    Ok(Json(view(&state, stream.snapshot())))
}

/// `POST /api/streams/{id}/start`.
pub async fn start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>> {
    let stream = state.visible_stream(&caller, &id)?;
    stream.start()?;
    Ok(Json(view(&state, stream.snapshot())))
}

/// `POST /api/streams/{id}/destinations` with `{"type":"rtmp","url":".."}`.
pub async fn add_destination(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    JsonBody(spec): JsonBody<crate::streams::DestinationSpec>,
) -> Result<Response> {
    let stream = state.visible_stream(&caller, &id)?;
    let destination = stream.add_destination(spec, &caller)?;
    Ok((StatusCode::CREATED, Json(destination)).into_response())
}

/// `DELETE /api/streams/{id}/destinations/{destination}`.
pub async fn remove_destination(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, destination)): Path<(String, String)>,
) -> Result<StatusCode> {
    let stream = state.visible_stream(&caller, &id)?;
    stream.remove_destination(&destination)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /api/streams/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    visible_snapshot(&state, &caller, &id)?;
    state.manager.delete(&id)?;
    // The record leaves the store on its writer thread: a read after this 204 must be a 404.
    state.manager.flush_store().await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/streams/{id}/events`: Server-Sent Events. First every transition so far
/// (`event: state`), then each new one and every destination change (`event: destination`).
pub async fn events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response> {
    let stream = state.visible_stream(&caller, &id)?;
    let rx = stream.subscribe_events();
    let history = stream.history();
    let past = stream::iter(
        history
            .into_iter()
            .map(|t| Ok::<_, Infallible>(sse_json("state", &t))),
    );
    let live = BroadcastStream::new(rx).filter_map(|e| async move {
        let e = e.ok()?;
        Some(Ok::<_, Infallible>(match &e {
            crate::streams::StreamEvent::State(t) => sse_json("state", t),
            crate::streams::StreamEvent::Destination { .. } => sse_json("destination", &e),
            crate::streams::StreamEvent::Publisher { .. } => sse_json("publisher", &e),
        }))
    });
    let mut shutdown = state.shutdown.clone();
    let body: std::pin::Pin<
        Box<dyn FuturesStream<Item = std::result::Result<SseEvent, Infallible>> + Send>,
    > = Box::pin(past.chain(live).take_until(async move {
        let _ = shutdown.wait_for(|s| *s).await;
    }));
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn sse_json<T: serde::Serialize>(event: &str, value: &T) -> SseEvent {
    SseEvent::default()
        .event(event)
        .data(serde_json::to_string(value).unwrap_or_else(|_| "{}".into()))
}
