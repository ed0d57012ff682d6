//! The OpenAPI document (`GET /api/openapi.json`) against the server it describes, in process
//! on free loopback ports:
//!
//! - every `.route(..)` in the server's source is documented, and every documented operation
//!   reaches a handler (never the router's 404 or 405 fallback);
//! - real answers to valid requests (and to the usual mistakes) have documented statuses, and
//!   their bodies and required headers match the documented schemas (JSON Schema 2020-12);
//! - requests generated from the document, valid and then mutated (wrong types, missing and
//!   extra fields, huge and odd strings, bad numbers, ids, query values, content types and
//!   tokens) never get a 5xx or an undocumented status, every error is the documented error
//!   shape with a code whose status is the answer's, and the server still serves afterwards.
//!
//! The generator's seed is printed; `STREAMIFY_OPENAPI_SEED=<n>` replays a run and
//! `STREAMIFY_OPENAPI_CASES=<n>` sets the number of requests per operation (default 16).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Once;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use streamify::config::Config;
use streamify::error::ErrorCode;
use streamify::server::RunningServer;

mod support;

use support::api::{client, server_named, url, TOKEN};

/// The methods an OpenAPI path item may have.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The router's own answers (`src/http/mod.rs`): a documented operation must never get them.
const FALLBACK_404: &str = "no such route";
const FALLBACK_405: &str = "this route does not take that method";

// ---------------------------------------------------------------------------------------------
// The document

/// One documented operation.
#[derive(Debug, Clone)]
struct Operation {
    /// Upper case.
    method: String,
    /// As documented, with `{name}` placeholders (axum's syntax too).
    path: String,
    /// The operation object.
    spec: Value,
    /// Path-level and operation-level parameters, references resolved.
    params: Vec<Value>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn params_in<'a>(&'a self, place: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.params.iter().filter(move |p| p["in"] == place)
    }

    /// The request body's media type and schema, if the operation takes one.
    fn body(&self) -> Option<(String, Value)> {
        let content = self.spec["requestBody"]["content"].as_object()?;
        let (media, spec) = content.iter().next()?;
        Some((media.clone(), spec["schema"].clone()))
    }
}

/// The document with cached validators.
struct Doc {
    root: Value,
    validators: RefCell<HashMap<String, Rc<jsonschema::Validator>>>,
}

impl Doc {
    fn load() -> Doc {
        Doc {
            root: serde_json::from_str(streamify::http::openapi::DOCUMENT)
                .expect("openapi.json is JSON"),
            validators: RefCell::new(HashMap::new()),
        }
    }

    /// Follows `$ref`s to the referenced object.
    fn resolve<'a>(&'a self, mut node: &'a Value) -> &'a Value {
        for _ in 0..16 {
            match node.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    node = self
                        .root
                        .pointer(r.trim_start_matches('#'))
                        .unwrap_or_else(|| panic!("{r} does not resolve"));
                }
                None => return node,
            }
        }
        panic!("reference chain too long")
    }

    fn operations(&self) -> Vec<Operation> {
        let mut out = Vec::new();
        for (path, item) in self.root["paths"].as_object().expect("paths") {
            let shared: Vec<Value> = item["parameters"]
                .as_array()
                .map(|a| a.iter().map(|p| self.resolve(p).clone()).collect())
                .unwrap_or_default();
            for method in METHODS {
                let Some(spec) = item.get(method) else {
                    continue;
                };
                let mut params = shared.clone();
                if let Some(own) = spec["parameters"].as_array() {
                    params.extend(own.iter().map(|p| self.resolve(p).clone()));
                }
                out.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    spec: spec.clone(),
                    params,
                });
            }
        }
        out
    }

    /// A validator for `schema` (which may use `#/components/...` references).
    fn validator(&self, schema: &Value) -> Rc<jsonschema::Validator> {
        let key = schema.to_string();
        if let Some(v) = self.validators.borrow().get(&key) {
            return v.clone();
        }
        let wrapped = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.root["components"],
            "allOf": [schema],
        });
        let v = Rc::new(
            jsonschema::draft202012::new(&wrapped)
                .unwrap_or_else(|e| panic!("schema {key} does not compile: {e}")),
        );
        self.validators.borrow_mut().insert(key, v.clone());
        v
    }

    /// `Err` with every violation when `value` does not match `schema`.
    fn validate(&self, schema: &Value, value: &Value) -> Result<(), String> {
        let v = self.validator(schema);
        let errors: Vec<String> = v
            .iter_errors(value)
            .take(5)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    fn error_schema(&self) -> Value {
        json!({"$ref": "#/components/schemas/Error"})
    }
}

// ---------------------------------------------------------------------------------------------
// The router, read from the source

/// Every `(METHOD, path)` that a `.route(..)` call in `src/` mounts (HEAD comes with GET),
/// read from every file that builds a `Router`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut routes = BTreeSet::new();
    for file in files {
        let src: String = std::fs::read_to_string(&file)
            .expect("readable source")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        if !src.contains("Router::new()") {
            continue; // `.route(` of something else (the UDP demultiplexer has one)
        }
        for unknown in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !src.contains(unknown),
                "{} uses {unknown}: teach routes_in_source() to read it",
                file.display()
            );
        }
        let mut rest = src.as_str();
        while let Some(at) = rest.find(".route(") {
            rest = &rest[at + ".route(".len()..];
            let args = call_arguments(rest);
            let path = args
                .split('"')
                .nth(1)
                .unwrap_or_else(|| panic!("{}: a route without a literal path", file.display()));
            assert!(
                !calls(args, "any"),
                "{}: `any` on {path}: document each method instead",
                file.display()
            );
            let mut found = false;
            for method in METHODS {
                if calls(args, method) {
                    routes.insert((method.to_uppercase(), path.to_string()));
                    found = true;
                }
            }
            assert!(found, "{}: no method found for {path}", file.display());
        }
    }
    routes
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text up to the parenthesis that closes the call `rest` starts inside of.
fn call_arguments(rest: &str) -> &str {
    let mut depth = 1;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return &rest[..i];
                }
            }
            _ => {}
        }
    }
    panic!("unclosed .route(")
}

