//! The tokio adapter: connects to `rtmp://` or `rtmps://` (rustls, SNI, bundled web roots
//! plus an optional CA file), drives a [`ClientSession`] over the socket, and publishes.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use rtmp::tokio::{ConnectOptions, Publisher};
//! let mut publisher = Publisher::connect("rtmps://a.rtmps.youtube.com/live2/KEY", ConnectOptions::default()).await?;
//! // ... publisher.send_video(ts, tag_body)?; publisher.drive_until(deadline).await?; ...
//! println!("dropped: {:?}", publisher.drop_stats());
//! publisher.finish().await?;
//! # Ok(()) }
//! ```
//!
//! `send_*` only queue (or drop under back-pressure); bytes move while the publisher is
//! driven ([`Publisher::drive_until`], [`Publisher::flush`], [`Publisher::finish`]).

mod file;
mod tls;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use flv::amf0::Value;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::handshake::RANDOM_SIZE;
use crate::{
    Admission, ClientConfig, ClientSession, DropStats, Error, Event, RtmpUrl, Scheme, UrlError,
    UsageError,
};

pub use file::{publish_flv_file, PublishFileError, PublishFileOptions, PublishReport};

/// How to connect.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// An extra PEM CA certificate (or bundle) to trust for `rtmps://`, besides the
    /// bundled web roots.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for TCP connect, TLS handshake and the RTMP exchange up to the
    /// publish acknowledgement.
    pub connect_timeout: Duration,
    /// Back-pressure bound for video (see [`ClientConfig::max_queued_video_bytes`]).
    pub max_queued_video_bytes: usize,
    /// Back-pressure bound for audio (see [`ClientConfig::max_queued_audio_bytes`]).
    pub max_queued_audio_bytes: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            max_queued_video_bytes: 1 << 20,
            max_queued_audio_bytes: 4 << 20,
        }
    }
}

/// Why connecting failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a usable RTMP URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Tcp {
        /// host:port.
        addr: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The server's TLS certificate did not verify.
    #[error("TLS certificate of {host} did not verify ({reason}); if it is signed by a private CA, pass that CA with --ca-file / ConnectOptions::ca_file")]
    Certificate {
        /// The host name checked.
        host: String,
        /// rustls's reason.
        reason: String,
    },
    /// Another TLS failure.
    #[error("TLS with {host} failed: {reason}")]
    Tls {
        /// The host.
        host: String,
        /// What failed.
        reason: String,
    },
    /// The CA file could not be used.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Not connected and publishing within the connect timeout.
    #[error("no publish acknowledgement from {url} within {after:?} (stuck at: {phase})")]
    Timeout {
        /// The URL with the key redacted.
        url: String,
        /// The timeout.
        after: Duration,
        /// What was being waited for.
        phase: String,
    },
    /// The server refused connect or publish.
    #[error("the server refused: {code}: {description}")]
    Rejected {
        /// e.g. `NetStream.Publish.BadName`.
        code: String,
        /// The server's description.
        description: String,
    },
    /// The server closed the connection before acknowledging the publish.
    #[error("the server closed the connection before acknowledging the publish (state: {state})")]
    Closed {
        /// Where the session was.
        state: String,
    },
    /// An RTMP protocol error.
    #[error("RTMP protocol error: {0}")]
    Protocol(#[from] Error),
    /// An I/O error on the established connection.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

/// Why publishing stopped.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// An RTMP protocol error.
    #[error("RTMP protocol error: {0}")]
    Protocol(#[from] Error),
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The session refused the call.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// A flush or finish did not complete in time.
    #[error("timed out writing to the server after {0:?}")]
    Timeout(Duration),
}

/// A TCP or TLS connection.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Random bytes for C1. The handshake needs no cryptographic randomness; this mixes the
/// standard library's per-process hash keys with the time.
fn handshake_random() -> [u8; RANDOM_SIZE] {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let mut x = hasher.finish() | 1;
    let mut out = [0u8; RANDOM_SIZE];
    for chunk in out.chunks_mut(8) {
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    out
}

/// What one I/O step did.
enum Step {
    Progress,
    Eof,
    Deadline,
}

/// A publishing connection: a [`ClientSession`] over TCP or TLS.
pub struct Publisher {
    stream: Stream,
    session: ClientSession,
    url: RtmpUrl,
    read_buf: Vec<u8>,
    needs_flush: bool,
    events: VecDeque<Event>,
    closed: bool,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.url.redacted())
            .field("tls", &matches!(self.stream, Stream::Tls(_)))
            .field("state", &self.session.state())
            .field("queued_bytes", &self.session.queued_bytes())
            .field("drop_stats", &self.session.drop_stats())
            .finish()
    }
}

