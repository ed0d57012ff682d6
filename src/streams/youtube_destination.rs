//! A YouTube destination: the stream's media goes to a YouTube Live broadcast created for it.
//!
//! When the stream starts sending, one task runs the [`BroadcastDriver`] (insert broadcast,
//! insert stream, bind, publish, wait until YouTube receives the stream, transition `live`)
//! with an [`RtmpPublish`] that runs the normal RTMP output ([`output::rtmp::spawn`]) against
//! the ingestion address, fed by the stream's tag fan-out like any other destination, so
//! reconnects, back-pressure and figures are the same.
//!
//! ```text
//! idle -> connecting ........ (broadcast created, RTMP publishing, waiting for YouTube)
//!      -> live / reconnecting  only once the broadcast transitioned to live; then the RTMP
//!                              output's state (health read every DriverTiming::health_interval)
//!      -> stopping -> stopped  transition complete, then FCUnpublish/deleteStream
//!      -> failed               any YouTube failure (its youtube_* code) or the RTMP output's
//! ```
//!
//! A failure before live removes what was created (the driver does; a stop or an RTMP failure
//! during the start does it here). The ingestion URL carries the stream key: it is shown and
//! logged masked only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::caller::Caller;
use super::persist::{self, Persister, Write};
use crate::error::{Error, ErrorCode, Result};
use crate::media::MediaTag;
use crate::output::{self, DestinationState, OutputConfig, OutputContext, OutputStatus};
use crate::store::DestinationRecord;
use crate::youtube::live::{
    BroadcastDriver, BroadcastRequest, HealthIssue, LiveApi, LiveSession, Privacy, RtmpPublish,
    YoutubeEvent,
};
use crate::youtube::YouTube;

/// Longest broadcast description YouTube takes.
pub const MAX_DESCRIPTION: usize = 5000;

/// The `youtube` object of a destination in the stream's API view.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct YoutubeView {
    /// The connected account the broadcast belongs to.
    pub account_id: String,
    /// Broadcast privacy.
    pub privacy: Privacy,
    /// The broadcast (video) id, once created.
    pub broadcast_id: Option<String>,
    /// `https://www.youtube.com/watch?v=...`, once created.
    pub watch_url: Option<String>,
    /// YouTube's latest health reading of the incoming stream (`good`, `ok`, `bad`, `noData`).
    pub health: Option<String>,
    /// The configuration issues of that reading.
    pub issues: Vec<HealthIssue>,
}

/// What a YouTube destination is, and what it has learnt so far.
pub(crate) struct YoutubeDestination {
    /// The YouTube service (configured: [`YoutubeDestination::prepare`] checked it).
    youtube: Arc<YouTube>,
    description: String,
    /// The RTMP output's own status: its figures, and its state once live.
    rtmp: Arc<OutputStatus>,
    view: Mutex<YoutubeView>,
    /// The ingestion URL with the key masked, once known.
    masked: Mutex<String>,
}

impl std::fmt::Debug for YoutubeDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YoutubeDestination")
            .field("view", &self.view())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_connected() -> Error {
    Error::new(
        ErrorCode::YoutubeNotConnected,
        "no YouTube account is connected: sign in with Google at /auth/google/start first",
    )
}

/// The account a new YouTube destination publishes with: `requested` (a signed-in caller may
/// only name its own), else the stream owner's, else (API token) the only connected account.
fn choose_account(
    youtube: &YouTube,
    requested: Option<&str>,
    owner: Option<&str>,
    caller: &Caller,
) -> Result<String> {
    let ids = youtube.store().account_ids()?;
    if let Some(id) = requested {
        if let Caller::Account(own) = caller {
            if own != id {
                return Err(Error::new(
                    ErrorCode::InvalidRequest,
                    "account_id: a signed-in user can only publish to their own YouTube account \
                     (leave account_id out)",
                ));
            }
        }
        return ids.into_iter().find(|a| a == id).ok_or_else(not_connected);
    }
    if let Some(owner) = owner {
        return ids
            .into_iter()
            .find(|a| a == owner)
            .ok_or_else(not_connected);
    }
    match ids.len() {
        0 => Err(not_connected()),
        1 => Ok(ids.into_iter().next().expect("one account")),
        n => Err(Error::new(
            ErrorCode::InvalidRequest,
            format!(
                "{n} YouTube accounts are connected: say which one with \"account_id\" \
                 (GET /api/youtube/account?account=ID shows one)"
            ),
        )),
    }
}

