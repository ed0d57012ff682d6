//! Keeps the store up to date without blocking the async tasks: writes are queued (in the
//! order they happen) and applied by one thread; reads go to the store directly.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::output::{DestinationState, OutputStats};
use crate::store::{DestinationRecord, Store, StreamRecord};

use super::lifecycle::{StartMode, StreamState};
use super::manager::{DestinationSnapshot, StreamSnapshot};

/// One write.
#[derive(Debug)]
pub(crate) enum Write {
    Stream(StreamRecord),
    Destination(DestinationRecord),
    State {
        stream: String,
        state: String,
        reason: String,
        detail: String,
    },
    DestinationState {
        id: String,
        state: String,
        error: Option<String>,
        figures: Option<String>,
    },
    Figures {
        stream: String,
        json: String,
    },
    Delete(String),
    DeleteDestination(String),
    Flush(mpsc::Sender<()>),
}

/// The writer thread and the store.
#[derive(Debug)]
pub struct Persister {
    store: Arc<Store>,
    tx: Mutex<Option<mpsc::Sender<Write>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The store id of destination `id` of stream `stream` (destination ids are per stream).
pub(crate) fn destination_key(stream: &str, id: &str) -> String {
    format!("{stream}:{id}")
}

impl Persister {
    /// Starts the writer thread.
    pub fn new(store: Arc<Store>) -> Persister {
        let (tx, rx) = mpsc::channel::<Write>();
        let writer = store.clone();
        let thread = std::thread::Builder::new()
            .name("streamify-store".into())
            .spawn(move || {
                for write in rx {
                    apply(&writer, write);
                }
            })
            .expect("spawn the store writer thread");
        Persister {
            store,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// The store (for reads).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub(crate) fn send(&self, write: Write) {
        if let Some(tx) = self.tx.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(write);
        }
    }

    /// Waits (up to `timeout`, off the async threads) until every queued write is applied.
    pub async fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = mpsc::channel();
        self.send(Write::Flush(done_tx));
        let _ = tokio::task::spawn_blocking(move || done_rx.recv_timeout(timeout)).await;
    }

    /// Flushes and stops the writer thread.
    pub async fn close(&self, timeout: Duration) {
        self.flush(timeout).await;
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn apply(store: &Store, write: Write) {
    let result = match write {
        Write::Stream(s) => store.save_stream(&s),
        Write::Destination(d) => store.save_destination(&d),
        Write::State {
            stream,
            state,
            reason,
            detail,
        } => store
            .record_state(&stream, &state, Some(&reason), Some(&detail))
            .map(drop),
        Write::DestinationState {
            id,
            state,
            error,
            figures,
        } => store.record_destination_state(&id, &state, error.as_deref(), figures.as_deref()),
        Write::Figures { stream, json } => store.save_figures(&stream, &json),
        Write::Delete(id) => store.delete_stream(&id).map(drop),
        Write::DeleteDestination(id) => store.delete_destination(&id).map(drop),
        Write::Flush(done) => {
            let _ = done.send(());
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::warn!("store write failed: {e}");
    }
}

/// The stored settings of a stream (no secrets).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Spec {
    pub title: String,
    pub start: StartMode,
}

/// A stream known only to the store (from before a restart), as the API shows it.
pub(crate) fn snapshot_from_store(store: &Store, record: &StreamRecord) -> StreamSnapshot {
    let spec: Option<Spec> = serde_json::from_str(&record.spec).ok();
    let figures: Option<serde_json::Value> = record
        .figures
        .as_deref()
        .and_then(|f| serde_json::from_str(f).ok());
    let destinations = store
        .destinations(&record.id)
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            let public: serde_json::Value =
                serde_json::from_str(&d.public).unwrap_or(serde_json::Value::Null);
            let youtube = (d.kind == "youtube")
                .then(|| super::youtube_destination::view_from_public(&public));
            DestinationSnapshot {
                id: public["id"].as_str().unwrap_or(&d.id).to_string(),
                kind: if youtube.is_some() { "youtube" } else { "rtmp" },
                url: public["url"].as_str().unwrap_or("").to_string(),
                state: serde_json::from_value(serde_json::Value::String(d.state.clone()))
                    .unwrap_or(DestinationState::Stopped),
                error: d
                    .error
                    .as_deref()
                    .and_then(|e| serde_json::from_str::<Error>(e).ok()),
                stats: d
                    .figures
                    .as_deref()
                    .and_then(|f| serde_json::from_str::<OutputStats>(f).ok())
                    .unwrap_or_default(),
                youtube,
            }
        })
        .collect();
    StreamSnapshot {
        id: record.id.clone(),
        title: spec.as_ref().map(|s| s.title.clone()).unwrap_or_default(),
        state: StreamState::parse(&record.state).unwrap_or(StreamState::Ended),
        start: spec.map(|s| s.start).unwrap_or_default(),
        reason: record.reason.clone(),
        error: None,
        created_at_ms: record.created_at_ms.max(0) as u64,
        publisher: None,
        destinations,
        media: Default::default(),
        publisher_lost: None,
        final_figures: figures,
        owner: record.owner.clone(),
    }
}