/// Whether `args` calls the method router `method` (`get(`, `.get(`, `routing::get(`), not
/// a handler that happens to have the name (`api::get)`) nor a longer name (`get_all(`).
fn calls(args: &str, method: &str) -> bool {
    let call = format!("{method}(");
    args.match_indices(&call).any(|(i, _)| {
        let before = args[..i].chars().next_back();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

// ---------------------------------------------------------------------------------------------
// The server

/// The YouTube routes are configured against an address that refuses connections (loopback
/// port 9), so every sign-in and account answer is the server's own, never Google's.
fn configure_youtube() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (name, value) in [
            ("STREAMIFY_GOOGLE_CLIENT_ID", "openapi-test-client"),
            ("STREAMIFY_GOOGLE_CLIENT_SECRET", "openapi-test-secret"),
            ("STREAMIFY_GOOGLE_AUTH_URL", "http://127.0.0.1:9/auth"),
            ("STREAMIFY_GOOGLE_TOKEN_URL", "http://127.0.0.1:9/token"),
            ("STREAMIFY_GOOGLE_REVOKE_URL", "http://127.0.0.1:9/revoke"),
            ("STREAMIFY_YOUTUBE_API_URL", "http://127.0.0.1:9/youtube/v3"),
        ] {
            std::env::set_var(name, value);
        }
    });
}

async fn server(edit: impl FnOnce(&mut Config)) -> RunningServer {
    configure_youtube();
    server_named("openapi", edit).await
}

/// A loopback port nothing listens on (bound, then released).
fn unused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A real offer from a str0m client: H.264 and Opus.
fn h264_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::RtcConfig::new()
        .clear_codecs()
        .enable_h264(true)
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(
        str0m::Candidate::host("127.0.0.1:40000".parse().unwrap(), "udp").unwrap(),
    );
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

const TRICKLE_FRAG: &str = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
    m=audio 9 RTP/AVP 0\r\na=mid:0\r\n\
    a=candidate:1387637174 1 udp 2122260223 127.0.0.1 61764 typ host generation 0\r\n";

// ---------------------------------------------------------------------------------------------
// Checking one answer

/// What a checked answer was.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    /// The JSON body, when it is JSON.
    json: Option<Value>,
    /// The body as text (not read for event streams).
    text: String,
}

fn media_type(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let v = headers.get("content-type")?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

/// Checks `r` against `op`'s documented responses: a documented status that is not 5xx, the
/// documented media type, required headers, a body matching the schema; for JSON errors the
/// error shape, a documented code and that code's status.
async fn check(doc: &Doc, op: &Operation, r: reqwest::Response) -> Result<Answer, String> {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let media = media_type(&headers);
    let event_stream = media.as_deref() == Some("text/event-stream");
    let bytes = if event_stream {
        Vec::new() // never ends: the status and headers are what there is to check
    } else {
        match tokio::time::timeout(Duration::from_secs(10), r.bytes()).await {
            Ok(Ok(b)) => b.to_vec(),
            Ok(Err(e)) => return Err(format!("{status}: reading the body failed: {e}")),
            Err(_) => return Err(format!("{status}: the body did not arrive in 10 s")),
        }
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let clip = |t: &str| t.chars().take(300).collect::<String>();
    if status >= 500 {
        return Err(format!("{status} (server error): {}", clip(&text)));
    }
    let responses = &op.spec["responses"];
    let Some(documented) = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))
    else {
        return Err(format!("undocumented status {status}: {}", clip(&text)));
    };
    let documented = doc.resolve(documented);
    for (name, header) in documented["headers"].as_object().into_iter().flatten() {
        let header = doc.resolve(header);
        if header["required"] == true && !headers.contains_key(name.as_str()) {
            return Err(format!("{status} without the required header {name}"));
        }
        if let (Some(value), Some(schema)) = (
            headers.get(name.as_str()).and_then(|v| v.to_str().ok()),
            header.get("schema"),
        ) {
            doc.validate(schema, &json!(value))
                .map_err(|e| format!("{status}: header {name}: {e}"))?;
        }
    }
    let json: Option<Value> = if media.as_deref() == Some("application/json") {
        Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{status}: not JSON ({e}): {}", clip(&text)))?,
        )
    } else {
        None
    };
    match documented["content"].as_object() {
        Some(content) if !content.is_empty() => {
            let media = media
                .as_deref()
                .ok_or_else(|| format!("{status} without a Content-Type: {}", clip(&text)))?;
            let Some(spec) = content.get(media) else {
                return Err(format!(
                    "{status}: Content-Type {media} is not one of {:?}: {}",
                    content.keys().collect::<Vec<_>>(),
                    clip(&text)
                ));
            };
            if let (Some(schema), Some(value)) = (spec.get("schema"), json.as_ref()) {
                doc.validate(schema, value)
                    .map_err(|e| format!("{status}: the body does not match: {e}: {value}"))?;
            }
        }
        _ => {
            if !bytes.is_empty() {
                return Err(format!(
                    "{status} is documented without a body but has one: {}",
                    clip(&text)
                ));
            }
        }
    }
    if status >= 400 {
        if let Some(value) = json.as_ref() {
            doc.validate(&doc.error_schema(), value)
                .map_err(|e| format!("{status}: not the error shape: {e}: {value}"))?;
            let code: ErrorCode = serde_json::from_value(value["error"]["code"].clone())
                .map_err(|e| format!("{status}: unknown error code: {e}"))?;
            if code.http_status() != status {
                return Err(format!(
                    "{status} with code {code}, whose status is {}",
                    code.http_status()
                ));
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        json,
        text,
    })
}

fn operation(doc: &Doc, method: &str, path: &str) -> Operation {
    doc.operations()
        .into_iter()
        .find(|o| o.method == method && o.path == path)
        .unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

/// Sends one request for `(method, documented path)` to `target` and checks the answer.
struct Checker<'a> {
    doc: &'a Doc,
    server: &'a RunningServer,
    client: reqwest::Client,
}

