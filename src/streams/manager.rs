//! Owns the streams and wires each one: its lifecycle, its publisher session (webrtc), its
//! media fan-out (one `broadcast` of tags, a `Bytes` refcount per destination) and its
//! destinations (output tasks). Control flows in from the HTTP layer; nothing here knows HTTP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use flv::TagKind;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::caller::Caller;
use super::lifecycle::{
    Effect, Input, Lifecycle, OutputSummary, PublisherLost, StartMode, StreamState, Transition,
};
use super::persist::{self, Persister, Write};
use super::youtube_destination::{self, YoutubeDestination, YoutubeView};
use crate::error::{Error, ErrorCode, Result};
use crate::media::{MediaTag, PipelineStats};
use crate::output::{
    self, DestinationState, OutputConfig, OutputContext, OutputStats, OutputStatus,
};
use crate::store::{DestinationRecord, StreamRecord};
use crate::webrtc::{
    Ingest, PublisherSink, SessionCommand, SessionConfig, SessionHandle, SessionStats,
};
use crate::youtube::live::Privacy;
use crate::youtube::YouTube;

/// Settings of the manager.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Streams that may exist at once (not counting ended or failed ones).
    pub max_streams: usize,
    /// Destinations per stream.
    pub max_destinations: usize,
    /// RTMP outputs.
    pub output: OutputConfig,
    /// Publisher sessions.
    pub session: SessionConfig,
    /// Time allowed for a stop (destinations finishing, peer connection closing).
    pub stop_timeout: Duration,
    /// How long a stream whose publisher was lost keeps its destinations and waits for a
    /// new publisher (zero: it ends at once).
    pub publisher_grace: Duration,
    /// YouTube (sign-in, Live API), for `youtube` destinations.
    pub youtube: Option<Arc<YouTube>>,
}

/// A destination to create.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DestinationSpec {
    /// An RTMP or RTMPS URL with the stream key as its last segment.
    Rtmp {
        /// `rtmp[s]://host[:port]/app/key`.
        url: String,
    },
    /// A YouTube Live broadcast created for the stream on a connected account.
    Youtube {
        /// Broadcast privacy (default `private`).
        #[serde(default)]
        privacy: Privacy,
        /// Broadcast description.
        #[serde(default)]
        description: Option<String>,
        /// The connected account (default: the stream owner's, or with the API token the only
        /// connected one).
        #[serde(default)]
        account_id: Option<String>,
    },
}

/// A stream to create.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateStream {
    /// A name for people.
    #[serde(default)]
    pub title: String,
    /// Where the stream goes.
    pub destinations: Vec<DestinationSpec>,
    /// When it starts sending (default `on_publish`).
    #[serde(default)]
    pub start: StartMode,
}

/// Something a stream's watchers (WebSocket, SSE) want to hear.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The stream changed state.
    State(Transition),
    /// The publisher was lost (the stream waits for it until `until_ms`) or came back.
    Publisher {
        /// `disconnected` (quiet or ICE disconnected; it may come back), `connected` (heard
        /// from again), `lost` (given up: the grace period runs) or `resumed` (a new
        /// publisher continues the stream).
        state: &'static str,
        /// Unix milliseconds when the grace period ends (`lost` only).
        until_ms: Option<u64>,
        /// Why it was lost (`lost` only).
        error: Option<Error>,
    },
    /// A destination changed state.
    Destination {
        /// The destination id.
        id: String,
        /// Its new state.
        state: DestinationState,
        /// Its last error.
        error: Option<Error>,
        /// A YouTube destination's broadcast and health.
        #[serde(skip_serializing_if = "Option::is_none")]
        youtube: Option<YoutubeView>,
    },
}

/// A destination as the API shows it (URL masked).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DestinationSnapshot {
    /// Id within the stream.
    pub id: String,
    /// `rtmp` or `youtube`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The URL with the stream key masked (for `youtube`, the ingestion URL once known).
    pub url: String,
    /// State.
    pub state: DestinationState,
    /// The last error (kept while reconnecting).
    pub error: Option<Error>,
    /// Figures.
    pub stats: OutputStats,
    /// For `youtube`: the broadcast, its watch URL and YouTube's health reading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub youtube: Option<YoutubeView>,
}

/// The publisher as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PublisherSnapshot {
    /// The session id (WHIP resource).
    pub session_id: String,
    /// Connected once, but now ICE is disconnected or nothing arrived for 5 s: the publisher
    /// may still come back, or a new publish replace it at once, before it is declared lost
    /// (`publisher_lost`) after `--ice-disconnect-timeout-secs`.
    pub disconnected: bool,
    /// Peer connection figures.
    #[serde(flatten)]
    pub session: SessionStats,
}

