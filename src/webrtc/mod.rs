//! WebRTC ingest: str0m in ICE-lite mode behind one UDP socket ([`udp`]), one task per
//! publisher ([`session`]) driving its `Rtc` and its media [`Pipeline`](crate::media::Pipeline).
//!
//! Nothing here knows HTTP or streams: a session reports to a [`PublisherSink`].

pub mod sdp;
pub mod session;
mod udp;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::error::{Error, ErrorCode, Result};
use crate::media::{MediaTag, PipelineConfig, PipelineStats};

pub use session::SessionCommand;

/// Where a publisher session reports. Implemented by the stream that owns the session.
pub trait PublisherSink: Send + Sync + 'static {
    /// The publisher's media started arriving (first frame after the connection).
    fn media_started(&self, session_id: &str);
    /// A tag for every destination, from session `session_id`.
    fn tag(&self, session_id: &str, tag: MediaTag);
    /// Fresh pipeline figures (about once a second and at the end).
    fn stats(&self, session_id: &str, stats: PipelineStats, session: SessionStats);
    /// The session is over: cleanly (`None`) or with an error (`ice_failed`, `internal`).
    fn ended(&self, session_id: &str, error: Option<Error>);
    /// The connected publisher went quiet or its ICE disconnected (`true`), or it is heard
    /// from again (`false`). The session gives up after the disconnect timeout.
    fn disconnected(&self, session_id: &str, disconnected: bool);
}

/// Figures of the peer connection itself.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SessionStats {
    /// ICE + DTLS connected.
    pub connected: bool,
    /// Milliseconds from the offer to the connection.
    pub connect_ms: Option<u64>,
    /// Keyframe requests (PLI) sent to the publisher, for any reason.
    pub pli_sent: u64,
    /// Datagrams received.
    pub datagrams_in: u64,
}

/// Timeouts and media settings of one session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Time allowed to connect (ICE + DTLS).
    pub connect_timeout: Duration,
    /// Time ICE may stay disconnected.
    pub disconnect_timeout: Duration,
    /// A connected publisher from which nothing (media, RTCP, STUN) arrived for this long is
    /// disconnected (ICE-lite alone notices only after 15 s).
    pub silence_timeout: Duration,
    /// The pipeline's settings (`publisher_has_audio` is set from the offer).
    pub pipeline: PipelineConfig,
}

/// The WebRTC side of the server: the socket and the addresses it advertises.
#[derive(Debug, Clone)]
pub struct Ingest {
    mux: Arc<udp::UdpMux>,
    candidates: Vec<SocketAddr>,
}

/// A handle on a running session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The session id (the last segment of the WHIP resource URL).
    pub id: String,
    commands: mpsc::Sender<SessionCommand>,
    disconnected: Arc<AtomicBool>,
}

impl SessionHandle {
    /// Sends a command; `false` if the session is gone or its queue is full.
    pub fn send(&self, command: SessionCommand) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// Whether the session task is still running.
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Whether the publisher's ICE is disconnected right now (the session has not given up
    /// yet: it does after the disconnect timeout).
    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed)
    }

    /// Completes when the session task has ended.
    pub async fn closed(&self) {
        self.commands.closed().await
    }
}

/// An accepted offer: the answer to send back and the session waiting to be spawned.
pub struct Accepted {
    /// The SDP answer (candidates in every m-section).
    pub answer: String,
    rtc: str0m::Rtc,
    has_audio: bool,
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("has_audio", &self.has_audio)
            .finish_non_exhaustive()
    }
}

impl Ingest {
    /// Binds the one UDP socket and starts reading it. `advertised` are the host candidate
    /// addresses (their port is the bound port).
    pub async fn bind(addr: SocketAddr, advertised: Vec<IpAddr>) -> std::io::Result<Ingest> {
        let mux = udp::UdpMux::bind(addr, &advertised).await?;
        let candidates = mux.advertised().to_vec();
        tokio::spawn(mux.clone().run());
        Ok(Ingest { mux, candidates })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.mux.local_addr()
    }

    /// The advertised host candidates.
    pub fn candidates(&self) -> &[SocketAddr] {
        &self.candidates
    }

    /// Sessions currently registered on the socket.
    pub fn session_count(&self) -> usize {
        self.mux.session_count()
    }

    /// Checks an SDP offer and answers it: `invalid_sdp` (400) when it cannot be parsed,
    /// `no_h264_offered` (422) when it has no usable H.264.
    pub fn accept(&self, offer: &str) -> Result<Accepted> {
        let parsed = str0m::change::SdpOffer::from_sdp_string(offer).map_err(|e| {
            Error::new(
                ErrorCode::InvalidSdp,
                format!(
                    "the SDP offer could not be parsed: {}",
                    sdp::clip(&e.to_string())
                ),
            )
        })?;
        let summary = sdp::summarize_offer(offer)?;
        let now = Instant::now();
        let mut rtc = session::rtc_config().build(now);
        for addr in &self.candidates {
            match str0m::Candidate::host(*addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!("cannot use {addr} as a host candidate: {e}"),
            }
        }
        let answer = rtc.sdp_api().accept_offer(parsed).map_err(|e| {
            Error::new(
                ErrorCode::InvalidSdp,
                format!(
                    "the SDP offer was not acceptable: {}",
                    sdp::clip(&e.to_string())
                ),
            )
        })?;
        let answer = answer.to_sdp_string();
        sdp::check_answer_has_h264(&answer, &summary)?;
        Ok(Accepted {
            answer: sdp::spread_candidates(&answer),
            has_audio: sdp::answer_has_opus(&answer),
            rtc,
        })
    }

    /// Starts the session task for an accepted offer.
    pub fn spawn(
        &self,
        accepted: Accepted,
        id: String,
        config: SessionConfig,
        sink: Arc<dyn PublisherSink>,
    ) -> SessionHandle {
        let (tx, rx) = mpsc::channel(64);
        let rtc = Arc::new(Mutex::new(accepted.rtc));
        let mut config = config;
        config.pipeline.publisher_has_audio = accepted.has_audio;
        let disconnected = Arc::new(AtomicBool::new(false));
        session::spawn(
            self.mux.clone(),
            rtc,
            id.clone(),
            config,
            sink,
            rx,
            disconnected.clone(),
        );
        SessionHandle {
            id,
            commands: tx,
            disconnected,
        }
    }
}
