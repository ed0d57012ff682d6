//! WebSocket signaling at `/api/streams/{id}/ws`.
//!
//! A browser cannot set headers on a WebSocket, and the long-lived API token never goes into a
//! URL: `POST /api/streams/{id}/ws-ticket` (with the bearer token) returns a single-use ticket
//! valid for 30 s, and the socket connects with `?ticket=<ticket>`. Clients that can set
//! headers may send `Authorization: Bearer` instead; a browser signed in with Google may also
//! connect with its session cookie to a stream of its own account (only from this server's own
//! page: a foreign `Origin` is refused). A ticket is issued only for a stream its caller may
//! see (the YouTube session cookie works for `ws-ticket` as well).
//!
//! Client messages: `{"type":"offer","sdp":..}`, `{"type":"candidate","candidate":..,
//! "sdpMid":..,"sdpMLineIndex":..}`, `{"type":"bye"}`. Server messages: `{"type":"answer",
//! "sdp":..}`, `{"type":"state",..}` on every change, `{"type":"error","code":..,"message":..}`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::broadcast;

use super::AppState;
use crate::error::{Error, ErrorCode, Result};
use crate::streams::{Caller, Stream};

/// How long a ticket is valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Outstanding tickets at most.
const MAX_TICKETS: usize = 1024;

/// Single-use tickets: ticket -> (stream id, expiry).
#[derive(Debug, Default)]
pub struct Tickets {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl Tickets {
    /// A new ticket for `stream_id`.
    pub fn issue(&self, stream_id: &str) -> String {
        let ticket = crate::config::random_token();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, exp)| *exp > now);
        if map.len() >= MAX_TICKETS {
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, (_, e))| *e)
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
        map.insert(ticket.clone(), (stream_id.to_string(), now + TICKET_TTL));
        ticket
    }

    /// Consumes `ticket` if it is valid for `stream_id`.
    pub fn redeem(&self, ticket: &str, stream_id: &str) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.remove(ticket) {
            Some((id, exp)) => id == stream_id && exp > Instant::now(),
            None => false,
        }
    }
}

/// `POST /api/streams/{id}/ws-ticket`.
pub async fn ticket(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response> {
    state.visible_stream(&caller, &id)?;
    let ticket = state.tickets.issue(&id);
    let ws_url = format!("{}/api/streams/{id}/ws?ticket={ticket}", state.ws_base());
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "ticket": ticket,
            "expires_in_s": TICKET_TTL.as_secs(),
            "ws_url": ws_url,
        })),
    )
        .into_response())
}

/// Query of the WebSocket route.
#[derive(Debug, serde::Deserialize)]
pub struct WsQuery {
    /// The single-use ticket.
    pub ticket: Option<String>,
}

/// `GET /api/streams/{id}/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: std::result::Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    ws: std::result::Result<
        WebSocketUpgrade,
        axum::extract::ws::rejection::WebSocketUpgradeRejection,
    >,
) -> Response {
    let ticket = query.ok().and_then(|Query(q)| q.ticket);
    // A ticket was issued to a caller that may see this stream.
    let caller = match ticket {
        Some(t) => state.tickets.redeem(&t, &id).then_some(Caller::Token),
        None if state.auth.headers_ok(&headers) => Some(Caller::Token),
        // The cookie rides along with any page's WebSocket: only our own page may use it.
        None if same_origin(&state, &headers) => state.session_caller(&headers),
        None => None,
    };
    let Some(caller) = caller else {
        return super::auth::unauthorized();
    };
    let stream = match state.visible_stream(&caller, &id) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return Error::new(
                ErrorCode::InvalidRequest,
                "this route takes a WebSocket upgrade",
            )
            .into_response()
        }
    };
    let soft = state.limits.max_ws_message_bytes;
    // Messages up to 4x the limit are read and answered with an error; beyond that the
    // connection itself is closed by the WebSocket layer.
    let hard = soft.saturating_mul(4).max(soft + 1024);
    ws.max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| Signaling::new(state, stream, soft).run(socket))
}

/// Whether the request comes from this server's own page (or from no page at all).
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(axum::http::header::ORIGIN) {
        None => true,
        Some(origin) => origin.as_bytes() == state.base_url.as_bytes(),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Offer {
        sdp: String,
    },
    Candidate {
        #[serde(default)]
        candidate: Option<String>,
        #[serde(default, rename = "sdpMid")]
        _sdp_mid: Option<String>,
        #[serde(default, rename = "sdpMLineIndex")]
        _sdp_mline_index: Option<u32>,
    },
    Bye,
}

struct Signaling {
    state: AppState,
    stream: std::sync::Arc<Stream>,
    limit: usize,
    session: Option<String>,
}

fn text(value: serde_json::Value) -> Message {
    Message::Text(Utf8Bytes::from(value.to_string()))
}

