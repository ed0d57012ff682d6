//! A stream's lifecycle as a pure state machine: inputs in, transitions (with reasons) out.
//! Time is passed in; nothing here owns a task, a socket or a clock.
//!
//! ```text
//!   created --publisher media--> ready (manual) --start--> starting
//!   created --publisher media--> starting (on_publish)
//!   starting / live / reconnecting --destinations--> live | reconnecting | starting | failed
//!   any active state --stop / publisher left--> stopping --finished--> ended | failed
//!   any active state --publisher lost--> (same state, waiting for the publisher)
//!       --publisher media again--> (same state, resumed)
//!       --grace period over (tick)--> stopping (publisher_lost) --finished--> failed
//!   created / ready --stop--> stopping
//! ```
//!
//! A publisher that is *lost* (its connection failed) while the stream is ready or sending
//! does not end the stream at once: destinations stay connected for the grace period, and a
//! new publisher may attach and continue the same stream. One that *leaves* (WHIP `DELETE`,
//! WebSocket `bye`) ends it.
//!
//! `live` means at least one destination is publishing; `reconnecting` that none is and at
//! least one is reconnecting; `failed` that every destination failed (or the publisher's
//! connection failed while the stream was active).

use crate::error::{Error, ErrorCode};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// No publisher media yet.
    Created,
    /// The publisher's media is arriving; not sent anywhere yet (manual start).
    Ready,
    /// Destinations are connecting.
    Starting,
    /// At least one destination is publishing.
    Live,
    /// No destination is publishing; at least one is reconnecting.
    Reconnecting,
    /// Tearing down: destinations finishing, the peer connection closing.
    Stopping,
    /// Over, cleanly.
    Ended,
    /// Over, because of an error (see the stream's `error`).
    Failed,
}

impl StreamState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Created => "created",
            StreamState::Ready => "ready",
            StreamState::Starting => "starting",
            StreamState::Live => "live",
            StreamState::Reconnecting => "reconnecting",
            StreamState::Stopping => "stopping",
            StreamState::Ended => "ended",
            StreamState::Failed => "failed",
        }
    }

    /// `ended` or `failed`.
    pub fn is_terminal(self) -> bool {
        matches!(self, StreamState::Ended | StreamState::Failed)
    }

    /// Sending (or trying to send) to destinations.
    pub fn is_sending(self) -> bool {
        matches!(
            self,
            StreamState::Starting | StreamState::Live | StreamState::Reconnecting
        )
    }

    /// Parses a snake_case name.
    pub fn parse(s: &str) -> Option<StreamState> {
        Some(match s {
            "created" => StreamState::Created,
            "ready" => StreamState::Ready,
            "starting" => StreamState::Starting,
            "live" => StreamState::Live,
            "reconnecting" => StreamState::Reconnecting,
            "stopping" => StreamState::Stopping,
            "ended" => StreamState::Ended,
            "failed" => StreamState::Failed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a stream starts sending to its destinations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartMode {
    /// As soon as the publisher's media arrives (what WHIP clients expect).
    #[default]
    OnPublish,
    /// When `POST /api/streams/{id}/start` is called.
    Manual,
}

/// How the destinations are doing, as counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputSummary {
    /// Destinations in total.
    pub total: usize,
    /// Connecting for the first time.
    pub connecting: usize,
    /// Publishing.
    pub live: usize,
    /// Lost and reconnecting.
    pub reconnecting: usize,
    /// Given up.
    pub failed: usize,
    /// The errors of the failed destinations, as `(destination id, error)`.
    pub failures: Vec<(String, Error)>,
}

impl OutputSummary {
    /// The stream's error when every destination failed: the destinations' own error when
    /// they agree on its code (a person sees `youtube_quota_exceeded`, not a generic code),
    /// else `rtmp_connection_lost` naming each one's.
    fn failure(&self) -> Error {
        let Some((_, first)) = self.failures.first() else {
            return Error::new(ErrorCode::RtmpConnectionLost, "every destination failed");
        };
        if self.failures.iter().all(|(_, e)| e.code == first.code) {
            let message = if self.failures.len() == 1 {
                first.message.clone()
            } else {
                format!("every destination failed: {}", first.message)
            };
            return Error::new(first.code, message);
        }
        let each: Vec<String> = self
            .failures
            .iter()
            .map(|(id, e)| format!("{id}: {}", e.code.as_str()))
            .collect();
        Error::new(
            ErrorCode::RtmpConnectionLost,
            format!("every destination failed ({})", each.join(", ")),
        )
    }
}

/// Something that happened to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The publisher's media started arriving.
    PublisherMedia,
    /// `start` was requested (manual streams).
    Start,
    /// A destination changed state.
    Outputs(OutputSummary),
    /// `stop` was requested.
    Stop,
    /// The server is shutting down (SIGINT/SIGTERM): a stop with its own reason.
    Shutdown,
    /// The publisher went away: cleanly (`None`) or with an error.
    PublisherGone(Option<Error>),
    /// Teardown finished (destinations closed, peer connection released).
    Finished,
    /// Time passed (ends the publisher grace period once it is over).
    Tick,
}

/// One state change with its reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transition {
    /// Before.
    pub from: StreamState,
    /// After.
    pub to: StreamState,
    /// Why, as a snake_case reason (`publisher_connected`, `destination_live`, `stop_requested`,
    /// `publisher_left`, an error code ...).
    pub reason: String,
    /// Human text.
    pub message: String,
    /// Unix milliseconds.
    pub at_ms: u64,
}