/// A stream as the API shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StreamSnapshot {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// State.
    pub state: StreamState,
    /// Start mode.
    pub start: StartMode,
    /// Why it is in this state (the latest transition's reason).
    pub reason: Option<String>,
    /// The error that failed it.
    pub error: Option<Error>,
    /// Unix milliseconds.
    pub created_at_ms: u64,
    /// The publisher, while one is attached.
    pub publisher: Option<PublisherSnapshot>,
    /// Destinations.
    pub destinations: Vec<DestinationSnapshot>,
    /// Media figures of the current (or last) publisher.
    pub media: PipelineStats,
    /// While the publisher is lost: since when, until when the stream waits, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_lost: Option<PublisherLost>,
    /// For a stream from before a restart: the figures saved when it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_figures: Option<serde_json::Value>,
    /// The account that created it (`None`: the API token). Not shown.
    #[serde(skip)]
    pub owner: Option<String>,
}

struct Destination {
    id: String,
    url: String,
    masked: String,
    status: Arc<OutputStatus>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    persisted: DestinationState,
    kind: DestinationKind,
    /// Order within the stream (in the store).
    position: i64,
}

enum DestinationKind {
    Rtmp,
    Youtube(Arc<YoutubeDestination>),
}

impl Destination {
    /// Checks `spec` and makes destination `id` (at `position`) of a stream owned by `owner`.
    fn new(
        id: String,
        position: i64,
        spec: DestinationSpec,
        youtube: Option<&Arc<YouTube>>,
        owner: Option<&str>,
        caller: &Caller,
    ) -> Result<Destination> {
        let (url, masked, kind) = match spec {
            DestinationSpec::Rtmp { url } => {
                output::validate_url(&url)?;
                let masked = output::mask_url(&url);
                (url, masked, DestinationKind::Rtmp)
            }
            DestinationSpec::Youtube {
                privacy,
                description,
                account_id,
            } => {
                let y = YoutubeDestination::prepare(
                    youtube,
                    privacy,
                    description,
                    account_id.as_deref(),
                    owner,
                    caller,
                )?;
                (
                    String::new(),
                    String::new(),
                    DestinationKind::Youtube(Arc::new(y)),
                )
            }
        };
        Ok(Destination {
            id,
            url,
            masked,
            status: Arc::new(OutputStatus::default()),
            stop: watch::channel(false).0,
            task: None,
            persisted: DestinationState::Idle,
            kind,
            position,
        })
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            DestinationKind::Rtmp => "rtmp",
            DestinationKind::Youtube(_) => "youtube",
        }
    }

    fn stats(&self) -> OutputStats {
        match &self.kind {
            DestinationKind::Rtmp => self.status.stats(),
            DestinationKind::Youtube(y) => y.stats(),
        }
    }

    fn youtube_view(&self) -> Option<YoutubeView> {
        match &self.kind {
            DestinationKind::Rtmp => None,
            DestinationKind::Youtube(y) => Some(y.view()),
        }
    }

    fn snapshot(&self) -> DestinationSnapshot {
        let url = match &self.kind {
            DestinationKind::Rtmp => self.masked.clone(),
            DestinationKind::Youtube(y) => y.masked_url(),
        };
        DestinationSnapshot {
            id: self.id.clone(),
            kind: self.kind_name(),
            url,
            state: self.status.state(),
            error: self.status.error(),
            stats: self.stats(),
            youtube: self.youtube_view(),
        }
    }

    /// The store row (the RTMP URL is the sealed secret; a YouTube destination has none).
    fn record(&self, stream_id: &str) -> DestinationRecord {
        let (public, secret) = match &self.kind {
            DestinationKind::Rtmp => (
                serde_json::json!({"id": self.id, "url": self.masked}).to_string(),
                Some(self.url.clone()),
            ),
            DestinationKind::Youtube(y) => (y.public_json(&self.id), None),
        };
        DestinationRecord {
            id: persist::destination_key(stream_id, &self.id),
            stream_id: stream_id.to_string(),
            position: self.position,
            kind: self.kind_name().into(),
            public,
            secret,
            state: "idle".into(),
            error: None,
            figures: None,
        }
    }
}

struct Core {
    lifecycle: Lifecycle,
    destinations: Vec<Destination>,
    next_destination: usize,
    publisher: Option<SessionHandle>,
    session_stats: SessionStats,
    media: PipelineStats,
    headers: [Option<MediaTag>; 3],
    timeline: Timeline,
    teardown: bool,
}

/// The stream's output clock across publishers: a publisher that takes over (after a loss)
/// starts its pipeline at 0 again; its tags are shifted so that every destination sees
/// timestamps keep going forward, by the time the stream was without media.
#[derive(Debug, Default)]
struct Timeline {
    /// Added to the current publisher's timestamps.
    offset: u32,
    /// The latest output timestamp so far, and when it was sent.
    last: Option<(u32, std::time::Instant)>,
    /// Set when a publisher attached to a stream that already sent media.
    resuming: bool,
}

