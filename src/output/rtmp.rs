//! One RTMP/RTMPS destination: connect, publish (latest sequence headers, then media from a
//! keyframe), reconnect with exponential backoff inside a failure budget, finish cleanly.
//!
//! A refused publish or a TLS failure fails at once (retrying cannot fix a wrong key or an
//! untrusted certificate); a lost or unreachable server is retried until the budget is spent.

use std::sync::Arc;
use std::time::Duration;

use ::rtmp::tokio::{ConnectError, ConnectOptions, PublishError, Publisher};
use ::rtmp::Admission;
use flv::TagKind;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{unix_ms, DestinationState, OutputConfig, OutputContext, OutputStatus};
use crate::error::{Error, ErrorCode};
use crate::media::MediaTag;

/// Starts the task of one destination. It runs until `stop` turns `true`, the stream's tag
/// feed closes, or it fails.
pub fn spawn(
    url: String,
    masked: String,
    config: OutputConfig,
    status: Arc<OutputStatus>,
    context: Arc<dyn OutputContext>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let output = RtmpOutput {
        url,
        masked,
        config,
        status,
        context,
        stop,
    };
    tokio::spawn(output.run())
}

struct RtmpOutput {
    url: String,
    masked: String,
    config: OutputConfig,
    status: Arc<OutputStatus>,
    context: Arc<dyn OutputContext>,
    stop: watch::Receiver<bool>,
}

/// How a publish ended.
enum Ended {
    Stopped,
    Lost(Error),
}

/// The latest decoder configuration, sent before the first keyframe of every connection.
#[derive(Default)]
struct Headers {
    metadata: Option<MediaTag>,
    avc: Option<MediaTag>,
    aac: Option<MediaTag>,
}

impl Headers {
    fn remember(&mut self, tag: &MediaTag) {
        let slot = match tag.kind {
            TagKind::Script => &mut self.metadata,
            TagKind::Video => &mut self.avc,
            TagKind::Audio => &mut self.aac,
        };
        *slot = Some(tag.clone());
    }
}

fn connect_error(e: ConnectError, ever_connected: bool) -> (Error, bool) {
    let fatal = |code, message: String| (Error::new(code, message), true);
    match e {
        ConnectError::Rejected { code, description } => fatal(
            ErrorCode::RtmpPublishRejected,
            format!("the RTMP server refused the publish: {code}: {description}"),
        ),
        e @ (ConnectError::Certificate { .. }
        | ConnectError::Tls { .. }
        | ConnectError::CaFile { .. }) => fatal(ErrorCode::RtmpTlsFailed, e.to_string()),
        e @ ConnectError::Url(_) => fatal(ErrorCode::InvalidRequest, e.to_string()),
        e => {
            let code = if ever_connected {
                ErrorCode::RtmpConnectionLost
            } else {
                ErrorCode::RtmpConnectFailed
            };
            (Error::new(code, e.to_string()), false)
        }
    }
}