impl Checker<'_> {
    async fn send(
        &self,
        method: &str,
        documented: &str,
        target: &str,
        edit: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Answer {
        let op = operation(self.doc, method, documented);
        let req = self
            .client
            .request(method.parse().unwrap(), url(self.server, target));
        let r = edit(req)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        check(self.doc, &op, r)
            .await
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    /// With the bearer token.
    async fn authed(
        &self,
        method: &str,
        documented: &str,
        target: &str,
        edit: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Answer {
        self.send(method, documented, target, |r| edit(r.bearer_auth(TOKEN)))
            .await
    }
}

fn code(a: &Answer) -> &str {
    a.json
        .as_ref()
        .and_then(|j| j["error"]["code"].as_str())
        .unwrap_or("")
}

// ---------------------------------------------------------------------------------------------
// (a) The document is kept true

#[test]
fn every_mounted_route_is_documented_and_nothing_else() {
    let doc = Doc::load();
    let documented: BTreeSet<(String, String)> = doc
        .operations()
        .into_iter()
        .map(|o| (o.method, o.path))
        .collect();
    let mounted = routes_in_source();
    assert!(
        mounted.contains(&("GET".into(), "/api/openapi.json".into())),
        "the source reader found {mounted:?}"
    );
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    let unmounted: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        undocumented.is_empty() && unmounted.is_empty(),
        "mounted but not documented: {undocumented:?}; documented but not mounted: {unmounted:?}"
    );
}

#[test]
fn the_source_reader_reads_method_routers() {
    let args =
        r#""/x/{id}", axum::routing::delete(whip::end).patch(whip::patch).options(api::get)"#;
    assert!(calls(args, "delete") && calls(args, "patch") && calls(args, "options"));
    assert!(
        !calls(args, "get"),
        "api::get is a handler, not a method router"
    );
    assert!(!calls("\"/y\", get_all(h)", "get"));
    assert_eq!(
        call_arguments("\"/a\", get(f(x)))\n.route("),
        "\"/a\", get(f(x))"
    );
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler() {
    let doc = Doc::load();
    let s = server(|_| {}).await;
    let c = client();
    let mut failures = Vec::new();
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for op in doc.operations() {
        paths.insert(op.path.clone());
        if op.method == "HEAD" {
            continue;
        }
        let target = placeholder_path(&op.path);
        let r = c
            .request(op.method.parse().unwrap(), url(&s, &target))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        let fallback = (status == 404 && body.contains(FALLBACK_404))
            || (status == 405 && body.contains(FALLBACK_405));
        if fallback {
            failures.push(format!(
                "{}: the router's fallback answered {status}",
                op.name()
            ));
        }
    }
    // Methods a documented path does not list are the router's 405 (JSON like every error).
    for path in &paths {
        let item = &doc.root["paths"][path];
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if item.get(method.to_lowercase()).is_some() {
                continue;
            }
            let r = c
                .request(method.parse().unwrap(), url(&s, &placeholder_path(path)))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            if status != 405 || body["error"]["code"] != "method_not_allowed" {
                failures.push(format!(
                    "{method} {path} (undocumented) answered {status} {body}, not the JSON 405"
                ));
            }
        }
    }
    // The fallback really is what an unknown route gets.
    let r = c
        .get(url(&s, "/api/no-such-route"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().await.unwrap().contains(FALLBACK_404));
    s.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn placeholder_path(path: &str) -> String {
    path.replace("{id}", "probe-stream")
        .replace("{destination}", "d1")
        .replace("{session}", "probe-session")
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let doc = Doc::load();
    let s = server(|_| {}).await;
    let c = Checker {
        doc: &doc,
        server: &s,
        client: client(),
    };
    let none = |r| r;

    // Open routes and the document itself.
    let a = c.send("GET", "/healthz", "/healthz", none).await;
    assert_eq!(a.status, 200);
    assert_eq!(c.send("GET", "/", "/", none).await.status, 200);
    assert_eq!(
        c.send("GET", "/index.html", "/index.html", none)
            .await
            .status,
        200
    );
    let a = c
        .send("GET", "/api/openapi.json", "/api/openapi.json", none)
        .await;
    assert_eq!((a.status, code(&a)), (401, "unauthorized"));
    let a = c
        .authed("GET", "/api/openapi.json", "/api/openapi.json", none)
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json.as_ref(), Some(&doc.root), "the served document");

    // A stream with an RTMP destination nothing listens on (it is never started).
    let port = unused_port();
    let rtmp = format!("rtmp://127.0.0.1:{port}/live/openapi-stream-key-0001");
    let a = c
        .authed("POST", "/api/streams", "/api/streams", |r| {
            r.json(&json!({"title": "openapi", "destinations": [{"type": "rtmp", "url": rtmp}], "start": "manual"}))
        })
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let stream = a.json.unwrap();
    let id = stream["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.headers["location"].to_str().unwrap(),
        format!("/api/streams/{id}")
    );
    let a = c
        .authed(
            "GET",
            "/api/streams/{id}",
            &format!("/api/streams/{id}"),
            none,
        )
        .await;
    assert_eq!(a.status, 200);
    for query in [
        "",
        "?state=created&offset=0&limit=10",
        "?state=",
        "?limit=1000",
    ] {
        let a = c
            .authed("GET", "/api/streams", &format!("/api/streams{query}"), none)
            .await;
        assert_eq!(a.status, 200, "{query}");
    }
    let a = c
        .authed("GET", "/api/streams", "/api/streams?state=bogus", none)
        .await;
    assert_eq!(code(&a), "invalid_request");

    // Destinations.
    let dests = "/api/streams/{id}/destinations";
    let a = c
        .authed(
            "POST",
            dests,
            &format!("/api/streams/{id}/destinations"),
            |r| r.json(&json!({"type": "rtmps", "url": "rtmps://127.0.0.1:1/live/key"})),
        )
        .await;
    assert_eq!(code(&a), "invalid_request");
    let a = c
        .authed("POST", dests, &format!("/api/streams/{id}/destinations"), |r| {
            r.json(&json!({"type": "rtmp", "url": format!("rtmps://127.0.0.1:{port}/live/second-destination-key")}))
        })
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let added = a.json.unwrap()["id"].as_str().unwrap().to_string();
    let one = "/api/streams/{id}/destinations/{destination}";
    let a = c
        .authed(
            "DELETE",
            one,
            &format!("/api/streams/{id}/destinations/{added}"),
            none,
        )
        .await;
    assert_eq!(a.status, 204);
    let a = c
        .authed(
            "DELETE",
            one,
            &format!("/api/streams/{id}/destinations/{added}"),
            none,
        )
        .await;
    assert_eq!(code(&a), "not_found");
    let a = c
        .authed(
            "DELETE",
            one,
            &format!("/api/streams/{id}/destinations/d1"),
            none,
        )
        .await;
    assert_eq!(code(&a), "conflict", "the last destination stays");

    // Metrics and events.
    let a = c.authed("GET", "/metrics", "/metrics", none).await;
    assert!(a.text.contains("streamify_streams{state=\"created\"} 1"));
    let a = c
        .authed(
            "GET",
            "/api/streams/{id}/events",
            &format!("/api/streams/{id}/events"),
            none,
        )
        .await;
    assert_eq!(a.status, 200);

    // WebSocket: a ticket, then the upgrade; without either a 401; without an upgrade a 400.
    let ws = "/api/streams/{id}/ws";
    let a = c
        .authed(
            "POST",
            "/api/streams/{id}/ws-ticket",
            &format!("/api/streams/{id}/ws-ticket"),
            none,
        )
        .await;
    assert_eq!(a.status, 201);
    let ticket = a.json.unwrap();
    let (mut socket, response) =
        tokio_tungstenite::connect_async(ticket["ws_url"].as_str().unwrap())
            .await
            .expect("the WebSocket upgrade");
    assert_eq!(response.status().as_u16(), 101);
    assert!(
        operation(&doc, "GET", ws).spec["responses"]
            .get("101")
            .is_some(),
        "101 is documented"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("a first message")
        .expect("open")
        .expect("a message");
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["type"], "state");
    drop(socket);
    let a = c
        .send("GET", ws, &format!("/api/streams/{id}/ws"), none)
        .await;
    assert_eq!(code(&a), "unauthorized");
    let a = c
        .authed("GET", ws, &format!("/api/streams/{id}/ws"), none)
        .await;
    assert_eq!(code(&a), "invalid_request");

    // WHIP: preflight, a real offer, trickle, no ICE restart, end.
    for path in [format!("/whip/{id}"), format!("/whip/{id}/sessions/x")] {
        let documented = if path.contains("/sessions/") {
            "/whip/{id}/sessions/{session}"
        } else {
            "/whip/{id}"
        };
        let a = c.send("OPTIONS", documented, &path, none).await;
        assert!(a.headers.contains_key("accept-post"));
    }
    let whip = "/whip/{id}";
    let a = c
        .authed("POST", whip, &format!("/whip/{id}"), |r| {
            r.header("content-type", "application/json").body("{}")
        })
        .await;
    assert_eq!(code(&a), "unsupported_media_type");
    let a = c
        .authed("POST", whip, &format!("/whip/{id}"), |r| {
            r.header("content-type", "application/sdp")
                .body("v=0 but not really")
        })
        .await;
    assert_eq!(a.status, 400);
    let a = c
        .authed("POST", whip, &format!("/whip/{id}"), |r| {
            r.header("content-type", "application/sdp")
                .body(h264_offer())
        })
        .await;
    assert_eq!(a.status, 201, "{}", a.text);
    let session_path = a.headers["location"].to_str().unwrap().to_string();
    assert!(a.text.starts_with("v=0"));
    let a = c
        .authed("POST", whip, &format!("/whip/{id}"), |r| {
            r.header("content-type", "application/sdp")
                .body(h264_offer())
        })
        .await;
    assert_eq!(code(&a), "publisher_exists");
    let session = "/whip/{id}/sessions/{session}";
    let a = c
        .authed("PATCH", session, &session_path, |r| {
            r.header("content-type", "application/trickle-ice-sdpfrag")
                .body(TRICKLE_FRAG)
        })
        .await;
    assert_eq!(a.status, 204);
    let a = c
        .authed("PATCH", session, &session_path, |r| {
            r.header("content-type", "application/trickle-ice-sdpfrag")
                .header("if-match", "*")
                .body(TRICKLE_FRAG)
        })
        .await;
    assert_eq!(code(&a), "method_not_allowed");
    let a = c.authed("DELETE", session, &session_path, none).await;
    assert_eq!(a.status, 200);

    // Start, stop, delete (statuses depend on how far the publisher's end has gone).
    let a = c
        .authed(
            "POST",
            "/api/streams/{id}/start",
            &format!("/api/streams/{id}/start"),
            none,
        )
        .await;
    assert_eq!(
        code(&a),
        "conflict",
        "a manual stream without media cannot start"
    );
    let a = c
        .authed(
            "POST",
            "/api/streams/{id}/stop",
            &format!("/api/streams/{id}/stop"),
            none,
        )
        .await;
    assert!([200, 409].contains(&a.status));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = c
            .authed(
                "GET",
                "/api/streams/{id}",
                &format!("/api/streams/{id}"),
                none,
            )
            .await;
        let state = a.json.as_ref().unwrap()["state"].clone();
        if state == "ended" || state == "failed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not end: {}",
            a.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let a = c
        .authed(
            "DELETE",
            "/api/streams/{id}",
            &format!("/api/streams/{id}"),
            none,
        )
        .await;
    assert_eq!(a.status, 204);
    let a = c
        .authed(
            "GET",
            "/api/streams/{id}",
            &format!("/api/streams/{id}"),
            none,
        )
        .await;
    assert_eq!(code(&a), "not_found");

    // The usual mistakes.
    let create = "/api/streams";
    let a = c
        .authed("POST", create, create, |r| {
            r.header("content-type", "text/plain").body("{}")
        })
        .await;
    assert_eq!(code(&a), "unsupported_media_type");
    let a = c
        .authed("POST", create, create, |r| {
            r.header("content-type", "application/json")
                .body("x".repeat(100_000))
        })
        .await;
    assert_eq!(code(&a), "payload_too_large");
    let a = c
        .send("POST", create, create, |r| r.bearer_auth("wrong"))
        .await;
    assert_eq!(code(&a), "unauthorized");
    assert!(a.headers.contains_key("www-authenticate"));

    // YouTube: no account is connected; the sign-in redirects to the (refusing) fake Google.
    let account = "/api/youtube/account";
    let a = c.send("GET", account, account, none).await;
    assert_eq!(code(&a), "unauthorized");
    let a = c.authed("GET", account, account, none).await;
    assert_eq!(code(&a), "youtube_not_connected");
    let a = c
        .authed(
            "DELETE",
            account,
            &format!("{account}?account=nobody"),
            none,
        )
        .await;
    assert_eq!(code(&a), "not_found");
    let a = c
        .send("GET", "/auth/google/start", "/auth/google/start", none)
        .await;
    assert_eq!(a.status, 303);
    assert!(a.headers["location"]
        .to_str()
        .unwrap()
        .starts_with("http://127.0.0.1:9/auth"));
    let a = c
        .send(
            "GET",
            "/auth/google/callback",
            "/auth/google/callback?error=access_denied&state=x",
            none,
        )
        .await;
    assert_eq!(a.status, 400);
    assert!(a.text.contains("oauth_"), "{}", a.text);

    s.shutdown().await;
}

/// A 204 from `DELETE /api/streams/{id}` means gone: not answered from the store afterwards.
#[tokio::test]
async fn a_deleted_stream_is_not_found_at_once() {
    let doc = Doc::load();
    let s = server(|_| {}).await;
    let c = Checker {
        doc: &doc,
        server: &s,
        client: client(),
    };
    let rtmp = format!("rtmp://127.0.0.1:{}/live/deleted-at-once", unused_port());
    for _ in 0..30 {
        let a = c
            .authed("POST", "/api/streams", "/api/streams", |r| {
                r.json(&json!({"destinations": [{"type": "rtmp", "url": rtmp}]}))
            })
            .await;
        let id = a.json.unwrap()["id"].as_str().unwrap().to_string();
        let one = format!("/api/streams/{id}");
        let a = c.authed("DELETE", "/api/streams/{id}", &one, |r| r).await;
        assert_eq!(a.status, 204);
        let a = c.authed("GET", "/api/streams/{id}", &one, |r| r).await;
        assert_eq!(code(&a), "not_found", "{}", a.text);
        let a = c.authed("GET", "/api/streams", "/api/streams", |r| r).await;
        assert!(!a.text.contains(&id), "listed after its delete: {}", a.text);
    }
    s.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// (b) Requests generated from the document

/// Values that satisfy a schema, built from its `const`, `enum`, `examples`, types and bounds.
struct Generator<'a> {
    doc: &'a Doc,
    rng: StdRng,
    /// Where generated RTMP URLs point (loopback, nothing listening).
    rtmp_port: u16,
}

impl Generator<'_> {
    fn valid(&mut self, schema: &Value) -> Value {
        let schema = self.doc.resolve(schema).clone();
        if let Some(c) = schema.get("const") {
            return c.clone();
        }
        if let Some(options) = schema["enum"].as_array() {
            return options
                .choose(&mut self.rng)
                .cloned()
                .unwrap_or(Value::Null);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema[key].as_array() {
                // The first option most of the time (the one the server takes today).
                let pick = if self.rng.random_bool(0.6) {
                    options.first()
                } else {
                    options.choose(&mut self.rng)
                };
                let pick = pick.cloned().unwrap_or(Value::Null);
                return self.valid(&pick);
            }
        }
        if let Some(examples) = schema["examples"].as_array() {
            if let Some(e) = examples.choose(&mut self.rng) {
                return self.loopback(e.clone());
            }
        }
        let kind = match &schema["type"] {
            Value::String(t) => t.clone(),
            Value::Array(ts) => {
                let non_null: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
                match non_null.choose(&mut self.rng) {
                    Some(t) if self.rng.random_bool(0.8) => t.as_str().unwrap_or("null").into(),
                    _ => "null".into(),
                }
            }
            _ => "string".into(),
        };
        match kind.as_str() {
            "object" => {
                let required: Vec<&str> = schema["required"]
                    .as_array()
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut out = serde_json::Map::new();
                for (name, prop) in schema["properties"].as_object().into_iter().flatten() {
                    if required.contains(&name.as_str()) || self.rng.random_bool(0.6) {
                        out.insert(name.clone(), self.valid(prop));
                    }
                }
                Value::Object(out)
            }
            "array" => {
                let min = schema["minItems"].as_u64().unwrap_or(0);
                let max = schema["maxItems"].as_u64().unwrap_or(min + 2).max(min);
                let n = self.rng.random_range(min..=max.min(min + 2));
                (0..n).map(|_| self.valid(&schema["items"])).collect()
            }
            "integer" => {
                let min = schema["minimum"].as_i64().unwrap_or(0);
                let max = schema["maximum"].as_i64().unwrap_or(min + 100).max(min);
                json!(self.rng.random_range(min..=max))
            }
            "number" => json!(self.rng.random_range(0.0..100.0)),
            "boolean" => json!(self.rng.random_bool(0.5)),
            "null" => Value::Null,
            _ => {
                let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
                let max = schema["maxLength"].as_u64().unwrap_or(24) as usize;
                let n = self.rng.random_range(min..=max.min(24).max(min));
                json!(self.word(n))
            }
        }
    }

    /// RTMP URLs from the examples are pointed at a loopback port nothing listens on.
    fn loopback(&mut self, value: Value) -> Value {
        match value.as_str() {
            Some(s) if s.starts_with("rtmp://") || s.starts_with("rtmps://") => {
                let scheme = if s.starts_with("rtmps") {
                    "rtmps"
                } else {
                    "rtmp"
                };
                let key = self.word(20);
                json!(format!(
                    "{scheme}://127.0.0.1:{}/live/{key}",
                    self.rtmp_port
                ))
            }
            _ => value,
        }
    }

    fn word(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_";
        (0..n)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn odd_string(&mut self) -> String {
        let options = [
            "\u{0}".to_string(),
            "💥🚀".to_string(),
            "\u{202e}evil".to_string(),
            "e\u{301}\u{301}\u{301}".to_string(),
            "\u{feff}".to_string(),
            "\u{ffff}".to_string(),
            "日本語のタイトル".to_string(),
            "\"'<script>alert(1)</script>".to_string(),
            "rtmp://💥/app/key".to_string(),
            "rtmp://127.0.0.1:1/%00/%ff".to_string(),
            "\r\n\t".to_string(),
            "🎬".repeat(201),
            " ".repeat(300),
            String::new(),
        ];
        options.choose(&mut self.rng).cloned().unwrap_or_default()
    }

    fn other_type(&mut self) -> Value {
        let options = [
            Value::Null,
            json!(true),
            json!(-1),
            json!(1.5),
            json!(u64::MAX),
            json!(i64::MIN),
            json!("x"),
            json!([]),
            json!({}),
            json!([1, "a", null]),
        ];
        options
            .choose(&mut self.rng)
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// JSON pointers of every node of `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mutation {
    Valid,
    WrongType,
    DropField,
    ExtraField,
    HugeBody,
    LongString,
    OddString,
    BadNumber,
    MalformedBody,
    DeepNesting,
    ContentType,
    NoToken,
    WrongToken,
    WrongCookie,
    BadPathId,
    BadQueryValue,
    UnknownQuery,
}

const BODY_MUTATIONS: [Mutation; 10] = [
    Mutation::WrongType,
    Mutation::DropField,
    Mutation::ExtraField,
    Mutation::HugeBody,
    Mutation::LongString,
    Mutation::OddString,
    Mutation::BadNumber,
    Mutation::MalformedBody,
    Mutation::DeepNesting,
    Mutation::ContentType,
];

/// One request to send.
#[derive(Debug)]
struct Case {
    mutation: Mutation,
    target: String,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
    authorization: Option<String>,
    cookie: Option<String>,
}

/// Ids the generated requests use: known ones (fixtures, and what earlier answers created).
#[derive(Debug, Default)]
struct Pool {
    streams: Vec<String>,
    sessions: Vec<String>,
}

fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn bad_path_id(rng: &mut StdRng) -> String {
    let options = [
        "%00".to_string(),
        "%ZZ".to_string(),
        "%C3%28".to_string(),
        "%F0%9F%92%A5".to_string(),
        "a%2Fb".to_string(),
        "x".repeat(3000),
        "-1".to_string(),
        "18446744073709551616".to_string(),
        "null".to_string(),
        "%20".to_string(),
        "d1%3Bdrop".to_string(),
    ];
    options.choose(rng).cloned().unwrap_or_default()
}

fn bad_query_value(rng: &mut StdRng) -> String {
    let options = [
        "abc",
        "-1",
        "1.5",
        "99999999999999999999999",
        "",
        "%00",
        "%F0%9F%92%A5",
        "true",
        "%ZZ",
        "LIVE",
    ];
    options
        .choose(rng)
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn sdp_mangled(rng: &mut StdRng, valid: &str) -> String {
    let mut lines: Vec<String> = valid.lines().map(str::to_string).collect();
    match rng.random_range(0..6) {
        0 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            lines.remove(i);
        }
        1 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let l = lines[i].clone();
            lines.insert(i, l);
        }
        2 => {
            let cut = rng.random_range(0..valid.len().max(1));
            return valid.get(..cut).unwrap_or(valid).to_string();
        }
        3 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            lines[i] = format!("{}💥\u{0}", lines[i]);
        }
        4 => lines.push(format!("a={}", "x".repeat(20_000))),
        _ => {
            for l in &mut lines {
                *l = l.replace("H264", "VP8").replace("42e01f", "640028");
            }
        }
    }
    lines.join("\r\n")
}

/// Builds one case of `op` with `mutation`.
fn build_case(
    generator: &mut Generator<'_>,
    op: &Operation,
    pool: &Pool,
    mutation: Mutation,
    offer: &str,
) -> Case {
    let rng_path = mutation == Mutation::BadPathId;
    let mut target = op.path.clone();
    let path_params: Vec<String> = op
        .params_in("path")
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    let bad_one = if path_params.is_empty() {
        None
    } else {
        Some(generator.rng.random_range(0..path_params.len()))
    };
    for (i, name) in path_params.iter().enumerate() {
        let value = if rng_path && bad_one == Some(i) {
            bad_path_id(&mut generator.rng)
        } else {
            let known = match name.as_str() {
                "id" if generator.rng.random_bool(0.5) => pool.streams.last().cloned(),
                "id" => pool.streams.choose(&mut generator.rng).cloned(),
                "session" => pool.sessions.choose(&mut generator.rng).cloned(),
                "destination" => Some(format!("d{}", generator.rng.random_range(1..4))),
                _ => None,
            };
            match known {
                Some(k) if generator.rng.random_bool(0.85) => encode_segment(&k),
                _ => encode_segment(&generator.word(12)),
            }
        };
        target = target.replace(&format!("{{{name}}}"), &value);
    }
    let mut query: Vec<String> = Vec::new();
    let query_params: Vec<&Value> = op.params_in("query").collect();
    for p in &query_params {
        if generator.rng.random_bool(0.5) {
            let v = generator.valid(&p["schema"]);
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            query.push(format!(
                "{}={}",
                p["name"].as_str().unwrap(),
                encode_segment(&text)
            ));
        }
    }
    match mutation {
        Mutation::BadQueryValue if !query_params.is_empty() => {
            let p = query_params.choose(&mut generator.rng).unwrap();
            query.push(format!(
                "{}={}",
                p["name"].as_str().unwrap(),
                bad_query_value(&mut generator.rng)
            ));
        }
        Mutation::UnknownQuery => query.push(format!("{}=1", generator.word(6))),
        _ => {}
    }
    if !query.is_empty() {
        target = format!("{target}?{}", query.join("&"));
    }

    let mut content_type = None;
    let mut body = None;
    if let Some((media, schema)) = op.body() {
        content_type = Some(media.clone());
        let bytes = if media == "application/json" {
            json_body(generator, &schema, mutation)
        } else if media == "application/sdp" {
            match mutation {
                Mutation::Valid => offer.as_bytes().to_vec(),
                Mutation::HugeBody => vec![b'a'; 100_000],
                Mutation::MalformedBody => vec![0xff, 0xfe, b'v', b'=', b'0'],
                Mutation::OddString => generator.odd_string().into_bytes(),
                _ => sdp_mangled(&mut generator.rng, offer).into_bytes(),
            }
        } else {
            match mutation {
                Mutation::Valid => TRICKLE_FRAG.as_bytes().to_vec(),
                Mutation::HugeBody => vec![b'a'; 100_000],
                Mutation::MalformedBody => vec![0xff, 0xfe, b'a', b'='],
                _ => sdp_mangled(&mut generator.rng, TRICKLE_FRAG).into_bytes(),
            }
        };
        body = Some(bytes);
        if mutation == Mutation::ContentType {
            let options = [
                None,
                Some("text/plain"),
                Some("application/x-www-form-urlencoded"),
                Some("multipart/form-data; boundary=x"),
                Some("application/json; charset=utf-8"),
                Some("APPLICATION/JSON"),
                Some("application/sdp"),
                Some("application/json"),
                Some(""),
            ];
            content_type = options
                .choose(&mut generator.rng)
                .copied()
                .flatten()
                .map(str::to_string);
        }
    }

    let security = op
        .spec
        .get("security")
        .unwrap_or(&generator.doc.root["security"]);
    let schemes: Vec<&str> = security
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|alt| alt.as_object())
        .flat_map(|alt| alt.keys().map(String::as_str))
        .collect();
    let mut authorization = schemes
        .contains(&"bearerAuth")
        .then(|| format!("Bearer {TOKEN}"));
    let mut cookie = None;
    match mutation {
        Mutation::NoToken => authorization = None,
        Mutation::WrongToken => {
            let options = [
                format!("Bearer {TOKEN}x"),
                "Bearer ".to_string(),
                format!("Basic {TOKEN}"),
                format!("bearer  {}", generator.word(30)),
                format!("Bearer {}", "💥".repeat(10)),
            ];
            authorization = options.choose(&mut generator.rng).cloned();
        }
        Mutation::WrongCookie => {
            authorization = None;
            cookie = Some(format!(
                "streamify_session={}; streamify_oauth={}",
                generator.word(40),
                generator.word(10)
            ));
        }
        _ => {}
    }
    Case {
        mutation,
        target,
        content_type,
        body,
        authorization,
        cookie,
    }
}