impl YoutubeDestination {
    /// Checks a `{"type":"youtube"}` destination and picks its account: 503
    /// `youtube_not_configured` without Google credentials, 409 `youtube_not_connected`
    /// without an account, 401 `youtube_reauth_required` when the account must sign in again,
    /// 400 `invalid_request` when the account is ambiguous or not the caller's.
    pub(crate) fn prepare(
        youtube: Option<&Arc<YouTube>>,
        privacy: Privacy,
        description: Option<String>,
        account_id: Option<&str>,
        owner: Option<&str>,
        caller: &Caller,
    ) -> Result<YoutubeDestination> {
        let youtube = youtube
            .filter(|y| y.config().is_configured())
            .ok_or_else(crate::youtube::not_configured)?;
        let description = description.unwrap_or_default();
        if description.chars().count() > MAX_DESCRIPTION {
            return Err(Error::new(
                ErrorCode::InvalidRequest,
                format!("description is longer than {MAX_DESCRIPTION} characters"),
            ));
        }
        let account_id = choose_account(youtube, account_id, owner, caller)?;
        let account = youtube
            .store()
            .account(&account_id)?
            .ok_or_else(not_connected)?;
        if account.needs_reconnect {
            return Err(Error::new(
                ErrorCode::YoutubeReauthRequired,
                "the YouTube account must be reconnected (its access was revoked or expired): \
                 sign in again at /auth/google/start",
            ));
        }
        Ok(YoutubeDestination {
            youtube: youtube.clone(),
            description,
            rtmp: Arc::new(OutputStatus::default()),
            view: Mutex::new(YoutubeView {
                account_id,
                privacy,
                ..YoutubeView::default()
            }),
            masked: Mutex::new(String::new()),
        })
    }

    /// The `youtube` object of the API view.
    pub(crate) fn view(&self) -> YoutubeView {
        lock(&self.view).clone()
    }

    /// The ingestion URL with the key masked (empty before the stream was created).
    pub(crate) fn masked_url(&self) -> String {
        lock(&self.masked).clone()
    }

    /// The RTMP output's figures.
    pub(crate) fn stats(&self) -> output::OutputStats {
        self.rtmp.stats()
    }

    /// What the store keeps in the clear (no ingestion URL, no key).
    pub(crate) fn public_json(&self, id: &str) -> String {
        let v = self.view();
        serde_json::json!({
            "id": id,
            "url": self.masked_url(),
            "privacy": v.privacy,
            "account_id": v.account_id,
            "broadcast_id": v.broadcast_id,
            "watch_url": v.watch_url,
        })
        .to_string()
    }

    fn update(&self, change: impl FnOnce(&mut YoutubeView)) -> bool {
        let mut view = lock(&self.view);
        let before = view.clone();
        change(&mut view);
        *view != before
    }
}

/// The view of a YouTube destination known only to the store (from its public JSON).
pub(crate) fn view_from_public(public: &serde_json::Value) -> YoutubeView {
    let text = |k: &str| public[k].as_str().map(str::to_string);
    YoutubeView {
        account_id: text("account_id").unwrap_or_default(),
        privacy: serde_json::from_value(public["privacy"].clone()).unwrap_or_default(),
        broadcast_id: text("broadcast_id"),
        watch_url: text("watch_url"),
        health: None,
        issues: Vec::new(),
    }
}

/// Everything one run of a YouTube destination needs.
pub(crate) struct Launch {
    /// The destination.
    pub destination: Arc<YoutubeDestination>,
    /// Its id within the stream.
    pub id: String,
    /// The stream (id, title) the broadcast is for.
    pub stream_id: String,
    /// The broadcast title.
    pub title: String,
    /// RTMP output settings.
    pub output: OutputConfig,
    /// The destination's state as the stream sees it.
    pub status: Arc<OutputStatus>,
    /// The stream.
    pub context: Arc<dyn OutputContext>,
    /// Turns `true` when the destination must stop.
    pub stop: watch::Receiver<bool>,
    /// Where the broadcast id is recorded, with the destination's position.
    pub persist: Option<(Arc<Persister>, i64)>,
}

/// Starts the destination's task.
pub(crate) fn spawn(launch: Launch) -> JoinHandle<()> {
    tokio::spawn(launch.run())
}

/// Passes the stream's media to the RTMP output and tells the YouTube task when the RTMP
/// output's state changed (the stream hears of it from the YouTube task).
struct Relay {
    stream: Arc<dyn OutputContext>,
    changed: watch::Sender<()>,
}

impl OutputContext for Relay {
    fn subscribe(&self) -> (tokio::sync::broadcast::Receiver<MediaTag>, Vec<MediaTag>) {
        self.stream.subscribe()
    }

    fn request_keyframe(&self) {
        self.stream.request_keyframe();
    }

    fn output_changed(&self) {
        self.changed.send_replace(());
    }
}

/// [`RtmpPublish`] through the server's RTMP output.
struct OutputPublisher {
    destination: Arc<YoutubeDestination>,
    config: OutputConfig,
    relay: Arc<dyn OutputContext>,
    changed: watch::Receiver<()>,
    stop: Option<watch::Sender<bool>>,
    task: Option<JoinHandle<()>>,
}

