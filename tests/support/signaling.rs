//! The server's API as a publisher sees it: create a stream, WHIP (RFC 9725) offer/answer and
//! DELETE, and the WebSocket signaling (`offer` -> `answer`, `state`/`error` messages, `bye`).
//! Every network wait has a timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use super::within;

const HTTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A stream as `POST /api/streams` created it.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// Its id.
    pub id: String,
    /// Absolute WHIP endpoint.
    pub whip_url: String,
    /// Absolute WebSocket signaling URL as the API gave it.
    pub ws_url: String,
    /// The whole response.
    pub json: Value,
}

/// An authorized client of one server's API.
#[derive(Debug, Clone)]
pub struct Api {
    /// `http://127.0.0.1:PORT`.
    pub base: url::Url,
    token: String,
    http: reqwest::Client,
}

/// A WHIP session the server created.
#[derive(Debug, Clone)]
pub struct WhipSession {
    /// The absolute session URL (from `Location`).
    pub location: String,
    /// The SDP answer.
    pub answer: String,
}

impl Api {
    /// A client for the server at `base` with the API token.
    pub fn new(base: &str, token: &str) -> Api {
        super::install_crypto_provider();
        Api {
            base: url::Url::parse(base).expect("server base URL"),
            token: token.to_string(),
            http: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                .build()
                .expect("HTTP client"),
        }
    }

    /// The API token (for the browser page).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Resolves a possibly relative URL the server handed out against `base`.
    pub fn absolute(&self, url: &str) -> String {
        self.base.join(url).expect("resolvable URL").to_string()
    }

    /// `POST /api/streams` with one RTMP destination; asserts 201 and the fields issue 3 names.
    pub async fn create_stream(&self, title: &str, rtmp_url: &str) -> StreamInfo {
        self.create_stream_from(json!({
            "title": title,
            "destinations": [{"type": "rtmp", "url": rtmp_url}],
        }))
        .await
    }