impl Timeline {
    /// A new publisher attaches: its time 0 goes after everything sent so far.
    fn new_publisher(&mut self, now: std::time::Instant) {
        if let Some((last, at)) = self.last {
            let gap = now
                .saturating_duration_since(at)
                .as_millis()
                .min(u32::MAX as u128) as u32;
            self.offset = last.saturating_add(gap.max(1));
            self.resuming = true;
        }
    }

    fn shift(&mut self, tag: &mut MediaTag, now: std::time::Instant) {
        tag.timestamp = tag.timestamp.saturating_add(self.offset);
        if self.last.is_none_or(|(last, _)| tag.timestamp >= last) {
            self.last = Some((tag.timestamp, now));
        }
    }
}

/// One stream.
pub struct Stream {
    id: String,
    title: String,
    owner: Option<String>,
    created_at_ms: u64,
    me: Weak<Stream>,
    manager: Weak<Inner>,
    core: Mutex<Core>,
    media: broadcast::Sender<MediaTag>,
    events: broadcast::Sender<StreamEvent>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Tags buffered per destination before a slow one lags (and resyncs at a keyframe).
const MEDIA_QUEUE: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Stream {
    /// The id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The current state.
    pub fn state(&self) -> StreamState {
        lock(&self.core).lifecycle.state()
    }

    /// The account that created it (`None`: the API token).
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }

    /// Watch state and destination changes.
    pub fn subscribe_events(&self) -> broadcast::Receiver<StreamEvent> {
        self.events.subscribe()
    }

    /// Every transition so far.
    pub fn history(&self) -> Vec<Transition> {
        lock(&self.core).lifecycle.history().to_vec()
    }

    /// The id of the attached publisher session, if one is running.
    pub fn publisher_session(&self) -> Option<String> {
        lock(&self.core)
            .publisher
            .as_ref()
            .filter(|p| p.is_running())
            .map(|p| p.id.clone())
    }

    /// What the API shows.
    pub fn snapshot(&self) -> StreamSnapshot {
        let core = lock(&self.core);
        StreamSnapshot {
            id: self.id.clone(),
            title: self.title.clone(),
            state: core.lifecycle.state(),
            start: core.lifecycle.mode(),
            reason: core.lifecycle.last().map(|t| t.reason.clone()),
            error: core.lifecycle.error().cloned(),
            created_at_ms: self.created_at_ms,
            publisher: core.publisher.as_ref().filter(|p| p.is_running()).map(|p| {
                PublisherSnapshot {
                    session_id: p.id.clone(),
                    disconnected: p.is_disconnected(),
                    session: core.session_stats.clone(),
                }
            }),
            destinations: core
                .destinations
                .iter()
                .map(Destination::snapshot)
                .collect(),
            media: core.media.clone(),
            publisher_lost: core.lifecycle.publisher_lost().cloned(),
            final_figures: None,
            owner: self.owner.clone(),
        }
    }

    fn emit(&self, event: StreamEvent) {
        let _ = self.events.send(event);
    }

    /// Applies a lifecycle input with the core locked; runs the effect.
    fn apply(&self, core: &mut Core, input: Input) -> Result<Option<Transition>> {
        let result = core.lifecycle.handle(input, output::unix_ms())?;
        let Some((transition, effect)) = result else {
            return Ok(None);
        };
        tracing::info!(
            stream = %self.id,
            "stream {} -> {} ({})",
            transition.from,
            transition.to,
            transition.reason
        );
        self.emit(StreamEvent::State(transition.clone()));
        self.persist(Write::State {
            stream: self.id.clone(),
            state: transition.to.as_str().to_string(),
            reason: transition.reason.clone(),
            detail: serde_json::json!({"message": transition.message}).to_string(),
        });
        if transition.to.is_terminal() {
            self.persist_figures(core);
        }
        match effect {
            Effect::None => {}
            Effect::StartOutputs => self.start_outputs(core),
            Effect::TearDown => self.begin_teardown(core),
        }
        Ok(Some(transition))
    }

    fn persist(&self, write: Write) {
        if let Some(p) = self.manager.upgrade().and_then(|m| m.persist.clone()) {
            p.send(write);
        }
    }

    /// Records a publisher event (not a state change) in the stream's event log.
    fn persist_publisher_event(&self, core: &Core, reason: &str, message: &str) {
        self.persist(Write::State {
            stream: self.id.clone(),
            state: core.lifecycle.state().as_str().to_string(),
            reason: reason.to_string(),
            detail: serde_json::json!({"message": message}).to_string(),
        });
    }

