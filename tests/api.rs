//! The HTTP API, WHIP and WebSocket signaling against an in-process server on free ports:
//! authentication on every route, exact statuses and error codes for bad input, and the
//! server keeps serving after each.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::media::{Direction, MediaKind};
use str0m::{Rtc, RtcConfig};
use streamify::config::Config;
use streamify::server::RunningServer;
use tokio_tungstenite::tungstenite::Message;

mod support;

use support::api::{client, server_named, url, TOKEN};

async fn server() -> RunningServer {
    server_with(|_| {}).await
}

async fn server_with(edit: impl FnOnce(&mut Config)) -> RunningServer {
    server_named("api", edit).await
}

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_string();
    let message = body["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_string();
    (status, code, message)
}

async fn create_stream(s: &RunningServer, key: &str) -> Value {
    let r = client()
        .post(url(s, "/api/streams"))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "t", "destinations": [{"type": "rtmp", "url": format!("rtmp://127.0.0.1:1/live/{key}")}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    r.json().await.unwrap()
}

async fn assert_serving(s: &RunningServer) {
    let r = client().get(url(s, "/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "server must keep serving");
    let r = client()
        .get(url(s, "/api/streams"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "server must keep serving");
}

/// A real offer from a str0m client: H.264 + Opus, or VP8 only.
fn offer(h264: bool) -> (Rtc, String) {
    let config = if h264 {
        RtcConfig::new()
            .clear_codecs()
            .enable_h264(true)
            .enable_opus(true, false)
    } else {
        RtcConfig::new().clear_codecs().enable_vp8(true)
    };
    let mut rtc = config.build(Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap(),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    if h264 {
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    }
    let (offer, _pending) = api.apply().expect("an offer");
    (rtc, offer.to_sdp_string())
}

#[tokio::test]
async fn every_route_needs_the_token() {
    let s = server().await;
    let stream = create_stream(&s, "k1").await;
    let id = stream["id"].as_str().unwrap();
    let routes: Vec<(&str, String)> = vec![
        ("GET", "/api/streams".into()),
        ("POST", "/api/streams".into()),
        ("GET", format!("/api/streams/{id}")),
        ("DELETE", format!("/api/streams/{id}")),
        ("POST", format!("/api/streams/{id}/stop")),
        ("POST", format!("/api/streams/{id}/start")),
        ("GET", format!("/api/streams/{id}/events")),
        ("POST", format!("/api/streams/{id}/ws-ticket")),
        ("GET", format!("/api/streams/{id}/ws")),
        ("POST", format!("/whip/{id}")),
        ("DELETE", format!("/whip/{id}/sessions/x")),
        ("PATCH", format!("/whip/{id}/sessions/x")),
        ("GET", "/api/streams/nope".into()),
        ("POST", "/whip/nope".into()),
        ("GET", "/metrics".into()),
        ("POST", format!("/api/streams/{id}/destinations")),
        ("DELETE", format!("/api/streams/{id}/destinations/d1")),
        ("GET", "/api/youtube/account".into()),
        ("DELETE", "/api/youtube/account".into()),
    ];
    for (method, path) in &routes {
        for token in [None, Some("wrong"), Some("")] {
            let mut req = client().request(method.parse().unwrap(), url(&s, path));
            if let Some(t) = token {
                req = req.header("authorization", format!("Bearer {t}"));
            }
            let r = req.send().await.unwrap();
            let (status, code, _) = error_of(r).await;
            assert_eq!(
                (status, code.as_str()),
                (401, "unauthorized"),
                "{method} {path} with token {token:?}"
            );
        }
    }
    // The stream is untouched and the server serves.
    let r = client()
        .get(url(&s, &format!("/api/streams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_serving(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn web_page_and_health_are_open() {
    let s = server().await;
    let r = client().get(url(&s, "/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html"));
    let r = client().get(url(&s, "/healthz")).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
    s.shutdown().await;
}

#[tokio::test]
async fn create_read_list_stop_delete() {
    let s = server().await;
    let key = "live-secret-key-0123456789";
    let created = create_stream(&s, key).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "created");
    assert_eq!(created["start"], "on_publish");
    assert_eq!(
        created["whip_url"],
        format!("http://{}/whip/{id}", s.http_addr())
    );
    assert_eq!(
        created["ws_url"],
        format!("ws://{}/api/streams/{id}/ws", s.http_addr())
    );
    let text = created.to_string();
    assert!(!text.contains(key), "the stream key leaked: {text}");
    assert_eq!(
        created["destinations"][0]["url"],
        "rtmp://127.0.0.1:1/live/***6789"
    );
    assert_eq!(created["destinations"][0]["state"], "idle");

    let got: Value = client()
        .get(url(&s, &format!("/api/streams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["id"], id.as_str());
    assert!(got["media"]["video"]["frames_in"].is_u64());

    let list: Value = client()
        .get(url(&s, "/api/streams?state=created&limit=10"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["streams"][0]["id"], id.as_str());
    let r = client()
        .get(url(&s, "/api/streams?state=bogus"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "invalid_request");

    // Manual start before a publisher: conflict.
    let r = client()
        .post(url(&s, &format!("/api/streams/{id}/start")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 409);

    let stopped: Value = client()
        .post(url(&s, &format!("/api/streams/{id}/stop")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        ["stopping", "ended"].contains(&stopped["state"].as_str().unwrap()),
        "{stopped}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Value = client()
            .get(url(&s, &format!("/api/streams/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == "ended" {
            break;
        }
        assert!(Instant::now() < deadline, "stream did not end: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client()
        .post(url(&s, &format!("/api/streams/{id}/stop")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (
            409,
            "conflict".into(),
            "cannot stop a stream that is ended".into()
        )
    );
    let r = client()
        .delete(url(&s, &format!("/api/streams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let r = client()
        .get(url(&s, &format!("/api/streams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "not_found");
    s.shutdown().await;
}

#[tokio::test]
async fn bad_create_requests() {
    let s = server().await;
    let post = |body: String, ct: &'static str| {
        client()
            .post(url(&s, "/api/streams"))
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body(body)
    };
    let cases: Vec<(String, &str, u16, &str)> = vec![
        ("{".into(), "application/json", 400, "invalid_request"),
        ("{}".into(), "application/json", 400, "invalid_request"),
        (
            json!({"destinations": []}).to_string(),
            "application/json",
            400,
            "invalid_request",
        ),
        (
            json!({"destinations": [{"type": "rtmp", "url": "http://x/a/b"}]}).to_string(),
            "application/json",
            400,
            "invalid_request",
        ),
        (
            json!({"destinations": [{"type": "srt", "url": "srt://x"}]}).to_string(),
            "application/json",
            400,
            "invalid_request",
        ),
        (
            json!({"destinations": [{"type": "rtmp", "url": "rtmp://h/a/k"}], "start": "later"})
                .to_string(),
            "application/json",
            400,
            "invalid_request",
        ),
        (
            json!({"destinations": [{"type": "rtmp", "url": "rtmp://h/a/k"}]}).to_string(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            json!({"title": "x".repeat(100_000), "destinations": []}).to_string(),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            json!({"destinations": (0..9).map(|i| json!({"type": "rtmp", "url": format!("rtmp://h/a/k{i}")})).collect::<Vec<_>>()}).to_string(),
            "application/json",
            429,
            "too_many_destinations",
        ),
    ];
    for (body, ct, status, code) in cases {
        let r = post(body.clone(), ct).send().await.unwrap();
        let (got_status, got_code, message) = error_of(r).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "body {}: {message}",
            &body[..body.len().min(80)]
        );
        assert!(!message.is_empty());
    }
    // Unknown routes and methods are JSON errors too.
    let r = client()
        .get(url(&s, "/api/nothing"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 404);
    let r = client()
        .put(url(&s, "/api/streams"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 405);
    assert_serving(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn destinations_are_added_and_removed_and_metrics_count_streams() {
    let s = server_with(|c| c.limits.max_destinations = 2).await;
    let stream = create_stream(&s, "first-key").await;
    let id = stream["id"].as_str().unwrap();
    let add = |body: Value| {
        client()
            .post(url(&s, &format!("/api/streams/{id}/destinations")))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let r = add(json!({"type": "rtmp", "url": "rtmps://h.example/live2/second-secret-key-1234"}))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["id"], "d2");
    assert_eq!(d["url"], "rtmps://h.example/live2/***1234");
    assert_eq!(d["state"], "idle");
    let r = add(json!({"type": "rtmp", "url": "rtmp://h/a/k3"}))
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "too_many_destinations");
    let r = add(json!({"type": "rtmp", "url": "ftp://h/a/k3"}))
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "invalid_request");
    let del = |did: &str| {
        client()
            .delete(url(&s, &format!("/api/streams/{id}/destinations/{did}")))
            .bearer_auth(TOKEN)
            .send()
    };
    assert_eq!(del("d9").await.unwrap().status().as_u16(), 404);
    assert_eq!(del("d1").await.unwrap().status().as_u16(), 204);
    assert_eq!(error_of(del("d2").await.unwrap()).await.1, "conflict");
    let v: Value = client()
        .get(url(&s, &format!("/api/streams/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = v["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d2"]);

    let text = client()
        .get(url(&s, "/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("# TYPE streamify_streams gauge"), "{text}");
    assert!(
        text.contains("streamify_streams{state=\"created\"} 1"),
        "{text}"
    );
    assert!(text.contains(&format!(
        "streamify_destination_up{{stream=\"{id}\",destination=\"d2\"}} 0"
    )));
    assert!(!text.contains("secret"));

    // Stopped streams take no new destinations.
    client()
        .post(url(&s, &format!("/api/streams/{id}/stop")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let r = add(json!({"type": "rtmp", "url": "rtmp://h/a/k4"}))
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "conflict");
    assert_serving(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn too_many_streams() {
    let s = server_with(|c| c.limits.max_streams = 2).await;
    create_stream(&s, "a").await;
    create_stream(&s, "b").await;
    let r = client()
        .post(url(&s, "/api/streams"))
        .bearer_auth(TOKEN)
        .json(&json!({"destinations": [{"type": "rtmp", "url": "rtmp://h/a/c"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "too_many_streams",);
    assert_serving(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn whip_bad_input_and_second_publisher() {
    let s = server().await;
    let stream = create_stream(&s, "whipkey").await;
    let id = stream["id"].as_str().unwrap();
    let whip = url(&s, &format!("/whip/{id}"));
    let post = |target: String, ct: &'static str, body: String| {
        client()
            .post(target)
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body(body)
    };
    let (_client_rtc, h264_offer) = offer(true);
    let (_vp8_rtc, vp8_offer) = offer(false);

    let r = post(whip.clone(), "application/json", h264_offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 415);
    let r = post(whip.clone(), "application/sdp", "hello, not SDP".into())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "invalid_sdp");
    let r = post(whip.clone(), "application/sdp", String::new())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 400);
    let r = post(whip.clone(), "application/sdp", vp8_offer)
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (422, "no_h264_offered"));
    assert!(message.contains("H.264"), "{message}");
    let r = post(whip.clone(), "application/sdp", "v=0\r\n".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(r).await,
        (
            413,
            "payload_too_large".into(),
            format!("the request body is larger than {} bytes", 64 * 1024)
        )
    );
    let r = post(
        url(&s, "/whip/unknown-stream"),
        "application/sdp",
        h264_offer.clone(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(error_of(r).await.0, 404);

    // A valid offer: 201, Location, an SDP answer with H.264 and candidates in every section.
    let r = post(whip.clone(), "application/sdp", h264_offer.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/sdp"
    );
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&format!("/whip/{id}/sessions/")),
        "{location}"
    );
    let answer = r.text().await.unwrap();
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(answer.contains("a=ice-lite"));
    let sections = answer.split("\r\nm=").count() - 1;
    assert_eq!(answer.matches("a=candidate:").count(), sections, "{answer}");
    str0m::change::SdpAnswer::from_sdp_string(&answer).expect("a parseable answer");

    // A second publisher: 409.
    let (_other, second) = offer(true);
    let r = post(whip.clone(), "application/sdp", second.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.1, "publisher_exists");

    // Trickle PATCH: wrong type 415, right type 204.
    let patch = |ct: &'static str| {
        client()
            .patch(url(&s, &location))
            .bearer_auth(TOKEN)
            .header("content-type", ct)
            .body("a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\n")
    };
    assert_eq!(
        error_of(patch("text/plain").send().await.unwrap()).await.0,
        415
    );
    assert_eq!(
        patch("application/trickle-ice-sdpfrag")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        204
    );
    // OPTIONS (preflight) needs no token.
    let r = client()
        .request(reqwest::Method::OPTIONS, whip.clone())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(r.headers()["accept-post"], "application/sdp");

    // DELETE ends the session; a second DELETE finds nothing.
    let r = client()
        .delete(url(&s, &location))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = client()
            .delete(url(&s, &location))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "session did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The stream never got media: it is still created and takes a new publisher.
    let r = post(whip.clone(), "application/sdp", second)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_serving(&s).await;
    s.shutdown().await;
}

async fn ws_connect(
    s: &RunningServer,
    id: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let t: Value = client()
        .post(url(s, &format!("/api/streams/{id}/ws-ticket")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_url = t["ws_url"].as_str().unwrap();
    assert!(!ws_url.contains(TOKEN));
    let (ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("ws connects");
    ws
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(t.as_str()).expect("server sends JSON");
        }
    }
}

async fn next_of_type<S>(ws: &mut S, kind: &str) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let v = next_json(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

#[tokio::test]
async fn websocket_tickets_and_malformed_messages() {
    let s = server().await;
    let stream = create_stream(&s, "wskey").await;
    let id = stream["id"].as_str().unwrap();

    // Without a ticket, with a bogus one, and with a used one: refused.
    let base = format!("ws://{}/api/streams/{id}/ws", s.http_addr());
    assert!(tokio_tungstenite::connect_async(base.clone())
        .await
        .is_err());
    assert!(
        tokio_tungstenite::connect_async(format!("{base}?ticket=bogus"))
            .await
            .is_err()
    );
    let t: Value = client()
        .post(url(&s, &format!("/api/streams/{id}/ws-ticket")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws_url = t["ws_url"].as_str().unwrap().to_string();
    let (first, _) = tokio_tungstenite::connect_async(ws_url.clone())
        .await
        .unwrap();
    assert!(
        tokio_tungstenite::connect_async(ws_url).await.is_err(),
        "tickets are single-use"
    );
    drop(first);

    let mut ws = ws_connect(&s, id).await;
    let hello = next_json(&mut ws).await;
    assert_eq!(
        (hello["type"].as_str(), hello["state"].as_str()),
        (Some("state"), Some("created"))
    );
    let bad: Vec<Message> = vec![
        Message::text("not json"),
        Message::text("{\"type\":\"dance\"}"),
        Message::text("{\"type\":\"offer\"}"),
        Message::text("[1,2,3]"),
        Message::binary(vec![0u8, 1, 2]),
        Message::text(json!({"type": "offer", "sdp": "x".repeat(100 * 1024)}).to_string()),
        Message::text(
            json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})
                .to_string(),
        ),
        Message::text(json!({"type": "offer", "sdp": "garbage"}).to_string()),
    ];
    let expected = [
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "invalid_request",
        "payload_too_large",
        "conflict",
        "invalid_sdp",
    ];
    for (msg, code) in bad.into_iter().zip(expected) {
        ws.send(msg).await.unwrap();
        let e = next_of_type(&mut ws, "error").await;
        assert_eq!(e["code"], code, "{e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A VP8-only offer: 422's code over the socket.
    let (_vp8, vp8_offer) = offer(false);
    ws.send(Message::text(
        json!({"type": "offer", "sdp": vp8_offer}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(
        next_of_type(&mut ws, "error").await["code"],
        "no_h264_offered"
    );

    // A real offer gets an answer; a second one on another socket gets publisher_exists.
    let (_rtc, h264) = offer(true);
    ws.send(Message::text(
        json!({"type": "offer", "sdp": h264}).to_string(),
    ))
    .await
    .unwrap();
    let answer = next_of_type(&mut ws, "answer").await;
    assert!(answer["sdp"].as_str().unwrap().contains("H264/90000"));
    ws.send(Message::text(
        json!({"type": "candidate", "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}).to_string(),
    ))
    .await
    .unwrap();
    let mut other = ws_connect(&s, id).await;
    let (_rtc2, h264b) = offer(true);
    other
        .send(Message::text(
            json!({"type": "offer", "sdp": h264b}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(
        next_of_type(&mut other, "error").await["code"],
        "publisher_exists"
    );
    ws.send(Message::text("{\"type\":\"bye\"}")).await.unwrap();
    assert_eq!(next_of_type(&mut ws, "bye").await["type"], "bye");
    assert_serving(&s).await;
    s.shutdown().await;
}

#[tokio::test]
async fn publisher_that_never_connects_times_out_and_frees_the_stream() {
    let s = server_with(|c| c.limits.ice_connect_timeout = Duration::from_millis(300)).await;
    let stream = create_stream(&s, "timeoutkey").await;
    let id = stream["id"].as_str().unwrap();
    let (_rtc, h264) = offer(true);
    let r = client()
        .post(url(&s, &format!("/whip/{id}")))
        .bearer_auth(TOKEN)
        .header("content-type", "application/sdp")
        .body(h264)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: Value = client()
            .get(url(&s, &format!("/api/streams/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["publisher"].is_null() {
            assert_eq!(v["state"], "created", "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "session did not time out: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_serving(&s).await;
    s.shutdown().await;
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn_binary(dir: &std::path::Path, port: u16) -> Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_streamify"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(dir)
        .args(["--api-token", TOKEN, "--webrtc-udp", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the streamify binary starts");
    let child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(r) = client()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
        {
            if r.status().is_success() {
                return child;
            }
        }
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stream_state(port: u16, id: &str) -> (String, String) {
    let v: Value = client()
        .get(format!("http://127.0.0.1:{port}/api/streams/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (
        v["state"].as_str().unwrap_or_default().to_string(),
        v["reason"].as_str().unwrap_or_default().to_string(),
    )
}

async fn create_on(port: u16) -> String {
    let v: Value = client()
        .post(format!("http://127.0.0.1:{port}/api/streams"))
        .bearer_auth(TOKEN)
        .json(&json!({"title": "persisted", "destinations": [{"type": "rtmp", "url": "rtmp://127.0.0.1:1/live/persisted-secret-key"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn crash_marks_streams_interrupted_and_sigterm_stops_cleanly() {
    let dir = std::env::temp_dir().join(format!(
        "streamify-restart-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // A crash (SIGKILL) while a stream exists: the next start marks it ended, server_restart.
    let mut server = spawn_binary(&dir, port).await;
    let crashed = create_on(port).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // the writer thread commits
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let server = spawn_binary(&dir, port).await;
    assert_eq!(
        stream_state(port, &crashed).await,
        ("ended".to_string(), "server_restart".to_string())
    );
    let list: Value = client()
        .get(format!("http://127.0.0.1:{port}/api/streams"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["streams"][0]["id"], crashed.as_str());
    assert_eq!(
        list["streams"][0]["destinations"][0]["url"],
        "rtmp://127.0.0.1:1/live/***-key"
    );
    assert!(!list.to_string().contains("persisted-secret-key"));

    // SIGTERM: every stream stopped cleanly, the process exits 0 within 5 s.
    let stopped = create_on(port).await;
    let started = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let exit = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "SIGTERM took more than 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let _server = spawn_binary(&dir, port).await;
    assert_eq!(
        stream_state(port, &stopped).await,
        ("ended".to_string(), "server_shutdown".to_string())
    );
    // A stored stream can be deleted.
    let r = client()
        .delete(format!("http://127.0.0.1:{port}/api/streams/{crashed}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client()
        .get(format!("http://127.0.0.1:{port}/api/streams/{crashed}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
