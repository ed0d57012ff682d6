//! One publisher: a task that drives its str0m `Rtc` (datagrams in, timeouts, commands) and
//! its media pipeline, and reports to a [`PublisherSink`].
//!
//! The `Rtc` sits behind a mutex only so the socket task can ask it `accepts`; this task holds
//! the lock for each mutation and the drain that must follow it, never across an `await`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::sync::mpsc;

use super::udp::{lock, Datagram, UdpMux};
use super::{PublisherSink, SessionConfig, SessionStats};
use crate::error::{Error, ErrorCode};
use crate::media::{Pipeline, PipelineOutput, Track};

/// What a session can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// Ask the publisher for a keyframe (a destination (re)connected).
    RequestKeyframe,
    /// A trickled remote candidate (`a=candidate:` value or the full line).
    RemoteCandidate(String),
    /// End the session (WHIP DELETE, WebSocket bye, stream stopped).
    Stop,
}

/// The str0m configuration of every session: ICE-lite; H.264 (packetization-mode 1,
/// constrained baseline, baseline and main) and Opus only.
pub fn rtc_config() -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_ice_lite(true)
        .clear_codecs()
        .enable_opus(true, false);
    let codecs = config.codec_config();
    for (pt, rtx, profile) in [
        (108u8, 109u8, 0x42e01f_u32),
        (127, 121, 0x42001f),
        (123, 119, 0x4d001f),
    ] {
        codecs.add_h264(pt.into(), Some(rtx.into()), true, profile);
    }
    config
}

/// How often figures are reported.
const STATS_EVERY: Duration = Duration::from_secs(1);

struct Session {
    id: String,
    mux: Arc<UdpMux>,
    key: u64,
    rtc: Arc<Mutex<Rtc>>,
    sink: Arc<dyn PublisherSink>,
    config: SessionConfig,
    pipeline: Option<Pipeline>,
    video_mid: Option<Mid>,
    audio_mid: Option<Mid>,
    started: Instant,
    connect_deadline: Instant,
    disconnected_since: Option<Instant>,
    disconnected: Arc<AtomicBool>,
    last_datagram: Instant,
    silent: bool,
    rtc_deadline: Instant,
    next_stats: Instant,
    media_started: bool,
    stats: SessionStats,
    events: Vec<Event>,
    end: Option<Option<Error>>,
}

/// Starts the task; when it ends (or panics) the sink hears `ended` exactly once.
pub(crate) fn spawn(
    mux: Arc<UdpMux>,
    rtc: Arc<Mutex<Rtc>>,
    id: String,
    config: SessionConfig,
    sink: Arc<dyn PublisherSink>,
    commands: mpsc::Receiver<SessionCommand>,
    disconnected: Arc<AtomicBool>,
) {
    let (key, datagrams) = mux.register(rtc.clone());
    let now = Instant::now();
    let session = Session {
        id: id.clone(),
        mux: mux.clone(),
        key,
        rtc,
        sink: sink.clone(),
        connect_deadline: now + config.connect_timeout,
        config,
        pipeline: None,
        video_mid: None,
        audio_mid: None,
        started: now,
        disconnected_since: None,
        disconnected,
        last_datagram: now,
        silent: false,
        rtc_deadline: now,
        next_stats: now + STATS_EVERY,
        media_started: false,
        stats: SessionStats::default(),
        events: Vec::new(),
        end: None,
    };
    let task = tokio::spawn(session.run(datagrams, commands));
    tokio::spawn(async move {
        if let Err(e) = task.await {
            // A panic inside the pipeline or str0m: the session is gone, say so.
            mux.unregister(key);
            tracing::error!(session = %id, "publisher session task failed: {e}");
            sink.ended(
                &id,
                Some(Error::new(
                    ErrorCode::Internal,
                    "the publisher session failed inside the server",
                )),
            );
        }
    });
}

impl Session {
    async fn run(
        mut self,
        mut datagrams: mpsc::Receiver<Datagram>,
        mut commands: mpsc::Receiver<SessionCommand>,
    ) {
        // The offer/answer produced events (MediaAdded); drain before waiting.
        self.mutate(Instant::now(), |_| Ok(()));
        while self.end.is_none() {
            let deadline = self.next_deadline();
            tokio::select! {
                d = datagrams.recv() => match d {
                    Some(d) => self.on_datagram(d),
                    None => self.finish(Some(Error::new(ErrorCode::Internal, "the WebRTC socket closed"))),
                },
                c = commands.recv() => match c {
                    Some(SessionCommand::Stop) | None => self.finish(None),
                    Some(SessionCommand::RequestKeyframe) => self.request_keyframe(Instant::now()),
                    Some(SessionCommand::RemoteCandidate(c)) => self.add_candidate(&c),
                },
                _ = tokio::time::sleep_until(deadline.into()) => self.on_timeout(Instant::now()),
            }
        }
        self.mux.unregister(self.key);
        if let Some(p) = self.pipeline.as_mut() {
            p.flush(Instant::now());
        }
        self.drain_pipeline_tags();
        {
            let mut rtc = lock(&self.rtc);
            rtc.disconnect();
        }
        self.report_stats();
        let end = self.end.take().flatten();
        match &end {
            Some(e) => tracing::info!(session = %self.id, "publisher session ended: {e}"),
            None => tracing::info!(session = %self.id, "publisher session ended"),
        }
        self.sink.ended(&self.id, end);
    }