fn error_message(e: &Error) -> Message {
    text(serde_json::json!({"type": "error", "code": e.code, "message": e.message}))
}

impl Signaling {
    fn new(state: AppState, stream: std::sync::Arc<Stream>, limit: usize) -> Signaling {
        Signaling {
            state,
            stream,
            limit,
            session: None,
        }
    }

    fn state_message(&self) -> Message {
        let s = self.stream.snapshot();
        let destinations: Vec<serde_json::Value> = s
            .destinations
            .iter()
            .map(|d| serde_json::json!({"id": d.id, "url": d.url, "state": d.state, "error": d.error}))
            .collect();
        text(serde_json::json!({
            "type": "state",
            "state": s.state,
            "reason": s.reason,
            "error": s.error,
            "session_id": s.publisher.as_ref().map(|p| p.session_id.clone()),
            "publisher_lost": s.publisher_lost,
            "publisher_disconnected": s.publisher.as_ref().is_some_and(|p| p.disconnected),
            "destinations": destinations,
        }))
    }

    async fn run(mut self, mut socket: WebSocket) {
        let mut events = self.stream.subscribe_events();
        let mut shutdown = self.state.shutdown.clone();
        if socket.send(self.state_message()).await.is_err() {
            return;
        }
        loop {
            let reply = tokio::select! {
                msg = socket.recv() => match msg {
                    Some(Ok(msg)) => match self.on_message(msg) {
                        Reply::Send(m) => Some(m),
                        Reply::None => None,
                        Reply::Close(m) => {
                            let _ = socket.send(m).await;
                            let _ = socket.send(Message::Close(None)).await;
                            return;
                        }
                    },
                    Some(Err(e)) => {
                        // Oversized beyond the hard cap, or a protocol error: say so, then close.
                        let err = Error::new(ErrorCode::InvalidRequest, format!("WebSocket error: {}", crate::webrtc::sdp::clip(&e.to_string())));
                        let _ = socket.send(error_message(&err)).await;
                        return;
                    }
                    None => return,
                },
                ev = events.recv() => match ev {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => Some(self.state_message()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = until_true(&mut shutdown) => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            };
            if let Some(m) = reply {
                if socket.send(m).await.is_err() {
                    return;
                }
            }
        }
    }

    fn on_message(&mut self, msg: Message) -> Reply {
        let data = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return Reply::Send(error_message(&Error::new(
                    ErrorCode::InvalidRequest,
                    "binary messages are not understood: send JSON text",
                )))
            }
            Message::Ping(_) | Message::Pong(_) => return Reply::None,
            Message::Close(_) => return Reply::Close(Message::Close(None)),
        };
        if data.len() > self.limit {
            return Reply::Send(error_message(&Error::new(
                ErrorCode::PayloadTooLarge,
                format!("message larger than {} bytes", self.limit),
            )));
        }
        let parsed: ClientMessage = match serde_json::from_str(data.as_str()) {
            Ok(m) => m,
            Err(e) => {
                return Reply::Send(error_message(&Error::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "not a signaling message ({}): expected {{\"type\":\"offer\"|\"candidate\"|\"bye\",..}}",
                        crate::webrtc::sdp::clip(&e.to_string())
                    ),
                )))
            }
        };
        match parsed {
            ClientMessage::Offer { sdp } => {
                match self.state.manager.publish(self.stream.id(), &sdp) {
                    Ok((session, answer)) => {
                        self.session = Some(session);
                        Reply::Send(text(serde_json::json!({"type": "answer", "sdp": answer})))
                    }
                    Err(e) => Reply::Send(error_message(&e)),
                }
            }
            ClientMessage::Candidate { candidate, .. } => {
                let Some(session) = self.session.as_deref() else {
                    return Reply::Send(error_message(&Error::new(
                        ErrorCode::Conflict,
                        "send an offer before candidates",
                    )));
                };
                match candidate.as_deref().map(str::trim) {
                    None | Some("") => Reply::None,
                    Some(c) => match self.stream.add_candidate(session, c) {
                        Ok(()) => Reply::None,
                        Err(e) => Reply::Send(error_message(&e)),
                    },
                }
            }
            ClientMessage::Bye => {
                if let Some(session) = self.session.take() {
                    let _ = self.stream.end_session(&session);
                }
                Reply::Close(text(serde_json::json!({"type": "bye"})))
            }
        }
    }
}

async fn until_true(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

enum Reply {
    Send(Message),
    None,
    Close(Message),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_and_per_stream() {
        let t = Tickets::default();
        let a = t.issue("s1");
        assert!(!t.redeem(&a, "s2"));
        let b = t.issue("s1");
        assert!(t.redeem(&b, "s1"));
        assert!(!t.redeem(&b, "s1"));
        assert!(!t.redeem("nope", "s1"));
    }
}