impl Publisher {
    /// Connects to `rtmp[s]://host[:port]/app[/...]/key` and returns once the server has
    /// acknowledged the publish (`NetStream.Publish.Start`).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Publisher, ConnectError> {
        let url = RtmpUrl::parse(url)?;
        let limit = options.connect_timeout;
        let redacted = url.redacted();
        let mut phase = String::from("TCP connect");
        let result =
            tokio::time::timeout(limit, Self::connect_inner(url, options, &mut phase)).await;
        match result {
            Ok(r) => r,
            Err(_) => Err(ConnectError::Timeout {
                url: redacted,
                after: limit,
                phase,
            }),
        }
    }

    async fn connect_inner(
        url: RtmpUrl,
        options: ConnectOptions,
        phase: &mut String,
    ) -> Result<Publisher, ConnectError> {
        let tls_config = match url.scheme {
            Scheme::Rtmps => Some(tls::client_config(options.ca_file.as_deref())?),
            Scheme::Rtmp => None,
        };
        let addr = format!("{}:{}", url.host, url.port);
        let tcp = TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|source| ConnectError::Tcp {
                addr: addr.clone(),
                source,
            })?;
        tcp.set_nodelay(true)?;
        let stream = match tls_config {
            None => Stream::Plain(tcp),
            Some(config) => {
                *phase = "TLS handshake".into();
                let name =
                    ServerName::try_from(url.host.clone()).map_err(|e| ConnectError::Tls {
                        host: url.host.clone(),
                        reason: format!("not a valid TLS server name: {e}"),
                    })?;
                let tls = tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| tls::handshake_error(&url.host, e))?;
                Stream::Tls(Box::new(tls))
            }
        };
        let mut config =
            ClientConfig::new(url.app.clone(), url.tc_url.clone(), url.stream_key.clone());
        config.max_queued_video_bytes = options.max_queued_video_bytes;
        config.max_queued_audio_bytes = options.max_queued_audio_bytes;
        config.response_timeout = options.connect_timeout;
        let session = ClientSession::new(config, Instant::now().into_std(), &handshake_random());
        let mut publisher = Publisher {
            stream,
            session,
            url,
            read_buf: vec![0; 64 * 1024],
            needs_flush: false,
            events: VecDeque::new(),
            closed: false,
        };
        loop {
            *phase = format!("RTMP {:?}", publisher.session.state());
            while let Some(event) = publisher.session.poll_event() {
                match event {
                    Event::Publishing { .. } => {
                        publisher.events.push_back(event);
                        return Ok(publisher);
                    }
                    Event::Rejected { code, description } => {
                        return Err(ConnectError::Rejected { code, description })
                    }
                    Event::ProtocolError(e) => return Err(ConnectError::Protocol(e)),
                    Event::Closed { .. } => {
                        return Err(ConnectError::Closed {
                            state: phase.clone(),
                        })
                    }
                    other => publisher.events.push_back(other),
                }
            }
            let deadline = publisher
                .session
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            match publisher.step(deadline).await {
                Ok(Step::Progress) => {}
                Ok(Step::Deadline) => publisher.session.handle_timeout(Instant::now().into_std()),
                Ok(Step::Eof) => publisher.session.handle_eof(),
                Err(e) => {
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset
                            | io::ErrorKind::BrokenPipe
                            | io::ErrorKind::UnexpectedEof
                    ) {
                        publisher.session.handle_eof();
                    } else {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    /// The URL (parsed).
    pub fn url(&self) -> &RtmpUrl {
        &self.url
    }

    /// The session, for inspection.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// What back-pressure has dropped so far.
    pub fn drop_stats(&self) -> DropStats {
        self.session.drop_stats()
    }

    /// Output bytes queued and not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.session.queued_bytes()
    }

    /// The next event the session reported (status messages, closed, ...).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.pump_events();
        self.events.pop_front()
    }

    fn pump_events(&mut self) {
        while let Some(e) = self.session.poll_event() {
            self.events.push_back(e);
        }
    }

    /// Queues an FLV script tag body (`onMetaData`, array) as `@setDataFrame`.
    pub fn send_metadata_tag(&mut self, timestamp: u32, body: &[u8]) -> Result<(), UsageError> {
        self.session.send_metadata_tag(timestamp, body)
    }

    /// Queues `onMetaData` with these properties.
    pub fn send_metadata(&mut self, properties: &Value) -> Result<(), UsageError> {
        self.session.send_metadata(properties)
    }

    /// Queues (or drops, under back-pressure) a video tag body.
    pub fn send_video(&mut self, timestamp: u32, payload: Bytes) -> Result<Admission, UsageError> {
        self.session.send_video(timestamp, payload)
    }

    /// Queues (or drops, under back-pressure) an audio tag body.
    pub fn send_audio(&mut self, timestamp: u32, payload: Bytes) -> Result<Admission, UsageError> {
        self.session.send_audio(timestamp, payload)
    }

    /// One I/O step: writes queued output, reads what the server sent, or reaches `deadline`.
    async fn step(&mut self, deadline: Instant) -> io::Result<Step> {
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        let Publisher {
            stream,
            session,
            read_buf,
            needs_flush,
            ..
        } = self;
        poll_fn(|cx| {
            let mut progress = false;
            let pending = session.pending_output();
            if !pending.is_empty() {
                if let Poll::Ready(r) = Pin::new(&mut *stream).poll_write(cx, pending) {
                    let n = r?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    session.consume_output(n);
                    *needs_flush = true;
                    progress = true;
                }
            } else if *needs_flush {
                if let Poll::Ready(r) = Pin::new(&mut *stream).poll_flush(cx) {
                    r?;
                    *needs_flush = false;
                    progress = true;
                }
            }
            let mut buf = ReadBuf::new(read_buf);
            if let Poll::Ready(r) = Pin::new(&mut *stream).poll_read(cx, &mut buf) {
                r?;
                if buf.filled().is_empty() {
                    return Poll::Ready(Ok(Step::Eof));
                }
                let _ = session.handle_input(Instant::now().into_std(), buf.filled());
                progress = true;
            }
            if progress {
                return Poll::Ready(Ok(Step::Progress));
            }
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(Step::Deadline));
            }
            Poll::Pending
        })
        .await
    }

    fn check(&mut self) -> Result<(), PublishError> {
        if let Some(e) = self.session.error() {
            return Err(PublishError::Protocol(e.clone()));
        }
        if self.closed {
            return Err(PublishError::Closed);
        }
        Ok(())
    }

    async fn step_checked(&mut self, deadline: Instant) -> Result<Step, PublishError> {
        self.check()?;
        let step = match self.step(deadline).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                Step::Eof
            }
            Err(e) => {
                self.closed = true;
                self.session.handle_eof();
                self.pump_events();
                return Err(e.into());
            }
        };
        if let Step::Eof = step {
            self.closed = true;
            self.session.handle_eof();
            self.pump_events();
            return Err(PublishError::Closed);
        }
        self.pump_events();
        self.check()?;
        Ok(step)
    }

    /// Moves bytes both ways until `deadline`. Returns early with an error if the
    /// connection closes or fails.
    pub async fn drive_until(&mut self, deadline: Instant) -> Result<(), PublishError> {
        while Instant::now() < deadline {
            if let Step::Deadline = self.step_checked(deadline).await? {
                break;
            }
        }
        Ok(())
    }

    /// Writes everything queued (reading meanwhile), within `timeout`.
    pub async fn flush(&mut self, timeout: Duration) -> Result<(), PublishError> {
        let deadline = Instant::now() + timeout;
        while self.session.queued_bytes() > 0 || self.needs_flush {
            if let Step::Deadline = self.step_checked(deadline).await? {
                return Err(PublishError::Timeout(timeout));
            }
        }
        Ok(())
    }

    /// Ends the publish: FCUnpublish + deleteStream, flush (up to 10 s), close the connection.
    pub async fn finish(mut self) -> Result<DropStats, PublishError> {
        self.check()?;
        self.session.stop();
        self.flush(Duration::from_secs(10)).await?;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.stream.shutdown()).await;
        Ok(self.session.drop_stats())
    }
}