fn json_body(generator: &mut Generator<'_>, schema: &Value, mutation: Mutation) -> Vec<u8> {
    let mut value = generator.valid(schema);
    let mut all = Vec::new();
    pointers(&value, String::new(), &mut all);
    let pick = all.choose(&mut generator.rng).cloned().unwrap_or_default();
    match mutation {
        Mutation::WrongType => {
            let replacement = generator.other_type();
            if let Some(node) = value.pointer_mut(&pick) {
                *node = replacement;
            }
        }
        Mutation::DropField => {
            let objects: Vec<String> = all
                .iter()
                .filter(|p| value.pointer(p).is_some_and(|v| v.is_object()))
                .cloned()
                .collect();
            if let Some(p) = objects.choose(&mut generator.rng) {
                if let Some(map) = value.pointer_mut(p).and_then(Value::as_object_mut) {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    if let Some(k) = keys.choose(&mut generator.rng) {
                        map.remove(k);
                    }
                }
            }
        }
        Mutation::ExtraField => {
            let extra = generator.word(8);
            let v = generator.other_type();
            if let Some(map) = value.as_object_mut() {
                map.insert(extra, v);
            }
        }
        Mutation::HugeBody => {
            return json!({"title": "x".repeat(100_000), "destinations": []})
                .to_string()
                .into_bytes()
        }
        Mutation::LongString | Mutation::OddString => {
            let strings: Vec<String> = all
                .iter()
                .filter(|p| value.pointer(p).is_some_and(|v| v.is_string()))
                .cloned()
                .collect();
            let s = if mutation == Mutation::LongString {
                "y".repeat(generator.rng.random_range(201..6000))
            } else {
                generator.odd_string()
            };
            match strings.choose(&mut generator.rng) {
                Some(p) => {
                    if let Some(node) = value.pointer_mut(p) {
                        *node = json!(s);
                    }
                }
                None => {
                    if let Some(map) = value.as_object_mut() {
                        map.insert("title".into(), json!(s));
                    }
                }
            }
        }
        Mutation::BadNumber => {
            if let Some(node) = value.pointer_mut(&pick) {
                *node = json!("__NUMBER__");
            }
            let numbers = [
                "18446744073709551616",
                "1e400",
                "-0",
                "-1",
                "1E2",
                "0.000001",
            ];
            let n = numbers.choose(&mut generator.rng).copied().unwrap_or("0");
            return value
                .to_string()
                .replacen("\"__NUMBER__\"", n, 1)
                .into_bytes();
        }
        Mutation::MalformedBody => {
            let text = value.to_string();
            return match generator.rng.random_range(0..6) {
                0 => text.as_bytes()[..text.len() / 2].to_vec(),
                1 => {
                    let mut b = text.into_bytes();
                    let i = generator.rng.random_range(0..b.len());
                    b[i] = 0xff;
                    b
                }
                2 => format!("{text}}}}}").into_bytes(),
                3 => format!("\u{feff}{text}").into_bytes(),
                4 => b"null".to_vec(),
                _ => Vec::new(),
            };
        }
        Mutation::DeepNesting => {
            let depth = generator.rng.random_range(200..5000);
            return format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
        }
        _ => {}
    }
    value.to_string().into_bytes()
}