    /// Feeds the lifecycle a tick at `at_ms` (unix milliseconds).
    fn schedule_tick(&self, at_ms: u64) {
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            loop {
                let wait = at_ms.saturating_sub(output::unix_ms()).max(10);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let mut core = lock(&me.core);
                let _ = me.apply(&mut core, Input::Tick);
                // Woken a little early by the wall clock: wait on; any other outcome (ended,
                // resumed, lost again with its own timer) is this timer's end.
                if core.lifecycle.publisher_lost().map(|l| l.until_ms) != Some(at_ms) {
                    return;
                }
            }
        });
    }

    fn persist_figures(&self, core: &Core) {
        let destinations: Vec<serde_json::Value> = core
            .destinations
            .iter()
            .map(|d| serde_json::json!({"id": d.id, "stats": d.stats()}))
            .collect();
        let json = serde_json::json!({
            "media": core.media,
            "publisher": core.session_stats,
            "destinations": destinations,
        });
        self.persist(Write::Figures {
            stream: self.id.clone(),
            json: json.to_string(),
        });
    }

    fn persist_destinations(&self, core: &mut Core) {
        let mut writes = Vec::new();
        for d in core.destinations.iter_mut() {
            let state = d.status.state();
            if state != d.persisted {
                d.persisted = state;
                writes.push(Write::DestinationState {
                    id: persist::destination_key(&self.id, &d.id),
                    state: serde_json::to_value(state)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    error: d
                        .status
                        .error()
                        .and_then(|e| serde_json::to_string(&e).ok()),
                    figures: serde_json::to_string(&d.stats()).ok(),
                });
            }
        }
        for w in writes {
            self.persist(w);
        }
    }

    fn start_outputs(&self, core: &mut Core) {
        let (Some(me), Some(manager)) = (self.me.upgrade(), self.manager.upgrade()) else {
            return;
        };
        for d in core.destinations.iter_mut().filter(|d| d.task.is_none()) {
            let context: Arc<dyn OutputContext> = me.clone();
            d.task = Some(match &d.kind {
                DestinationKind::Rtmp => output::rtmp::spawn(
                    d.url.clone(),
                    d.masked.clone(),
                    manager.config.output.clone(),
                    d.status.clone(),
                    context,
                    d.stop.subscribe(),
                ),
                DestinationKind::Youtube(y) => {
                    youtube_destination::spawn(youtube_destination::Launch {
                        destination: y.clone(),
                        id: d.id.clone(),
                        stream_id: self.id.clone(),
                        title: self.title.clone(),
                        output: manager.config.output.clone(),
                        status: d.status.clone(),
                        context,
                        stop: d.stop.subscribe(),
                        persist: manager.persist.clone().map(|p| (p, d.position)),
                    })
                }
            });
        }
    }

    fn begin_teardown(&self, core: &mut Core) {
        if core.teardown {
            return;
        }
        core.teardown = true;
        for d in &core.destinations {
            let _ = d.stop.send(true);
        }
        let tasks: Vec<JoinHandle<()>> = core
            .destinations
            .iter_mut()
            .filter_map(|d| d.task.take())
            .collect();
        let publisher = core.publisher.clone();
        let timeout = self
            .manager
            .upgrade()
            .map(|m| m.config.stop_timeout)
            .unwrap_or(Duration::from_secs(5));
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            if let Some(p) = publisher {
                p.send(SessionCommand::Stop);
                let _ = tokio::time::timeout_at(deadline, p.closed()).await;
            }
            for task in tasks {
                let abort = task.abort_handle();
                if tokio::time::timeout_at(deadline, task).await.is_err() {
                    abort.abort();
                }
            }
            let mut core = lock(&me.core);
            for d in &core.destinations {
                if !d.status.state().is_terminal() {
                    d.status.set(DestinationState::Stopped, None);
                }
            }
            me.persist_destinations(&mut core);
            let _ = me.apply(&mut core, Input::Finished);
        });
    }

    fn summary(core: &Core) -> OutputSummary {
        let mut s = OutputSummary {
            total: core.destinations.len(),
            ..OutputSummary::default()
        };
        for d in &core.destinations {
            match d.status.state() {
                DestinationState::Connecting | DestinationState::Idle => s.connecting += 1,
                DestinationState::Live => s.live += 1,
                DestinationState::Reconnecting => s.reconnecting += 1,
                DestinationState::Failed => {
                    s.failed += 1;
                    if let Some(e) = d.status.error() {
                        s.failures.push((d.id.clone(), e));
                    }
                }
                DestinationState::Stopping | DestinationState::Stopped => {}
            }
        }
        s
    }

    /// Adds a destination; it starts at once when the stream is sending (409 once the stream
    /// is stopping or over, 429 past the limit).
    pub fn add_destination(
        &self,
        spec: DestinationSpec,
        caller: &Caller,
    ) -> Result<DestinationSnapshot> {
        let manager = self
            .manager
            .upgrade()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, "the stream is gone"))?;
        let mut core = lock(&self.core);
        // The destination itself is checked first (a bad URL is 400 whatever the stream).
        let id = format!("d{}", core.next_destination);
        let destination = Destination::new(
            id,
            core.next_destination as i64 + 1,
            spec,
            manager.config.youtube.as_ref(),
            self.owner.as_deref(),
            caller,
        )?;
        let state = core.lifecycle.state();
        if state.is_terminal() || state == StreamState::Stopping {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!("cannot add a destination to a stream that is {state}"),
            ));
        }
        if core.destinations.len() >= manager.config.max_destinations {
            return Err(Error::new(
                ErrorCode::TooManyDestinations,
                format!(
                    "a stream has at most {} destinations",
                    manager.config.max_destinations
                ),
            ));
        }
        core.next_destination += 1;
        if let Some(p) = &manager.persist {
            p.send(Write::Destination(destination.record(&self.id)));
        }
        tracing::info!(stream = %self.id, destination = %destination.id,
            kind = destination.kind_name(), url = %destination.masked, "destination added");
        core.destinations.push(destination);
        if state.is_sending() {
            self.start_outputs(&mut core);
        }
        Ok(core.destinations.last().expect("just pushed").snapshot())
    }

    /// Removes a destination (its publish is finished cleanly first). A stream keeps at least
    /// one destination (409).
    pub fn remove_destination(&self, destination_id: &str) -> Result<()> {
        let mut core = lock(&self.core);
        let Some(index) = core
            .destinations
            .iter()
            .position(|d| d.id == destination_id)
        else {
            return Err(Error::new(ErrorCode::NotFound, "no such destination"));
        };
        if core.destinations.len() == 1 {
            return Err(Error::new(
                ErrorCode::Conflict,
                "a stream keeps at least one destination: stop the stream instead",
            ));
        }
        let mut d = core.destinations.remove(index);
        let _ = d.stop.send(true);
        if let Some(task) = d.task.take() {
            tokio::spawn(async move {
                let abort = task.abort_handle();
                if tokio::time::timeout(Duration::from_secs(5), task)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            });
        }
        let key = persist::destination_key(&self.id, &d.id);
        if let Some(p) = self.manager.upgrade().and_then(|m| m.persist.clone()) {
            p.send(Write::DeleteDestination(key));
        }
        tracing::info!(stream = %self.id, destination = %d.masked, "destination removed");
        let summary = Stream::summary(&core);
        let _ = self.apply(&mut core, Input::Outputs(summary));
        Ok(())
    }

    /// `stop`: tear down (409 `conflict` if already over).
    pub fn stop(&self) -> Result<StreamState> {
        let mut core = lock(&self.core);
        self.apply(&mut core, Input::Stop)?;
        Ok(core.lifecycle.state())
    }

    /// `start` of a manual stream (409 `conflict` when it does not fit).
    pub fn start(&self) -> Result<StreamState> {
        let mut core = lock(&self.core);
        self.apply(&mut core, Input::Start)?;
        Ok(core.lifecycle.state())
    }

    /// Ends the publisher session `session_id` (WHIP DELETE, WebSocket bye).
    pub fn end_session(&self, session_id: &str) -> Result<()> {
        let core = lock(&self.core);
        match core.publisher.as_ref() {
            Some(p) if p.id == session_id && p.is_running() => {
                p.send(SessionCommand::Stop);
                Ok(())
            }
            _ => Err(Error::new(
                ErrorCode::NotFound,
                "no such publisher session on this stream",
            )),
        }
    }

    /// Passes a trickled ICE candidate to the session `session_id`.
    pub fn add_candidate(&self, session_id: &str, candidate: &str) -> Result<()> {
        let core = lock(&self.core);
        match core.publisher.as_ref() {
            Some(p) if p.id == session_id && p.is_running() => {
                p.send(SessionCommand::RemoteCandidate(candidate.to_string()));
                Ok(())
            }
            _ => Err(Error::new(
                ErrorCode::NotFound,
                "no such publisher session on this stream",
            )),
        }
    }

    fn publish(&self, manager: &Inner, offer: &str) -> Result<(String, String)> {
        let mut core = lock(&self.core);
        // A publisher whose ICE is disconnected may be replaced at once when the stream waits
        // for lost publishers (the browser reloaded, the network changed).
        let running = core.publisher.as_ref().filter(|p| p.is_running());
        let replace = running.is_some_and(SessionHandle::is_disconnected)
            && core.lifecycle.accepts_replacement();
        if running.is_some() && !replace {
            return Err(Error::new(
                ErrorCode::PublisherExists,
                "another publisher is already sending to this stream; end that session first \
                 (DELETE its WHIP resource)",
            ));
        }
        if !replace && !core.lifecycle.accepts_publisher() {
            return Err(Error::new(
                ErrorCode::Conflict,
                format!(
                    "the stream is {}; a publisher can attach only while it is created",
                    core.lifecycle.state()
                ),
            ));
        }
        let accepted = manager.ingest.accept(offer)?;
        let answer = accepted.answer.clone();
        let session_id = new_id();
        let Some(me) = self.me.upgrade() else {
            return Err(Error::new(ErrorCode::NotFound, "the stream is gone"));
        };
        let sink: Arc<dyn PublisherSink> = me;
        let handle = manager.ingest.spawn(
            accepted,
            session_id.clone(),
            manager.config.session.clone(),
            sink,
        );
        if let Some(old) = core.publisher.replace(handle) {
            if replace {
                tracing::info!(stream = %self.id, session = %old.id, "disconnected publisher replaced");
            }
            old.send(SessionCommand::Stop);
        }
        core.timeline.new_publisher(std::time::Instant::now());
        core.session_stats = SessionStats::default();
        tracing::info!(stream = %self.id, session = %session_id, "publisher attached");
        Ok((session_id, answer))
    }
}