    fn finish(&mut self, error: Option<Error>) {
        if self.end.is_none() {
            self.end = Some(error);
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut d = self.rtc_deadline.min(self.next_stats);
        if !self.stats.connected {
            d = d.min(self.connect_deadline);
        }
        if let Some(since) = self.disconnected_since {
            d = d.min(since + self.config.disconnect_timeout);
        }
        if self.stats.connected && !self.silent {
            d = d.min(self.last_datagram + self.config.silence_timeout);
        }
        if let Some(p) = self.pipeline.as_ref().and_then(Pipeline::poll_timeout) {
            d = d.min(p);
        }
        d
    }

    /// One mutation of the `Rtc`, then the complete drain str0m requires, then the events.
    fn mutate(&mut self, now: Instant, f: impl FnOnce(&mut Rtc) -> Result<(), str0m::RtcError>) {
        {
            let mut rtc = lock(&self.rtc);
            if let Err(e) = f(&mut rtc) {
                tracing::debug!(session = %self.id, "rtc input refused: {e}");
            }
            loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        self.rtc_deadline = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = self.mux.socket().try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(e)) => self.events.push(e),
                    Err(e) => {
                        tracing::warn!(session = %self.id, "rtc failed: {e}");
                        self.end.get_or_insert(Some(Error::new(
                            ErrorCode::IceFailed,
                            "the peer connection failed",
                        )));
                        self.rtc_deadline = now + Duration::from_secs(1);
                        break;
                    }
                }
            }
            if !rtc.is_alive() && self.end.is_none() {
                self.end = Some(Some(Error::new(
                    ErrorCode::IceFailed,
                    "the peer connection closed",
                )));
            }
        }
        let events = std::mem::take(&mut self.events);
        for event in events.iter() {
            self.on_event(now, event);
        }
        let mut events = events;
        events.clear();
        if self.events.is_empty() {
            self.events = events;
        }
        self.drain_pipeline(now);
    }

    fn on_datagram(&mut self, d: Datagram) {
        self.stats.datagrams_in += 1;
        self.last_datagram = d.at;
        if self.silent {
            // Heard from again: the disconnection was silence, not ICE.
            self.silent = false;
            self.disconnected_since = None;
            self.set_disconnected(false);
        }
        let local = self.mux.receive_address(d.source);
        self.mutate(d.at, |rtc| {
            let Ok(contents) = d.data.as_ref().try_into() else {
                return Ok(());
            };
            rtc.handle_input(Input::Receive(
                d.at,
                Receive {
                    proto: Protocol::Udp,
                    source: d.source,
                    destination: local,
                    contents,
                },
            ))
        });
    }

    fn on_timeout(&mut self, now: Instant) {
        if !self.stats.connected && now >= self.connect_deadline {
            self.finish(Some(Error::new(
                ErrorCode::IceFailed,
                format!(
                    "the publisher did not connect (ICE/DTLS) within {} s: check that UDP port {} \
                     on {} is reachable from the publisher",
                    self.config.connect_timeout.as_secs(),
                    self.mux.local_addr().port(),
                    advertised_hint(&self.mux)
                ),
            )));
            return;
        }
        if self.stats.connected
            && !self.silent
            && now >= self.last_datagram + self.config.silence_timeout
        {
            // A live publisher sends RTCP or STUN every second or so; ICE-lite would notice
            // only after 15 s without binding requests.
            tracing::info!(session = %self.id, "publisher silent: treating it as disconnected");
            self.silent = true;
            self.disconnected_since.get_or_insert(self.last_datagram);
            self.set_disconnected(true);
        }
        if let Some(since) = self.disconnected_since {
            if now >= since + self.config.disconnect_timeout {
                self.finish(Some(Error::new(
                    ErrorCode::IceFailed,
                    format!(
                        "the publisher's connection was lost for more than {} s",
                        self.config.disconnect_timeout.as_secs()
                    ),
                )));
                return;
            }
        }
        if now >= self.next_stats {
            self.next_stats = now + STATS_EVERY;
            self.report_stats();
        }
        if let Some(p) = self.pipeline.as_mut() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
        }
        self.mutate(now, |rtc| rtc.handle_input(Input::Timeout(now)));
    }

    fn on_event(&mut self, now: Instant, event: &Event) {
        match event {
            Event::MediaAdded(m) => match m.kind {
                MediaKind::Video => self.video_mid = self.video_mid.or(Some(m.mid)),
                MediaKind::Audio => self.audio_mid = self.audio_mid.or(Some(m.mid)),
            },
            Event::Connected if !self.stats.connected => {
                self.stats.connected = true;
                self.stats.connect_ms = Some(now.duration_since(self.started).as_millis() as u64);
                tracing::info!(session = %self.id, "publisher connected");
                match Pipeline::new(self.config.pipeline.clone(), now) {
                    Ok(p) => self.pipeline = Some(p),
                    Err(e) => self.finish(Some(Error::new(
                        ErrorCode::Internal,
                        format!("the media pipeline could not start: {e}"),
                    ))),
                }
            }
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Disconnected => {
                    self.disconnected_since.get_or_insert(now);
                    self.set_disconnected(true);
                }
                IceConnectionState::Checking
                | IceConnectionState::Connected
                | IceConnectionState::Completed => {
                    self.disconnected_since = None;
                    self.set_disconnected(false);
                }
                IceConnectionState::New => {}
            },
            Event::MediaData(data) => {
                let Some(pipeline) = self.pipeline.as_mut() else {
                    return;
                };
                let rtp_time = data.time.numer() as u32;
                match data.params.spec().codec {
                    Codec::H264 => {
                        if !data.contiguous {
                            pipeline.video_loss(now);
                        }
                        pipeline.push_video(now, rtp_time, &data.data);
                    }
                    Codec::Opus => pipeline.push_audio(now, rtp_time, &data.data),
                    _ => return,
                }
                if !self.media_started {
                    self.media_started = true;
                    self.sink.media_started(&self.id);
                }
            }
            Event::SenderFeedback(feedback) => {
                let track = if Some(feedback.mid) == self.video_mid {
                    Track::Video
                } else if Some(feedback.mid) == self.audio_mid {
                    Track::Audio
                } else {
                    return;
                };
                if let Some(p) = self.pipeline.as_mut() {
                    p.sender_report(
                        now,
                        track,
                        feedback.sender_info.rtp_time.numer() as u32,
                        feedback.sender_info.ntp_time,
                    );
                }
            }
            Event::Closed => self.finish(None),
            _ => {}
        }
    }

    fn drain_pipeline(&mut self, now: Instant) {
        let mut want_keyframe = false;
        if let Some(p) = self.pipeline.as_mut() {
            while let Some(out) = p.poll_output() {
                match out {
                    PipelineOutput::Tag(tag) => self.sink.tag(&self.id, tag),
                    PipelineOutput::RequestKeyframe => want_keyframe = true,
                }
            }
        }
        if want_keyframe {
            self.request_keyframe(now);
        }
    }

    /// At the end: hand over what the pipeline still holds (no keyframe requests any more).
    fn drain_pipeline_tags(&mut self) {
        if let Some(p) = self.pipeline.as_mut() {
            while let Some(out) = p.poll_output() {
                if let PipelineOutput::Tag(tag) = out {
                    self.sink.tag(&self.id, tag);
                }
            }
        }
    }

    fn request_keyframe(&mut self, now: Instant) {
        let Some(mid) = self.video_mid else {
            return;
        };
        if !self.stats.connected {
            return;
        }
        self.stats.pli_sent += 1;
        self.mutate(now, |rtc| match rtc.writer(mid) {
            Some(mut w) => w.request_keyframe(None, KeyframeRequestKind::Pli),
            None => Ok(()),
        });
    }

    fn add_candidate(&mut self, line: &str) {
        let value = line.trim().trim_start_matches("a=");
        if value.is_empty() {
            return;
        }
        let text = if value.starts_with("candidate:") {
            value.to_string()
        } else {
            format!("candidate:{value}")
        };
        match Candidate::from_sdp_string(&text) {
            Ok(c) => self.mutate(Instant::now(), |rtc| {
                rtc.add_remote_candidate(c);
                Ok(())
            }),
            Err(e) => tracing::debug!(session = %self.id, "ignoring remote candidate: {e}"),
        }
    }

    /// Sets the shared flag and tells the sink when it flips.
    fn set_disconnected(&self, disconnected: bool) {
        if self.disconnected.swap(disconnected, Ordering::Relaxed) != disconnected
            && self.stats.connected
        {
            self.sink.disconnected(&self.id, disconnected);
        }
    }

    fn report_stats(&self) {
        if let Some(p) = self.pipeline.as_ref() {
            self.sink.stats(&self.id, p.stats(), self.stats.clone());
        }
    }
}

fn advertised_hint(mux: &UdpMux) -> String {
    mux.local_addr().ip().to_string()
}