    /// `POST /api/streams` with `body`; asserts 201 and the fields issue 3 names.
    pub async fn create_stream_from(&self, body: Value) -> StreamInfo {
        let resp = self
            .http
            .post(self.absolute("/api/streams"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST /api/streams");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(
            status.as_u16(),
            201,
            "POST /api/streams answered {status}: {text}"
        );
        let json: Value = serde_json::from_str(&text).expect("stream JSON");
        let field = |name: &str| -> String {
            json[name]
                .as_str()
                .unwrap_or_else(|| panic!("POST /api/streams: no string `{name}` in {json}"))
                .to_string()
        };
        assert!(json.get("state").is_some(), "no `state` in {json}");
        StreamInfo {
            id: field("id"),
            whip_url: self.absolute(&field("whip_url")),
            ws_url: field("ws_url"),
            json: json.clone(),
        }
    }

    /// `GET /api/streams/{id}` (asserts 200).
    /// Follows the stream's Server-Sent Events in the background; the returned text grows
    /// with every event received (until the server ends the stream of events).
    pub async fn follow_events(&self, id: &str) -> std::sync::Arc<std::sync::Mutex<String>> {
        let mut resp = reqwest::Client::new()
            .get(self.absolute(&format!("/api/streams/{id}/events")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET events");
        assert_eq!(resp.status().as_u16(), 200, "GET /api/streams/{id}/events");
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = text.clone();
        tokio::spawn(async move {
            while let Ok(Some(chunk)) = resp.chunk().await {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk));
            }
        });
        text
    }

    pub async fn get_stream(&self, id: &str) -> Value {
        let resp = self
            .http
            .get(self.absolute(&format!("/api/streams/{id}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET /api/streams/{id}");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 200, "GET stream answered {status}: {text}");
        serde_json::from_str(&text).expect("stream JSON")
    }

    /// `POST /api/streams/{id}/stop`; returns the status and body.
    pub async fn stop_stream(&self, id: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.absolute(&format!("/api/streams/{id}/stop")))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("POST /api/streams/{id}/stop");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// WHIP: `POST whip_url` with the offer; asserts `201 Created`, `Location` and an SDP answer.
    pub async fn whip_offer(&self, whip_url: &str, offer: &str) -> WhipSession {
        let resp = self
            .http
            .post(whip_url)
            .bearer_auth(&self.token)
            .header("Content-Type", "application/sdp")
            .body(offer.to_string())
            .send()
            .await
            .expect("WHIP POST");
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let answer = resp.text().await.unwrap_or_default();
        assert_eq!(
            status.as_u16(),
            201,
            "WHIP POST answered {status}: {answer}"
        );
        assert!(
            content_type.starts_with("application/sdp"),
            "WHIP answer has Content-Type {content_type:?}"
        );
        let location = location.expect("WHIP 201 without a Location header");
        let location = url::Url::parse(whip_url)
            .and_then(|base| base.join(&location))
            .expect("resolvable Location")
            .to_string();
        WhipSession { location, answer }
    }

    /// WHIP: `POST whip_url` with any body; returns the status and the body (for refusals).
    pub async fn whip_post_raw(&self, whip_url: &str, offer: &str) -> (u16, String) {
        let resp = self
            .http
            .post(whip_url)
            .bearer_auth(&self.token)
            .header("Content-Type", "application/sdp")
            .body(offer.to_string())
            .send()
            .await
            .expect("WHIP POST");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// WHIP: `DELETE` the session; returns the status.
    pub async fn whip_delete(&self, location: &str) -> u16 {
        self.http
            .delete(location)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("WHIP DELETE")
            .status()
            .as_u16()
    }

    /// The URL a WebSocket publisher connects to: `POST /api/streams/{id}/ws-ticket` (bearer
    /// token) answers a single-use ticket and the `ws_url` that carries it.
    pub async fn ws_connect_url(&self, stream: &StreamInfo) -> String {
        let resp = self
            .http
            .post(self.absolute(&format!("/api/streams/{}/ws-ticket", stream.id)))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("POST /api/streams/{id}/ws-ticket");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status.as_u16(), 201, "ws-ticket answered {status}: {text}");
        let json: Value = serde_json::from_str(&text).expect("ticket JSON");
        let url = json["ws_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no `ws_url` in the ticket answer {json}"));
        assert!(
            !url.contains(&self.token),
            "the WebSocket URL carries the API token"
        );
        self.absolute(url).replacen("http://", "ws://", 1)
    }
}

/// One WebSocket signaling connection; the server's messages are collected in the background
/// once the answer has arrived.
#[derive(Debug)]
pub struct WsSignaling {
    sink: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Message,
    >,
    messages: Arc<Mutex<Vec<Value>>>,
    answer: Option<tokio::sync::oneshot::Receiver<Result<String, String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl WsSignaling {
    /// Connects to `ws_url`.
    pub async fn connect(ws_url: &str) -> WsSignaling {
        let (ws, _resp) = within(
            HTTP_TIMEOUT,
            "WebSocket connect",
            tokio_tungstenite::connect_async(ws_url),
        )
        .await
        .unwrap_or_else(|e| panic!("WebSocket connect to {ws_url}: {e}"));
        let (sink, mut stream) = ws.split();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let (answer_tx, answer_rx) = tokio::sync::oneshot::channel();
        let collected = messages.clone();
        let reader = tokio::spawn(async move {
            let mut answer_tx = Some(answer_tx);
            while let Some(msg) = stream.next().await {
                let text = match msg {
                    Ok(Message::Text(t)) => t.to_string(),
                    Ok(Message::Close(frame)) => {
                        collected
                            .lock()
                            .unwrap()
                            .push(json!({"type": "_closed", "frame": format!("{frame:?}")}));
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        collected
                            .lock()
                            .unwrap()
                            .push(json!({"type": "_error", "message": e.to_string()}));
                        break;
                    }
                };
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| json!({"type": "_unparsed", "text": text}));
                match value["type"].as_str() {
                    Some("answer") => {
                        if let Some(tx) = answer_tx.take() {
                            let sdp = value["sdp"].as_str().unwrap_or_default().to_string();
                            let _ = tx.send(Ok(sdp));
                        }
                    }
                    Some("error") => {
                        if let Some(tx) = answer_tx.take() {
                            let _ = tx.send(Err(value.to_string()));
                        }
                    }
                    _ => {}
                }
                collected.lock().unwrap().push(value);
            }
            if let Some(tx) = answer_tx.take() {
                let _ = tx.send(Err("the WebSocket closed before an answer".into()));
            }
        });
        WsSignaling {
            sink,
            messages,
            answer: Some(answer_rx),
            reader,
        }
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, value: Value) {
        within(
            HTTP_TIMEOUT,
            "WebSocket send",
            self.sink.send(Message::text(value.to_string())),
        )
        .await
        .expect("WebSocket send");
    }

    /// Sends the offer and waits for the answer (or an error message).
    pub async fn offer(&mut self, sdp: &str) -> Result<String, String> {
        self.send(json!({"type": "offer", "sdp": sdp})).await;
        let rx = self.answer.take().expect("one offer per connection");
        within(Duration::from_secs(20), "WebSocket answer", rx)
            .await
            .unwrap_or_else(|_| Err("answer channel dropped".into()))
    }

    /// Every message the server sent so far.
    pub fn messages(&self) -> Vec<Value> {
        self.messages.lock().unwrap().clone()
    }

    /// Sends `bye` and closes the connection.
    pub async fn bye(mut self) {
        self.send(json!({"type": "bye"})).await;
        let _ = within(HTTP_TIMEOUT, "WebSocket close", self.sink.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        self.reader.abort();
    }
}