impl PublisherSink for Stream {
    fn disconnected(&self, session_id: &str, disconnected: bool) {
        let core = lock(&self.core);
        if core.publisher.as_ref().is_some_and(|p| p.id == session_id) {
            tracing::info!(stream = %self.id, session = %session_id, disconnected, "publisher connection");
            self.emit(StreamEvent::Publisher {
                state: if disconnected {
                    "disconnected"
                } else {
                    "connected"
                },
                until_ms: None,
                error: None,
            });
        }
    }

    fn media_started(&self, session_id: &str) {
        let mut core = lock(&self.core);
        if core.publisher.as_ref().is_some_and(|p| p.id == session_id) {
            let _ = self.apply(&mut core, Input::PublisherMedia);
            if std::mem::take(&mut core.timeline.resuming) {
                tracing::info!(stream = %self.id, session = %session_id, "publisher resumed the stream");
                self.emit(StreamEvent::Publisher {
                    state: "resumed",
                    until_ms: None,
                    error: None,
                });
                self.persist_publisher_event(
                    &core,
                    "publisher_resumed",
                    "a publisher resumed the stream",
                );
            }
        }
    }

    fn tag(&self, session_id: &str, mut tag: MediaTag) {
        let mut core = lock(&self.core);
        // Tags still flushed by a replaced session would break the new one's timeline.
        if core.publisher.as_ref().is_none_or(|p| p.id != session_id) {
            return;
        }
        core.timeline.shift(&mut tag, std::time::Instant::now());
        if tag.sequence_header {
            let slot = match tag.kind {
                TagKind::Script => 0,
                TagKind::Video => 1,
                TagKind::Audio => 2,
            };
            core.headers[slot] = Some(tag.clone());
        }
        drop(core);
        // No receiver (nothing started yet) is fine: the headers are kept above.
        let _ = self.media.send(tag);
    }