impl RtmpPublish for OutputPublisher {
    async fn start_publish(&mut self, url: &str) -> Result<()> {
        self.stop_publish().await;
        let masked = output::mask_url(url);
        *lock(&self.destination.masked) = masked.clone();
        let mut changed = self.changed.clone();
        changed.borrow_and_update();
        let (stop, stop_rx) = watch::channel(false);
        self.stop = Some(stop);
        self.task = Some(output::rtmp::spawn(
            url.to_string(),
            masked,
            self.config.clone(),
            self.destination.rtmp.clone(),
            self.relay.clone(),
            stop_rx,
        ));
        // Accepted (or refused, or given up after the failure budget).
        loop {
            let rtmp = &self.destination.rtmp;
            match rtmp.state() {
                DestinationState::Live => return Ok(()),
                DestinationState::Failed | DestinationState::Stopped => {
                    return Err(rtmp.error().unwrap_or_else(|| {
                        Error::new(
                            ErrorCode::RtmpConnectFailed,
                            "the RTMP output to YouTube's ingestion stopped",
                        )
                    }))
                }
                _ => {}
            }
            if changed.changed().await.is_err() {
                return Err(Error::new(ErrorCode::Internal, "the RTMP output is gone"));
            }
        }
    }

    async fn stop_publish(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            let limit = self.config.finish_timeout + Duration::from_secs(1);
            if tokio::time::timeout(limit, task).await.is_err() {
                abort.abort();
            }
        }
    }
}

/// How the start phase ended.
enum Start {
    Done(Result<LiveSession>),
    /// Stopped (`None`) or the RTMP output failed (`Some`) before the broadcast was live.
    Interrupted(Option<Error>),
}

/// What was created on YouTube so far (for the clean-up of an interrupted start).
#[derive(Default)]
struct Created {
    broadcast_id: Option<String>,
    stream_id: Option<String>,
}

impl Launch {
    fn set(&self, state: DestinationState, error: Option<Error>) {
        if self.status.set(state, error) {
            self.context.output_changed();
        }
    }

    /// The RTMP output's failure, if it failed.
    fn rtmp_failure(&self) -> Option<Error> {
        let rtmp = &self.destination.rtmp;
        (rtmp.state() == DestinationState::Failed).then(|| {
            rtmp.error().unwrap_or_else(|| {
                Error::new(
                    ErrorCode::RtmpConnectionLost,
                    "the RTMP output to YouTube failed",
                )
            })
        })
    }

    /// While live, the destination follows the RTMP output (live or reconnecting).
    fn follow_rtmp(&self) {
        let rtmp = &self.destination.rtmp;
        match rtmp.state() {
            DestinationState::Live => self.set(DestinationState::Live, None),
            DestinationState::Connecting | DestinationState::Reconnecting => {
                self.set(DestinationState::Reconnecting, rtmp.error())
            }
            _ => {}
        }
    }

    fn on_event(&self, event: YoutubeEvent, created: &mut Created) {
        let changed = match event {
            YoutubeEvent::BroadcastCreated {
                broadcast_id,
                watch_url,
            } => {
                tracing::info!(stream = %self.stream_id, destination = %self.id,
                    broadcast = %broadcast_id, "YouTube broadcast created");
                created.broadcast_id = Some(broadcast_id.clone());
                let changed = self.destination.update(|v| {
                    v.broadcast_id = Some(broadcast_id);
                    v.watch_url = Some(watch_url);
                });
                self.save_public();
                changed
            }
            YoutubeEvent::StreamCreated { stream_id } => {
                created.stream_id = Some(stream_id);
                false
            }
            YoutubeEvent::Health(status) => {
                if !status.issues.is_empty() {
                    let kinds: Vec<&str> = status.issues.iter().map(|i| i.kind.as_str()).collect();
                    tracing::warn!(stream = %self.stream_id, destination = %self.id,
                        health = %status.health, issues = ?kinds, "YouTube reports stream issues");
                }
                self.destination.update(|v| {
                    v.health = Some(status.health);
                    v.issues = status.issues;
                })
            }
            _ => false,
        };
        if changed {
            // Watchers get a `destination` event with the new `youtube` object.
            self.context.output_changed();
        }
    }

    fn save_public(&self) {
        let Some((persister, position)) = &self.persist else {
            return;
        };
        let state = serde_json::to_value(self.status.state())
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        persister.send(Write::Destination(DestinationRecord {
            id: persist::destination_key(&self.stream_id, &self.id),
            stream_id: self.stream_id.clone(),
            position: *position,
            kind: "youtube".into(),
            public: self.destination.public_json(&self.id),
            secret: None,
            state,
            error: None,
            figures: None,
        }));
    }