/// What the driver must do after a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing beyond reporting the transition.
    None,
    /// Start the destinations.
    StartOutputs,
    /// Stop the destinations and the publisher, then feed [`Input::Finished`].
    TearDown,
}

/// The state machine.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    state: StreamState,
    mode: StartMode,
    error: Option<Error>,
    history: Vec<Transition>,
    grace_ms: u64,
    publisher_lost: Option<PublisherLost>,
}

/// A lost publisher the stream is waiting for.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PublisherLost {
    /// Unix milliseconds when it was lost.
    pub since_ms: u64,
    /// Unix milliseconds when the grace period ends (the stream then fails `publisher_lost`).
    pub until_ms: u64,
    /// Why it was lost.
    pub error: Error,
}

/// Transitions kept per stream (older ones are dropped).
pub const MAX_HISTORY: usize = 256;

impl Lifecycle {
    /// A new stream in `created` whose lost publisher ends it at once.
    pub fn new(mode: StartMode) -> Lifecycle {
        Lifecycle::with_grace(mode, 0)
    }

    /// A new stream in `created` that waits `grace_ms` for a lost publisher to come back.
    pub fn with_grace(mode: StartMode, grace_ms: u64) -> Lifecycle {
        Lifecycle {
            state: StreamState::Created,
            mode,
            error: None,
            history: Vec::new(),
            grace_ms,
            publisher_lost: None,
        }
    }

    /// The lost publisher the stream is waiting for, during the grace period.
    pub fn publisher_lost(&self) -> Option<&PublisherLost> {
        self.publisher_lost.as_ref()
    }

    /// Whether a lost publisher is waited for (rather than ending the stream).
    fn waits_for_publisher(&self) -> bool {
        self.grace_ms > 0
            && matches!(
                self.state,
                StreamState::Ready
                    | StreamState::Starting
                    | StreamState::Live
                    | StreamState::Reconnecting
            )
    }

    /// The current state.
    pub fn state(&self) -> StreamState {
        self.state
    }

    /// The start mode.
    pub fn mode(&self) -> StartMode {
        self.mode
    }

    /// The error that failed (or is failing) the stream.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Every transition so far (the last [`MAX_HISTORY`]).
    pub fn history(&self) -> &[Transition] {
        &self.history
    }

    /// The latest transition.
    pub fn last(&self) -> Option<&Transition> {
        self.history.last()
    }

    fn go(
        &mut self,
        to: StreamState,
        reason: &str,
        message: String,
        at_ms: u64,
    ) -> Option<Transition> {
        if to == self.state {
            return None;
        }
        let t = Transition {
            from: self.state,
            to,
            reason: reason.to_string(),
            message,
            at_ms,
        };
        self.state = to;
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(t.clone());
        Some(t)
    }

    fn conflict(&self, what: &str) -> Error {
        Error::new(
            ErrorCode::Conflict,
            format!("cannot {what} a stream that is {}", self.state),
        )
    }