    fn stats(&self, session_id: &str, stats: PipelineStats, session: SessionStats) {
        let mut core = lock(&self.core);
        // A replaced session's last figures must not overwrite its successor's.
        if core.publisher.as_ref().is_some_and(|p| p.id == session_id) {
            core.media = stats;
            core.session_stats = session;
        }
    }

    fn ended(&self, session_id: &str, error: Option<Error>) {
        let mut core = lock(&self.core);
        if core.publisher.as_ref().is_none_or(|p| p.id != session_id) {
            return;
        }
        let was_lost = core.lifecycle.publisher_lost().is_some();
        let _ = self.apply(&mut core, Input::PublisherGone(error));
        if let Some(lost) = core
            .lifecycle
            .publisher_lost()
            .cloned()
            .filter(|_| !was_lost)
        {
            tracing::warn!(stream = %self.id, "publisher lost; waiting for it until the grace period ends");
            self.emit(StreamEvent::Publisher {
                state: "lost",
                until_ms: Some(lost.until_ms),
                error: Some(lost.error.clone()),
            });
            self.persist_publisher_event(&core, "publisher_lost_waiting", &lost.error.message);
            self.schedule_tick(lost.until_ms);
        }
    }
}

impl OutputContext for Stream {
    fn subscribe(&self) -> (broadcast::Receiver<MediaTag>, Vec<MediaTag>) {
        let rx = self.media.subscribe();
        let headers = lock(&self.core).headers.iter().flatten().cloned().collect();
        (rx, headers)
    }

    fn request_keyframe(&self) {
        if let Some(p) = lock(&self.core).publisher.as_ref() {
            p.send(SessionCommand::RequestKeyframe);
        }
    }

