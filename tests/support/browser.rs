//! Headless Chromium driven over the Chrome DevTools Protocol (a WebSocket, tokio-tungstenite),
//! with the flags TESTING.md lists: fake camera (30 fps) and microphone, no permission prompts,
//! loopback ICE candidates allowed. The page's console, its uncaught exceptions and Chromium's
//! own stderr are collected for failure messages.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use streamify_testsupport::require_tool;

use super::within;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_LIMIT: usize = 2000;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A running headless Chromium with one page attached.
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    outgoing: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    console: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    io: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Chromium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chromium")
            .field("pid", &self.child.id())
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

fn push_bounded(log: &Mutex<Vec<String>>, line: String) {
    let mut log = log.lock().unwrap();
    if log.len() < LOG_LIMIT {
        log.push(line);
    }
}

impl Chromium {
    /// Starts Chromium (fresh profile under `dir`) and attaches to a blank page.
    pub async fn launch(dir: &std::path::Path) -> Chromium {
        use std::os::unix::process::CommandExt;
        let chromium = require_tool("chromium");
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("chromium profile dir");
        let mut child = Command::new(chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream=fps=30",
                "--allow-loopback-in-peer-connection",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-dev-shm-usage",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromium: {e}"));
        let stderr_pipe = child.stderr.take().expect("chromium stderr");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        {
            let stderr = stderr.clone();
            std::thread::spawn(move || {
                let mut url_tx = Some(url_tx);
                for line in BufReader::new(stderr_pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ") {
                        if let Some(tx) = url_tx.take() {
                            let _ = tx.send(url.trim().to_string());
                        }
                    }
                    // D-Bus is absent in containers; its complaints would bury the real errors.
                    if !line.contains("dbus/") {
                        push_bounded(&stderr, line);
                    }
                }
            });
        }
        let started = Instant::now();
        let ws_url = loop {
            match url_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(url) => break url,
                Err(_) if started.elapsed() > Duration::from_secs(30) => {
                    let _ = child.kill();
                    panic!(
                        "chromium did not open its DevTools endpoint within 30 s:\n{}",
                        stderr.lock().unwrap().join("\n")
                    );
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!(
                            "chromium exited ({status}) at start:\n{}",
                            stderr.lock().unwrap().join("\n")
                        );
                    }
                }
            }
        };
        let (ws, _) = within(
            COMMAND_TIMEOUT,
            "DevTools WebSocket connect",
            tokio_tungstenite::connect_async(ws_url.as_str()),
        )
        .await
        .unwrap_or_else(|e| panic!("DevTools WebSocket {ws_url}: {e}"));
        let (mut sink, mut stream) = ws.split();
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let console = Arc::new(Mutex::new(Vec::new()));
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<String>();
        let io = {
            let pending = pending.clone();
            let console = console.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        out = outgoing_rx.recv() => {
                            let Some(out) = out else { break };
                            if sink.send(Message::text(out)).await.is_err() {
                                break;
                            }
                        }
                        incoming = stream.next() => {
                            let Some(Ok(msg)) = incoming else { break };
                            let Message::Text(text) = msg else { continue };
                            let Ok(value) = serde_json::from_str::<Value>(&text) else {
                                continue;
                            };
                            dispatch(value, &pending, &console);
                        }
                    }
                }
                // Fail whatever still waits.
                for (_, tx) in pending.lock().unwrap().drain() {
                    let _ = tx.send(Err("DevTools connection closed".into()));
                }
            })
        };
        let mut browser = Chromium {
            child,
            profile,
            outgoing,
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            console,
            stderr,
            io,
        };
        let target = browser
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await
            .expect("Target.createTarget");
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await
            .expect("Target.attachToTarget");
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser
                .command(domain, json!({}))
                .await
                .unwrap_or_else(|e| panic!("{domain}: {e}"));
        }
        browser
    }

    /// Sends one DevTools command (to the page session once attached) and waits for its result.
    pub async fn command(&self, method: &str, params: Value) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = Value::String(self.session.clone());
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.outgoing
            .send(msg.to_string())
            .map_err(|_| "DevTools connection closed".to_string())?;
        match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("DevTools connection closed".into()),
            Err(_) => Err(format!(
                "DevTools {method} timed out after {COMMAND_TIMEOUT:?}"
            )),
        }
    }

    /// Loads `url` and waits until the document is complete.
    pub async fn navigate(&self, url: &str) {
        let result = self
            .command("Page.navigate", json!({"url": url}))
            .await
            .unwrap_or_else(|e| panic!("navigate to {url}: {e}"));
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            panic!("navigate to {url}: {error}\n{}", self.logs());
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(30),
            "page load",
        )
        .await;
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its JSON value, or the
    /// exception's description.
    pub async fn eval(&self, expression: &str) -> Result<Value, String> {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                }),
            )
            .await?;
        if let Some(exception) = result.get("exceptionDetails") {
            let text = exception["exception"]["description"]
                .as_str()
                .or_else(|| exception["text"].as_str())
                .unwrap_or("exception")
                .to_string();
            return Err(text);
        }
        Ok(result["result"]["value"].clone())
    }

    /// Polls `expression` every 200 ms until it is truthy; panics after `limit` with the logs.
    pub async fn wait_for(&self, expression: &str, limit: Duration, what: &str) -> Value {
        let started = Instant::now();
        loop {
            match self.eval(expression).await {
                Ok(v) if is_truthy(&v) => return v,
                Ok(_) => {}
                Err(e) if started.elapsed() > limit => {
                    panic!("waiting for {what}: {e}\n{}", self.logs())
                }
                Err(_) => {}
            }
            if started.elapsed() > limit {
                panic!(
                    "waiting for {what}: `{expression}` not true after {limit:?}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The page console and exceptions, and Chromium's stderr, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "---- browser console ----\n{}\n---- chromium stderr (last 60 lines) ----\n{}",
            self.console.lock().unwrap().join("\n"),
            {
                let stderr = self.stderr.lock().unwrap();
                let skip = stderr.len().saturating_sub(60);
                stderr[skip..].join("\n")
            }
        )
    }

    /// The page console so far.
    pub fn console(&self) -> String {
        self.console.lock().unwrap().join("\n")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.io.abort();
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn is_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}

fn dispatch(value: Value, pending: &Pending, console: &Mutex<Vec<String>>) {
    if let Some(id) = value.get("id").and_then(Value::as_u64) {
        if let Some(tx) = pending.lock().unwrap().remove(&id) {
            let result = match value.get("error") {
                Some(error) => Err(error.to_string()),
                None => Ok(value["result"].clone()),
            };
            let _ = tx.send(result);
        }
        return;
    }
    let params = &value["params"];
    let line = match value["method"].as_str() {
        Some("Runtime.consoleAPICalled") => {
            let args: Vec<String> = params["args"]
                .as_array()
                .map(|args| {
                    args.iter()
                        .map(|a| match &a["value"] {
                            Value::String(s) => s.clone(),
                            Value::Null => a["description"].as_str().unwrap_or("").to_string(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "console.{}: {}",
                params["type"].as_str().unwrap_or("log"),
                args.join(" ")
            )
        }
        Some("Runtime.exceptionThrown") => format!(
            "uncaught: {}",
            params["exceptionDetails"]["exception"]["description"]
                .as_str()
                .or_else(|| params["exceptionDetails"]["text"].as_str())
                .unwrap_or("exception")
        ),
        Some("Log.entryAdded") => format!(
            "log.{} [{}]: {}",
            params["entry"]["level"].as_str().unwrap_or("?"),
            params["entry"]["source"].as_str().unwrap_or("?"),
            params["entry"]["text"].as_str().unwrap_or("")
        ),
        _ => return,
    };
    push_bounded(console, line);
}