/// Which mutations make sense for `op`.
fn mutations_for(op: &Operation, doc: &Doc) -> Vec<Mutation> {
    let mut out = vec![Mutation::Valid, Mutation::UnknownQuery];
    if op.body().is_some() {
        out.extend(BODY_MUTATIONS);
    }
    if op.params_in("path").next().is_some() {
        out.push(Mutation::BadPathId);
    }
    if op.params_in("query").next().is_some() {
        out.push(Mutation::BadQueryValue);
    }
    let security = op.spec.get("security").unwrap_or(&doc.root["security"]);
    if security.as_array().is_some_and(|a| !a.is_empty()) {
        out.extend([Mutation::NoToken, Mutation::WrongToken]);
    }
    if security.to_string().contains("sessionCookie") {
        out.push(Mutation::WrongCookie);
    }
    out
}

/// Whether a failed authentication on `op` counts against the client's failure budget (the
/// middleware's routes; the WebSocket and YouTube routes check credentials themselves).
fn counts_auth_failures(op: &Operation, doc: &Doc) -> bool {
    let security = op.spec.get("security").unwrap_or(&doc.root["security"]);
    *security == json!([{"bearerAuth": []}])
}

fn seed() -> u64 {
    std::env::var("STREAMIFY_OPENAPI_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0a91)
}

#[tokio::test]
async fn generated_requests_get_documented_answers() {
    let seed = seed();
    let per_operation: usize = std::env::var("STREAMIFY_OPENAPI_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    println!("openapi robustness: seed {seed} (STREAMIFY_OPENAPI_SEED={seed} replays it), {per_operation} requests per operation");
    let doc = Doc::load();
    let s = server(|c| c.limits.max_streams = 10_000).await;
    let http = client();
    let mut generator = Generator {
        doc: &doc,
        rng: StdRng::seed_from_u64(seed),
        rtmp_port: unused_port(),
    };
    let offer = h264_offer();
    let mut pool = Pool::default();
    let mut failures: Vec<String> = Vec::new();
    let mut auth_failures_left = 60usize; // below the server's 100 per minute
    let mut sent = 0usize;
    let mut statuses: BTreeSet<(String, u16)> = BTreeSet::new();
    let mut by_mutation: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    let started = Instant::now();
    let create = operation(&doc, "POST", "/api/streams");
    for op in doc.operations() {
        if op.method == "HEAD" {
            continue;
        }
        let mutations = mutations_for(&op, &doc);
        for i in 0..per_operation {
            // Often a fresh stream: earlier ones may be stopped, deleted or published to.
            if i == 0 || generator.rng.random_bool(0.3) {
                let fixture = build_case(&mut generator, &create, &pool, Mutation::Valid, &offer);
                let r = send_case(&http, &s, &create, &fixture).await;
                if let Ok(a) = check(&doc, &create, r).await {
                    remember(&mut pool, &create, &a);
                }
            }
            let mut mutation = if i < 2 {
                Mutation::Valid
            } else {
                *mutations.choose(&mut generator.rng).unwrap()
            };
            let auth_mutation = matches!(mutation, Mutation::NoToken | Mutation::WrongToken);
            if auth_mutation && counts_auth_failures(&op, &doc) {
                if auth_failures_left == 0 {
                    mutation = Mutation::Valid;
                } else {
                    auth_failures_left -= 1;
                }
            }
            let case = build_case(&mut generator, &op, &pool, mutation, &offer);
            sent += 1;
            let r = send_case(&http, &s, &op, &case).await;
            match check(&doc, &op, r).await {
                Ok(a) => {
                    statuses.insert((op.name(), a.status));
                    by_mutation
                        .entry(format!("{:?}", case.mutation))
                        .or_default()
                        .insert(a.status);
                    remember(&mut pool, &op, &a);
                }
                Err(e) => failures.push(format!(
                    "{} {} ({:?}, content-type {:?}, body {}): {e}",
                    op.method,
                    clip(&case.target, 120),
                    case.mutation,
                    case.content_type,
                    case.body
                        .as_ref()
                        .map(|b| clip(&String::from_utf8_lossy(b), 160))
                        .unwrap_or_default()
                )),
            }
        }
    }
    let r = http.get(url(&s, "/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "the server must keep serving");
    let r = http
        .get(url(&s, "/api/streams?limit=1"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the API must keep serving");
    println!(
        "openapi robustness: {sent} requests in {:.1} s; statuses by mutation: {by_mutation:?}; \
         by operation: {statuses:?}",
        started.elapsed().as_secs_f64()
    );
    s.shutdown().await;
    assert!(
        failures.is_empty(),
        "seed {seed}: {} of {sent} requests failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn clip(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

async fn send_case(
    http: &reqwest::Client,
    s: &RunningServer,
    op: &Operation,
    case: &Case,
) -> reqwest::Response {
    let mut req = http.request(op.method.parse().unwrap(), url(s, &case.target));
    if let Some(a) = &case.authorization {
        req = req.header("authorization", a);
    }
    if let Some(c) = &case.cookie {
        req = req.header("cookie", c);
    }
    if let Some(ct) = &case.content_type {
        req = req.header("content-type", ct);
    }
    if let Some(b) = &case.body {
        req = req.body(b.clone());
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{} {}: no answer: {e}", op.method, clip(&case.target, 120)))
}

/// Keeps ids the server handed out for later requests.
fn remember(pool: &mut Pool, op: &Operation, a: &Answer) {
    if a.status != 201 {
        return;
    }
    if op.path == "/api/streams" {
        if let Some(id) = a.json.as_ref().and_then(|j| j["id"].as_str()) {
            pool.streams.push(id.to_string());
        }
    }
    if op.path == "/whip/{id}" {
        if let Some(session) = a
            .headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.rsplit('/').next())
        {
            pool.sessions.push(session.to_string());
        }
    }
}