    fn output_changed(&self) {
        let mut core = lock(&self.core);
        for d in &core.destinations {
            // Cheap: a handful of destinations; watchers get each one's latest state.
            let state = d.status.state();
            self.emit(StreamEvent::Destination {
                id: d.id.clone(),
                state,
                error: d.status.error(),
                youtube: d.youtube_view(),
            });
        }
        self.persist_destinations(&mut core);
        let summary = Stream::summary(&core);
        let _ = self.apply(&mut core, Input::Outputs(summary));
    }
}

struct Inner {
    config: ManagerConfig,
    ingest: Ingest,
    persist: Option<Arc<Persister>>,
    streams: Mutex<Vec<Arc<Stream>>>,
    shutting_down: AtomicBool,
}

/// The streams of this server.
#[derive(Clone)]
pub struct StreamManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamManager").finish_non_exhaustive()
    }
}

/// Longest title.
pub const MAX_TITLE: usize = 200;

impl StreamManager {
    /// A manager publishing through `ingest`, recording streams in `persist` (if any).
    pub fn new(
        config: ManagerConfig,
        ingest: Ingest,
        persist: Option<Arc<Persister>>,
    ) -> StreamManager {
        StreamManager {
            inner: Arc::new(Inner {
                config,
                ingest,
                persist,
                streams: Mutex::new(Vec::new()),
                shutting_down: AtomicBool::new(false),
            }),
        }
    }

    /// The WebRTC ingest.
    pub fn ingest(&self) -> &Ingest {
        &self.inner.ingest
    }