    async fn run(self) {
        self.set(DestinationState::Connecting, None);
        let (changed_tx, mut changed) = watch::channel(());
        let relay: Arc<dyn OutputContext> = Arc::new(Relay {
            stream: self.context.clone(),
            changed: changed_tx.clone(),
        });
        let mut publisher = OutputPublisher {
            destination: self.destination.clone(),
            config: self.output.clone(),
            relay,
            changed: changed.clone(),
            stop: None,
            task: None,
        };
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let account_id = self.destination.view().account_id;
        let driver = BroadcastDriver::new(self.destination.youtube.clone(), &account_id)
            .with_events(events_tx);
        let request = BroadcastRequest {
            title: self.title.clone(),
            description: self.destination.description.clone(),
            privacy: self.destination.view().privacy,
            owner_stream: Some(self.stream_id.clone()),
        };
        let mut created = Created::default();
        let mut stop = self.stop.clone();

        let started = {
            let start = driver.start(&request, &mut publisher);
            tokio::pin!(start);
            loop {
                tokio::select! {
                    result = &mut start => break Start::Done(result),
                    Some(event) = events.recv() => self.on_event(event, &mut created),
                    _ = stop.wait_for(|s| *s) => break Start::Interrupted(None),
                    _ = changed.changed() => {
                        if let Some(e) = self.rtmp_failure() {
                            break Start::Interrupted(Some(e));
                        }
                    }
                }
            }
        };
        while let Ok(event) = events.try_recv() {
            self.on_event(event, &mut created);
        }
        let session = match started {
            Start::Done(Ok(session)) => session,
            Start::Done(Err(e)) => {
                // The driver already stopped publishing and deleted what it created.
                return self.fail(e);
            }
            Start::Interrupted(error) => {
                self.set(DestinationState::Stopping, None);
                abandon(
                    driver.api(),
                    &self.destination.youtube,
                    &created,
                    &mut publisher,
                )
                .await;
                return match error {
                    Some(e) => self.fail(e),
                    None => self.set(DestinationState::Stopped, None),
                };
            }
        };
        tracing::info!(stream = %self.stream_id, destination = %self.id,
            broadcast = %session.broadcast_id, "YouTube broadcast live");
        self.follow_rtmp();

        let watched = {
            let watch = driver.watch_health(&session, self.stop.clone());
            tokio::pin!(watch);
            loop {
                tokio::select! {
                    result = &mut watch => break result,
                    Some(event) = events.recv() => self.on_event(event, &mut created),
                    _ = changed.changed() => match self.rtmp_failure() {
                        Some(e) => break Err(e),
                        None => self.follow_rtmp(),
                    },
                }
            }
        };
        while let Ok(event) = events.try_recv() {
            self.on_event(event, &mut created);
        }
        self.set(DestinationState::Stopping, watched.as_ref().err().cloned());
        let every = self.destination.youtube.config().timing.cleanup_interval;
        let stopped = driver.stop(&session, &mut publisher).await.map_err(|e| {
            // The broadcast stays open in the store: the server's clean-up completes it.
            let within = if every.as_secs() >= 60 {
                format!("{} minutes", every.as_secs().div_ceil(60))
            } else {
                format!("{} s", every.as_secs().max(1))
            };
            Error::new(
                e.code,
                format!(
                    "{} The broadcast could not be ended now: Streamify ends it in the \
                     background within {within} (or end it in YouTube Studio).",
                    e.message
                ),
            )
        });
        drop(changed_tx);
        match watched.and(stopped) {
            Ok(()) => self.set(DestinationState::Stopped, None),
            Err(e) => self.fail(e),
        }
    }

    fn fail(&self, error: Error) {
        tracing::warn!(stream = %self.stream_id, destination = %self.id,
            code = %error.code, "YouTube destination failed: {}", error.message);
        self.set(DestinationState::Failed, Some(error));
    }
}

/// Removes what an interrupted start created: the publish, the broadcast (ended instead when
/// it already went live) and its stream.
async fn abandon(
    api: &LiveApi,
    youtube: &YouTube,
    created: &Created,
    publisher: &mut OutputPublisher,
) {
    publisher.stop_publish().await;
    if let Some(id) = &created.broadcast_id {
        let state = match api.delete_broadcast(id).await {
            Ok(()) => Some("deleted"),
            Err(_) => match api.transition(id, "complete").await {
                Ok(_) => Some("complete"),
                Err(e) => {
                    tracing::warn!(broadcast = %id, error = %e.error, "could not remove the broadcast");
                    None
                }
            },
        };
        if let Some(state) = state {
            let _ = youtube.store().set_broadcast_state(id, state);
        }
    }
    if let Some(id) = &created.stream_id {
        if let Err(e) = api.delete_stream(id).await {
            tracing::warn!(error = %e.error, "could not delete the liveStream");
        }
    }
}