impl RtmpOutput {
    fn set(&self, state: DestinationState, error: Option<Error>) {
        if self.status.set(state, error) {
            self.context.output_changed();
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(mut self) {
        let mut ever_connected = false;
        let mut failing_since: Option<Instant> = None;
        let mut backoff = self.config.backoff_min;
        self.set(DestinationState::Connecting, None);
        loop {
            if self.stopping() {
                break;
            }
            let options = ConnectOptions {
                ca_file: self.config.ca_file.clone(),
                connect_timeout: self.config.connect_timeout,
                ..ConnectOptions::default()
            };
            let mut stop = self.stop.clone();
            let attempt = tokio::select! {
                r = Publisher::connect(&self.url, options) => Some(r),
                _ = stop.wait_for(|s| *s) => None,
            };
            let error = match attempt {
                None => break,
                Some(Ok(publisher)) => {
                    tracing::info!(destination = %self.masked, "RTMP publishing");
                    self.status.connected(unix_ms(), ever_connected);
                    ever_connected = true;
                    failing_since = None;
                    backoff = self.config.backoff_min;
                    self.set(DestinationState::Live, None);
                    match self.publish(publisher).await {
                        Ended::Stopped => break,
                        Ended::Lost(e) => e,
                    }
                }
                Some(Err(e)) => {
                    self.status.attempt_failed();
                    let (error, fatal) = connect_error(e, ever_connected);
                    if fatal {
                        tracing::warn!(destination = %self.masked, "RTMP failed: {error}");
                        self.set(DestinationState::Failed, Some(error));
                        return;
                    }
                    error
                }
            };
            let now = Instant::now();
            let since = *failing_since.get_or_insert(now);
            if now.duration_since(since) >= self.config.failure_budget {
                let error = Error::new(
                    error.code,
                    format!(
                        "{} (gave up after retrying for {} s)",
                        error.message,
                        self.config.failure_budget.as_secs()
                    ),
                );
                tracing::warn!(destination = %self.masked, "RTMP failed: {error}");
                self.set(DestinationState::Failed, Some(error));
                return;
            }
            tracing::info!(
                destination = %self.masked,
                "RTMP retrying in {} ms: {error}",
                backoff.as_millis()
            );
            let state = if ever_connected {
                DestinationState::Reconnecting
            } else {
                DestinationState::Connecting
            };
            self.status.set(state, Some(error));
            self.context.output_changed();
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
        self.set(DestinationState::Stopped, None);
    }

    /// Publishes until stopped or the connection is lost.
    async fn publish(&mut self, mut publisher: Publisher) -> Ended {
        let (mut feed, latest) = self.context.subscribe();
        let mut headers = Headers::default();
        for tag in &latest {
            headers.remember(tag);
        }
        self.context.request_keyframe();
        let mut synced = false;
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() {
                return self.finish(publisher).await;
            }
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                tag = feed.recv() => match tag {
                    Ok(tag) => {
                        if let Err(e) = self.forward(&mut publisher, &mut headers, &mut synced, tag) {
                            return Ended::Lost(e);
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        self.status.dropped(n);
                        synced = false;
                        self.context.request_keyframe();
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return self.finish(publisher).await;
                    }
                },
                r = publisher.drive_until(Instant::now() + Duration::from_secs(1)) => {
                    if let Err(e) = r {
                        return Ended::Lost(lost(e));
                    }
                }
            }
        }
    }

    fn forward(
        &self,
        publisher: &mut Publisher,
        headers: &mut Headers,
        synced: &mut bool,
        tag: MediaTag,
    ) -> Result<(), Error> {
        if tag.sequence_header {
            headers.remember(&tag);
            if !*synced {
                return Ok(());
            }
            return self.send(publisher, &tag);
        }
        if !*synced {
            if tag.kind == TagKind::Video && tag.keyframe {
                // Start (or restart) here: configuration first, at the keyframe's time.
                *synced = true;
                for h in [&headers.metadata, &headers.avc, &headers.aac]
                    .into_iter()
                    .flatten()
                {
                    let mut h = h.clone();
                    h.timestamp = tag.timestamp;
                    self.send(publisher, &h)?;
                }
            } else {
                self.status.dropped(1);
                return Ok(());
            }
        }
        self.send(publisher, &tag)
    }

    fn send(&self, publisher: &mut Publisher, tag: &MediaTag) -> Result<(), Error> {
        let admission = match tag.kind {
            TagKind::Script => publisher
                .send_metadata_tag(tag.timestamp, &tag.data)
                .map(|_| Admission::Queued),
            TagKind::Video => publisher.send_video(tag.timestamp, tag.data.clone()),
            TagKind::Audio => publisher.send_audio(tag.timestamp, tag.data.clone()),
        }
        .map_err(|e| Error::new(ErrorCode::RtmpConnectionLost, e.to_string()))?;
        match admission {
            Admission::Queued => self.status.sent(tag.kind != TagKind::Audio, tag.data.len()),
            Admission::Dropped => self.status.dropped(1),
        }
        Ok(())
    }

    async fn finish(&self, publisher: Publisher) -> Ended {
        self.set(DestinationState::Stopping, None);
        match tokio::time::timeout(self.config.finish_timeout, publisher.finish()).await {
            Ok(Ok(drops)) => {
                tracing::info!(destination = %self.masked, ?drops, "RTMP publish finished")
            }
            Ok(Err(e)) => tracing::info!(destination = %self.masked, "RTMP finish: {e}"),
            Err(_) => tracing::info!(destination = %self.masked, "RTMP finish timed out"),
        }
        Ended::Stopped
    }
}

fn lost(e: PublishError) -> Error {
    Error::new(
        ErrorCode::RtmpConnectionLost,
        format!("the RTMP connection was lost: {e}"),
    )
}