    /// Creates a stream owned by `caller` (validated: title, 1..=max destinations, URLs,
    /// YouTube accounts, stream limit).
    pub fn create(&self, req: CreateStream, caller: &Caller) -> Result<Arc<Stream>> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorCode::Conflict,
                "the server is shutting down",
            ));
        }
        let title = req.title.trim().to_string();
        if title.chars().count() > MAX_TITLE {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("title is longer than {MAX_TITLE} characters"),
            ));
        }
        if req.destinations.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                "destinations: give at least one {\"type\":\"rtmp\",\"url\":\"rtmp://...\"}",
            ));
        }
        if req.destinations.len() > self.inner.config.max_destinations {
            return Err(Error::new(
                ErrorCode::TooManyDestinations,
                format!(
                    "a stream has at most {} destinations",
                    self.inner.config.max_destinations
                ),
            ));
        }
        let owner = caller.owner().map(str::to_string);
        let destinations: Vec<Destination> = req
            .destinations
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                Destination::new(
                    format!("d{}", i + 1),
                    i as i64,
                    spec,
                    self.inner.config.youtube.as_ref(),
                    owner.as_deref(),
                    caller,
                )
            })
            .collect::<Result<_>>()?;
        let mut streams = lock(&self.inner.streams);
        let active = streams.iter().filter(|s| !s.state().is_terminal()).count();
        if active >= self.inner.config.max_streams {
            return Err(Error::new(
                ErrorCode::TooManyStreams,
                format!(
                    "this server runs at most {} streams at once; stop or delete one first",
                    self.inner.config.max_streams
                ),
            ));
        }
        let (media, _) = broadcast::channel(MEDIA_QUEUE);
        let (events, _) = broadcast::channel(64);
        let manager = Arc::downgrade(&self.inner);
        let stream = Arc::new_cyclic(|me| Stream {
            id: new_id(),
            title,
            owner,
            created_at_ms: output::unix_ms(),
            me: me.clone(),
            manager,
            core: Mutex::new(Core {
                lifecycle: Lifecycle::with_grace(
                    req.start,
                    self.inner.config.publisher_grace.as_millis() as u64,
                ),
                next_destination: destinations.len() + 1,
                destinations,
                publisher: None,
                session_stats: SessionStats::default(),
                media: PipelineStats::default(),
                headers: [None, None, None],
                timeline: Timeline::default(),
                teardown: false,
            }),
            media,
            events,
        });
        if let Some(p) = &self.inner.persist {
            let now = output::unix_ms() as i64;
            let spec = persist::Spec {
                title: stream.title.clone(),
                start: req.start,
            };
            p.send(Write::Stream(StreamRecord {
                id: stream.id.clone(),
                owner: stream.owner.clone(),
                state: StreamState::Created.as_str().to_string(),
                reason: Some("created".into()),
                spec: serde_json::to_string(&spec).unwrap_or_default(),
                figures: None,
                created_at_ms: stream.created_at_ms as i64,
                updated_at_ms: now,
                ended_at_ms: None,
            }));
            let core = lock(&stream.core);
            for d in &core.destinations {
                p.send(Write::Destination(d.record(&stream.id)));
            }
        }
        streams.push(stream.clone());
        tracing::info!(stream = %stream.id, "stream created");
        Ok(stream)
    }

    /// What the API shows of stream `id`: the live stream, or the stored record of one from
    /// before a restart (404 `not_found` when neither exists).
    pub fn snapshot(&self, id: &str) -> Result<StreamSnapshot> {
        if let Ok(s) = self.get(id) {
            return Ok(s.snapshot());
        }
        let Some(p) = &self.inner.persist else {
            return Err(Error::new(ErrorCode::NotFound, "no such stream"));
        };
        match p.store().stream(id)? {
            Some(record) => Ok(persist::snapshot_from_store(p.store(), &record)),
            None => Err(Error::new(ErrorCode::NotFound, "no such stream")),
        }
    }

    /// The stream `id` (404 `not_found`).
    pub fn get(&self, id: &str) -> Result<Arc<Stream>> {
        lock(&self.inner.streams)
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or_else(|| Error::new(ErrorCode::NotFound, "no such stream"))
    }

    /// Streams `caller` may see in creation order, optionally only those in `state`;
    /// `(page, total matching)`.
    pub fn list(
        &self,
        caller: &Caller,
        state: Option<StreamState>,
        offset: usize,
        limit: usize,
    ) -> (Vec<StreamSnapshot>, usize) {
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).clone();
        let mut matching: Vec<StreamSnapshot> = streams
            .iter()
            .filter(|s| caller.can_see(s.owner()))
            .filter(|s| state.is_none_or(|want| s.state() == want))
            .map(|s| s.snapshot())
            .collect();
        if let Some(p) = &self.inner.persist {
            // Streams from before a restart (the store keeps them until deleted).
            let stored = p
                .store()
                .streams(state.map(StreamState::as_str), 10_000, 0)
                .unwrap_or_default();
            for record in stored {
                if !streams.iter().any(|s| s.id == record.id)
                    && caller.can_see(record.owner.as_deref())
                {
                    matching.push(persist::snapshot_from_store(p.store(), &record));
                }
            }
        }
        matching.sort_by(|a, b| {
            a.created_at_ms
                .cmp(&b.created_at_ms)
                .then_with(|| a.id.cmp(&b.id))
        });
        let total = matching.len();
        let page = matching.into_iter().skip(offset).take(limit).collect();
        (page, total)
    }

    /// Removes a stream that is not sending (409 `conflict` otherwise).
    pub fn delete(&self, id: &str) -> Result<()> {
        let stream = match self.get(id) {
            Ok(s) => s,
            Err(e) => {
                // A stream from before a restart is always over: delete its record.
                let p = self.inner.persist.as_ref().ok_or(e.clone())?;
                if p.store().stream(id)?.is_none() {
                    return Err(e);
                }
                p.send(Write::Delete(id.to_string()));
                return Ok(());
            }
        };
        {
            let core = lock(&stream.core);
            if !core.lifecycle.deletable()
                || core
                    .publisher
                    .as_ref()
                    .is_some_and(SessionHandle::is_running)
            {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "the stream is {} with a publisher or destinations active; stop it first",
                        core.lifecycle.state()
                    ),
                ));
            }
        }
        lock(&self.inner.streams).retain(|s| s.id != id);
        if let Some(p) = &self.inner.persist {
            p.send(Write::Delete(id.to_string()));
        }
        Ok(())
    }

    /// Attaches a publisher: answers `offer` and starts its session. Returns
    /// `(session id, SDP answer)`.
    pub fn publish(&self, id: &str, offer: &str) -> Result<(String, String)> {
        if self.inner.shutting_down.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorCode::Conflict,
                "the server is shutting down",
            ));
        }
        let stream = self.get(id)?;
        stream.publish(&self.inner, offer)
    }

    /// Stops every stream and waits (up to the stop timeout plus a margin) for them to end.
    pub async fn shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Relaxed);
        let streams: Vec<Arc<Stream>> = lock(&self.inner.streams).clone();
        for s in &streams {
            let mut core = lock(&s.core);
            let _ = s.apply(&mut core, Input::Shutdown);
        }
        let deadline = tokio::time::Instant::now()
            + self.inner.config.stop_timeout
            + Duration::from_millis(500);
        while tokio::time::Instant::now() < deadline
            && streams.iter().any(|s| !s.state().is_terminal())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(p) = &self.inner.persist {
            p.close(Duration::from_secs(2)).await;
        }
    }

    /// Every stream in memory (for metrics).
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        lock(&self.inner.streams).clone()
    }

    /// Waits until every queued store write is applied (tests, before reading the store).
    pub async fn flush_store(&self) {
        if let Some(p) = &self.inner.persist {
            p.flush(Duration::from_secs(2)).await;
        }
    }
}