    /// Applies `input` at `at_ms` (unix milliseconds). `Ok(None)` means accepted without a state
    /// change; `Err` (code `conflict`) means the input does not fit the state.
    pub fn handle(
        &mut self,
        input: Input,
        at_ms: u64,
    ) -> Result<Option<(Transition, Effect)>, Error> {
        use StreamState as S;
        let state = self.state;
        let out = match input {
            Input::PublisherMedia if self.publisher_lost.is_some() => {
                self.publisher_lost = None;
                None
            }
            Input::PublisherMedia => match (state, self.mode) {
                (S::Created, StartMode::OnPublish) => self
                    .go(
                        S::Starting,
                        "publisher_connected",
                        "the publisher's media is arriving; connecting the destinations".into(),
                        at_ms,
                    )
                    .map(|t| (t, Effect::StartOutputs)),
                (S::Created, StartMode::Manual) => self
                    .go(
                        S::Ready,
                        "publisher_connected",
                        "the publisher's media is arriving; waiting for start".into(),
                        at_ms,
                    )
                    .map(|t| (t, Effect::None)),
                _ => None,
            },
            Input::Start => match state {
                S::Ready => self
                    .go(
                        S::Starting,
                        "start_requested",
                        "start requested; connecting the destinations".into(),
                        at_ms,
                    )
                    .map(|t| (t, Effect::StartOutputs)),
                S::Created => {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "the stream has no publisher yet: publish to it first (WHIP or WebSocket), then start it",
                    ))
                }
                S::Starting | S::Live | S::Reconnecting => {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("the stream is already started ({state})"),
                    ))
                }
                _ => return Err(self.conflict("start")),
            },
            Input::Outputs(sum) => {
                if !state.is_sending() {
                    return Ok(None);
                }
                let (to, reason, message) = if sum.live > 0 {
                    (
                        S::Live,
                        "destination_live",
                        format!("{} of {} destinations live", sum.live, sum.total),
                    )
                } else if sum.reconnecting > 0 {
                    (
                        S::Reconnecting,
                        "destination_reconnecting",
                        "no destination is live; reconnecting".to_string(),
                    )
                } else if sum.connecting > 0 {
                    (
                        S::Starting,
                        "destination_connecting",
                        "destinations connecting".to_string(),
                    )
                } else if sum.total > 0 && sum.failed == sum.total {
                    (
                        S::Stopping,
                        "destinations_failed",
                        "every destination failed".to_string(),
                    )
                } else {
                    return Ok(None);
                };
                let effect = if to == S::Stopping {
                    if self.error.is_none() {
                        self.error = Some(sum.failure());
                    }
                    Effect::TearDown
                } else {
                    Effect::None
                };
                self.go(to, reason, message, at_ms).map(|t| (t, effect))
            }
            Input::Stop | Input::Shutdown => match state {
                S::Created | S::Ready | S::Starting | S::Live | S::Reconnecting => {
                    self.publisher_lost = None;
                    let (reason, message) = if input == Input::Shutdown {
                        ("server_shutdown", "the server is shutting down")
                    } else {
                        ("stop_requested", "stop requested")
                    };
                    self.go(S::Stopping, reason, message.into(), at_ms)
                        .map(|t| (t, Effect::TearDown))
                }
                S::Stopping => None,
                S::Ended | S::Failed => return Err(self.conflict("stop")),
            },
            Input::PublisherGone(Some(error)) if self.waits_for_publisher() => {
                // Lost, not left: keep the destinations and wait for it to come back.
                if self.publisher_lost.is_none() {
                    self.publisher_lost = Some(PublisherLost {
                        since_ms: at_ms,
                        until_ms: at_ms.saturating_add(self.grace_ms),
                        error,
                    });
                }
                None
            }
            Input::PublisherGone(error) => match state {
                S::Ready | S::Starting | S::Live | S::Reconnecting => {
                    let (reason, message) = match &error {
                        Some(e) => (e.code.as_str().to_string(), e.message.clone()),
                        None => (
                            "publisher_left".to_string(),
                            "the publisher ended the session".to_string(),
                        ),
                    };
                    self.publisher_lost = None;
                    if error.is_some() {
                        self.error = error;
                    }
                    self.go(S::Stopping, &reason, message, at_ms)
                        .map(|t| (t, Effect::TearDown))
                }
                _ => None,
            },
            Input::Tick => match &self.publisher_lost {
                Some(lost) if at_ms >= lost.until_ms => {
                    let message = format!(
                        "the publisher's connection was lost ({}) and no publisher came back \
                         within {} s",
                        lost.error.message,
                        self.grace_ms / 1000
                    );
                    self.publisher_lost = None;
                    self.error = Some(Error::new(ErrorCode::PublisherLost, message.clone()));
                    self.go(S::Stopping, "publisher_lost", message, at_ms)
                        .map(|t| (t, Effect::TearDown))
                }
                _ => None,
            },
            Input::Finished => match state {
                S::Stopping => match self.error.clone() {
                    Some(e) => self.go(S::Failed, e.code.as_str(), e.message, at_ms),
                    None => {
                        let reason = self
                            .history
                            .last()
                            .filter(|t| t.to == S::Stopping)
                            .map(|t| t.reason.clone())
                            .unwrap_or_else(|| "stopped".to_string());
                        self.go(
                            S::Ended,
                            &reason,
                            "stopped; every destination closed cleanly".into(),
                            at_ms,
                        )
                    }
                }
                .map(|t| (t, Effect::None)),
                _ => None,
            },
        };
        Ok(out)
    }

    /// Whether the stream may be deleted now (not sending, not tearing down).
    pub fn deletable(&self) -> bool {
        matches!(
            self.state,
            StreamState::Created | StreamState::Ready | StreamState::Ended | StreamState::Failed
        )
    }

    /// Whether a publisher may attach now: before the first one, or while a lost one is
    /// waited for.
    pub fn accepts_publisher(&self) -> bool {
        self.state == StreamState::Created || self.publisher_lost.is_some()
    }

    /// Whether a new publisher may replace the current one whose connection is disconnected
    /// (not yet given up): the stream waits for lost publishers.
    pub fn accepts_replacement(&self) -> bool {
        self.waits_for_publisher()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StreamState as S;

    fn sum(live: usize, reconnecting: usize, connecting: usize, failed: usize) -> OutputSummary {
        OutputSummary {
            total: live + reconnecting + connecting + failed,
            connecting,
            live,
            reconnecting,
            failed,
            failures: Vec::new(),
        }
    }

    #[test]
    fn on_publish_goes_live_and_ends() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        let (t, e) = l.handle(Input::PublisherMedia, 1).unwrap().unwrap();
        assert_eq!(
            (t.from, t.to, e),
            (S::Created, S::Starting, Effect::StartOutputs)
        );
        l.handle(Input::Outputs(sum(1, 0, 0, 0)), 2).unwrap();
        assert_eq!(l.state(), S::Live);
        l.handle(Input::Outputs(sum(0, 1, 0, 0)), 3).unwrap();
        assert_eq!(l.state(), S::Reconnecting);
        l.handle(Input::Outputs(sum(1, 0, 0, 0)), 4).unwrap();
        assert_eq!(l.state(), S::Live);
        let (_, e) = l.handle(Input::Stop, 5).unwrap().unwrap();
        assert_eq!((l.state(), e), (S::Stopping, Effect::TearDown));
        assert_eq!(l.handle(Input::Stop, 6).unwrap(), None);
        l.handle(Input::Finished, 7).unwrap();
        assert_eq!(l.state(), S::Ended);
        assert_eq!(
            l.handle(Input::Stop, 8).unwrap_err().code,
            ErrorCode::Conflict
        );
        assert_eq!(
            l.handle(Input::Start, 8).unwrap_err().code,
            ErrorCode::Conflict
        );
        let states: Vec<_> = l.history().iter().map(|t| t.to).collect();
        assert_eq!(
            states,
            [
                S::Starting,
                S::Live,
                S::Reconnecting,
                S::Live,
                S::Stopping,
                S::Ended
            ]
        );
        assert!(l.history().iter().all(|t| !t.reason.is_empty()));
    }

    #[test]
    fn manual_waits_for_start() {
        let mut l = Lifecycle::new(StartMode::Manual);
        assert_eq!(
            l.handle(Input::Start, 0).unwrap_err().code,
            ErrorCode::Conflict
        );
        l.handle(Input::PublisherMedia, 1).unwrap();
        assert_eq!(l.state(), S::Ready);
        // Destination reports before start change nothing.
        assert_eq!(l.handle(Input::Outputs(sum(1, 0, 0, 0)), 1).unwrap(), None);
        let (_, e) = l.handle(Input::Start, 2).unwrap().unwrap();
        assert_eq!((l.state(), e), (S::Starting, Effect::StartOutputs));
        assert_eq!(
            l.handle(Input::Start, 3).unwrap_err().code,
            ErrorCode::Conflict
        );
    }

    #[test]
    fn all_destinations_failed_fails_the_stream() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        l.handle(Input::PublisherMedia, 1).unwrap();
        l.handle(Input::Outputs(sum(1, 0, 0, 1)), 2).unwrap();
        assert_eq!(l.state(), S::Live);
        let (_, e) = l
            .handle(Input::Outputs(sum(0, 0, 0, 2)), 3)
            .unwrap()
            .unwrap();
        assert_eq!((l.state(), e), (S::Stopping, Effect::TearDown));
        l.handle(Input::Finished, 4).unwrap();
        assert_eq!(l.state(), S::Failed);
        assert!(l.error().is_some());
        assert!(!l.deletable() || l.state().is_terminal());
    }

    #[test]
    fn publisher_loss_fails_with_its_code() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        // Before media: a failed publisher leaves the stream open for another.
        let ice = Error::new(ErrorCode::IceFailed, "never connected");
        assert_eq!(
            l.handle(Input::PublisherGone(Some(ice.clone())), 0)
                .unwrap(),
            None
        );
        assert!(l.accepts_publisher());
        l.handle(Input::PublisherMedia, 1).unwrap();
        assert!(!l.accepts_publisher());
        let (t, _) = l
            .handle(Input::PublisherGone(Some(ice)), 2)
            .unwrap()
            .unwrap();
        assert_eq!((t.to, t.reason.as_str()), (S::Stopping, "ice_failed"));
        l.handle(Input::Finished, 3).unwrap();
        assert_eq!(l.state(), S::Failed);
        assert_eq!(l.last().unwrap().reason, "ice_failed");
    }

    #[test]
    fn clean_publisher_exit_ends() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        l.handle(Input::PublisherMedia, 1).unwrap();
        l.handle(Input::PublisherGone(None), 2).unwrap();
        l.handle(Input::Finished, 3).unwrap();
        assert_eq!(l.state(), S::Ended);
        assert_eq!(l.last().unwrap().reason, "publisher_left");
        assert!(l.deletable());
    }

    #[test]
    fn stop_before_publish_and_delete_rules() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        assert!(l.deletable());
        l.handle(Input::Stop, 1).unwrap();
        assert!(!l.deletable());
        assert_eq!(l.handle(Input::PublisherMedia, 2).unwrap(), None);
        l.handle(Input::Finished, 3).unwrap();
        assert_eq!(l.state(), S::Ended);
        assert!(l.deletable());
        for s in [
            "created",
            "ready",
            "starting",
            "live",
            "reconnecting",
            "stopping",
            "ended",
            "failed",
        ] {
            assert_eq!(StreamState::parse(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn lost_publisher_is_waited_for_and_can_come_back() {
        let mut l = Lifecycle::with_grace(StartMode::OnPublish, 15_000);
        l.handle(Input::PublisherMedia, 1_000).unwrap();
        l.handle(Input::Outputs(sum(1, 0, 0, 0)), 1_100).unwrap();
        assert!(!l.accepts_publisher());
        assert!(l.accepts_replacement());
        let ice = Error::new(ErrorCode::IceFailed, "lost for 10 s");
        // Lost: no state change, destinations stay, a new publisher may attach.
        assert_eq!(
            l.handle(Input::PublisherGone(Some(ice.clone())), 2_000)
                .unwrap(),
            None
        );
        assert_eq!(l.state(), S::Live);
        let lost = l.publisher_lost().unwrap().clone();
        assert_eq!((lost.since_ms, lost.until_ms), (2_000, 17_000));
        assert!(l.accepts_publisher());
        // Ticks inside the grace period change nothing.
        assert_eq!(l.handle(Input::Tick, 16_999).unwrap(), None);
        // The publisher comes back: same stream, still live, nothing in the history.
        assert_eq!(l.handle(Input::PublisherMedia, 10_000).unwrap(), None);
        assert!(l.publisher_lost().is_none());
        assert!(!l.accepts_publisher());
        assert_eq!(l.state(), S::Live);
        // A stale timer of the first loss does nothing.
        assert_eq!(l.handle(Input::Tick, 17_000).unwrap(), None);
        // Lost again, and never back: publisher_lost.
        l.handle(Input::PublisherGone(Some(ice)), 20_000).unwrap();
        let (t, e) = l.handle(Input::Tick, 35_000).unwrap().unwrap();
        assert_eq!(
            (t.to, t.reason.as_str(), e),
            (S::Stopping, "publisher_lost", Effect::TearDown)
        );
        l.handle(Input::Finished, 35_100).unwrap();
        assert_eq!(l.state(), S::Failed);
        assert_eq!(l.last().unwrap().reason, "publisher_lost");
        assert_eq!(l.error().unwrap().code, ErrorCode::PublisherLost);
        assert!(!l.accepts_publisher());
    }

    #[test]
    fn every_destination_failed_carries_their_own_code() {
        let quota = Error::new(ErrorCode::YoutubeQuotaExceeded, "quota exceeded");
        let rejected = Error::new(ErrorCode::RtmpPublishRejected, "BadName");
        let failed = |failures: Vec<(&str, &Error)>| {
            let mut l = Lifecycle::new(StartMode::OnPublish);
            l.handle(Input::PublisherMedia, 1).unwrap();
            let mut s = sum(0, 0, 0, failures.len());
            s.failures = failures
                .into_iter()
                .map(|(id, e)| (id.to_string(), e.clone()))
                .collect();
            l.handle(Input::Outputs(s), 2).unwrap();
            l.handle(Input::Finished, 3).unwrap();
            assert_eq!(l.state(), S::Failed);
            l.error().unwrap().clone()
        };
        let one = failed(vec![("d1", &quota)]);
        assert_eq!(
            (one.code, one.message.as_str()),
            (ErrorCode::YoutubeQuotaExceeded, "quota exceeded")
        );
        assert_eq!(
            failed(vec![("d1", &quota), ("d2", &quota)]).code,
            ErrorCode::YoutubeQuotaExceeded
        );
        let mixed = failed(vec![("d1", &quota), ("d2", &rejected)]);
        assert_eq!(mixed.code, ErrorCode::RtmpConnectionLost);
        assert!(
            mixed.message.contains("d1: youtube_quota_exceeded"),
            "{}",
            mixed.message
        );
        assert!(
            mixed.message.contains("d2: rtmp_publish_rejected"),
            "{}",
            mixed.message
        );
    }

    #[test]
    fn shutdown_is_a_stop_with_its_own_reason() {
        let mut l = Lifecycle::new(StartMode::OnPublish);
        l.handle(Input::PublisherMedia, 1).unwrap();
        let (t, e) = l.handle(Input::Shutdown, 2).unwrap().unwrap();
        assert_eq!(
            (t.to, t.reason.as_str(), e),
            (S::Stopping, "server_shutdown", Effect::TearDown)
        );
        l.handle(Input::Finished, 3).unwrap();
        assert_eq!(
            (l.state(), l.last().unwrap().reason.as_str()),
            (S::Ended, "server_shutdown")
        );
        assert_eq!(
            l.handle(Input::Shutdown, 4).unwrap_err().code,
            ErrorCode::Conflict
        );
    }

    #[test]
    fn publisher_that_leaves_ends_even_with_a_grace_period() {
        let mut l = Lifecycle::with_grace(StartMode::OnPublish, 15_000);
        l.handle(Input::PublisherMedia, 1).unwrap();
        let (t, _) = l.handle(Input::PublisherGone(None), 2).unwrap().unwrap();
        assert_eq!((t.to, t.reason.as_str()), (S::Stopping, "publisher_left"));
        l.handle(Input::Finished, 3).unwrap();
        assert_eq!(l.state(), S::Ended);
    }

    #[test]
    fn stop_during_the_grace_period_ends_cleanly() {
        let mut l = Lifecycle::with_grace(StartMode::Manual, 5_000);
        l.handle(Input::PublisherMedia, 1).unwrap();
        assert_eq!(l.state(), S::Ready);
        let ice = Error::new(ErrorCode::IceFailed, "lost");
        l.handle(Input::PublisherGone(Some(ice)), 2).unwrap();
        assert!(l.publisher_lost().is_some());
        l.handle(Input::Stop, 3).unwrap();
        assert!(l.publisher_lost().is_none());
        assert_eq!(l.handle(Input::Tick, 10_000).unwrap(), None);
        l.handle(Input::Finished, 10_001).unwrap();
        assert_eq!(l.state(), S::Ended);
        assert_eq!(l.last().unwrap().reason, "stop_requested");
    }

    #[test]
    fn before_media_a_lost_publisher_leaves_the_stream_created() {
        let mut l = Lifecycle::with_grace(StartMode::OnPublish, 15_000);
        assert!(!l.accepts_replacement());
        let ice = Error::new(ErrorCode::IceFailed, "never connected");
        assert_eq!(l.handle(Input::PublisherGone(Some(ice)), 1).unwrap(), None);
        assert!(l.publisher_lost().is_none());
        assert_eq!(l.state(), S::Created);
        assert!(l.accepts_publisher());
    }
}
