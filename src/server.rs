//! Starting and stopping the whole server: HTTP listener, the WebRTC UDP socket, the stream
//! manager. Tests start it in-process on free ports (`Config::local`).
//!
//! ```no_run
//! # async fn f() -> Result<(), streamify::error::Error> {
//! let config = streamify::config::Config::local("/tmp/streamify-data", "token");
//! let server = streamify::server::start(config).await?;
//! println!("API on http://{}, WebRTC on udp {}", server.http_addr(), server.udp_addr());
//! server.shutdown().await;
//! # Ok(()) }
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{ensure_private_dir, Config};
use crate::error::{Error, ErrorCode, Result};
use crate::http::{self, AppState};
use crate::media::PipelineConfig;
use crate::output::OutputConfig;
use crate::streams::{ManagerConfig, StreamManager};
use crate::webrtc::{Ingest, SessionConfig};
use crate::youtube::{YouTube, YouTubeConfig};

/// Failed authentications per client and minute before 429.
pub const MAX_AUTH_FAILURES_PER_MINUTE: u32 = 100;

/// A running server.
#[derive(Debug)]
pub struct RunningServer {
    http_addr: SocketAddr,
    udp_addr: SocketAddr,
    base_url: String,
    api_token: String,
    manager: StreamManager,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<()>,
}

impl RunningServer {
    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound WebRTC UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// `http://host:port` (or the configured public URL).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API token.
    pub fn api_token(&self) -> &str {
        &self.api_token
    }

    /// The stream manager (for tests and embedding).
    pub fn manager(&self) -> &StreamManager {
        &self.manager
    }

    /// Stops every stream cleanly (FCUnpublish/deleteStream, peer connections closed), then
    /// the HTTP server. Returns within about 5 s.
    pub async fn shutdown(self) {
        self.manager.shutdown().await;
        let _ = self.shutdown.send(true);
        let abort = self.http.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), self.http)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Runs until SIGINT or SIGTERM, then shuts down.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("signal received: stopping every stream");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts the server with the given configuration.
pub async fn start(config: Config) -> Result<RunningServer> {
    start_with_routes(config, None).await
}

/// Starts the server with `extra` routes merged in (behind the same authentication).
pub async fn start_with_routes(config: Config, extra: Option<Router>) -> Result<RunningServer> {
    start_inner(config, extra, None).await
}

/// Starts the server with the given YouTube settings instead of the environment's (tests
/// point them at a fake of Google).
pub async fn start_with_youtube(config: Config, youtube: YouTubeConfig) -> Result<RunningServer> {
    start_inner(config, None, Some(youtube)).await
}

async fn start_inner(
    config: Config,
    extra: Option<Router>,
    youtube_config: Option<YouTubeConfig>,
) -> Result<RunningServer> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    ensure_private_dir(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| internal(format!("cannot listen on {}: {e}", config.listen)))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| internal(format!("listener address: {e}")))?;
    let udp_bind = config.webrtc_udp;
    let advertised = config.advertised_ips(udp_bind);
    let ingest = Ingest::bind(udp_bind, advertised)
        .await
        .map_err(|e| internal(format!("cannot bind the WebRTC UDP socket {udp_bind}: {e}")))?;
    let udp_addr = ingest.local_addr();
    let base_url = match &config.public_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => {
            let host = if http_addr.ip().is_unspecified() {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), http_addr.port())
            } else {
                http_addr
            };
            format!("http://{host}")
        }
    };
    let store = Arc::new(crate::store::Store::open_from_env(&config.data_dir)?);
    match store.mark_interrupted("server_restart") {
        Ok(ids) if !ids.is_empty() => {
            tracing::warn!(
                "{} stream(s) were active when the server stopped: marked ended (server_restart)",
                ids.len()
            )
        }
        Ok(_) => {}
        Err(e) => tracing::error!("cannot mark interrupted streams: {e}"),
    }
    let persist = Arc::new(crate::streams::persist::Persister::new(store.clone()));
    let youtube_config = youtube_config.unwrap_or_else(|| YouTubeConfig::from_env(&base_url));
    let youtube = YouTube::new(youtube_config, store.clone())?;
    let manager = StreamManager::new(
        ManagerConfig {
            max_streams: config.limits.max_streams,
            max_destinations: config.limits.max_destinations,
            output: OutputConfig {
                ca_file: config.rtmp_ca_file.clone(),
                failure_budget: config.rtmp_failure_budget,
                ..OutputConfig::default()
            },
            session: SessionConfig {
                connect_timeout: config.limits.ice_connect_timeout,
                disconnect_timeout: config.limits.ice_disconnect_timeout,
                silence_timeout: config.limits.publisher_silence_timeout,
                pipeline: PipelineConfig {
                    keyframe_interval: config.keyframe_interval,
                    aac_bitrate: config.aac_bitrate,
                    publisher_has_audio: true,
                },
            },
            stop_timeout: Duration::from_millis(4500),
            publisher_grace: config.limits.publisher_grace,
            youtube: Some(youtube.clone()),
        },
        ingest.clone(),
        Some(persist),
    );
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    if youtube.config().is_configured() {
        spawn_broadcast_cleanup(youtube.clone(), &manager, shutdown_rx.clone());
    }
    let state = AppState {
        manager: manager.clone(),
        auth: Arc::new(http::auth::Auth::new(
            &config.api_token,
            MAX_AUTH_FAILURES_PER_MINUTE,
        )),
        tickets: Arc::new(http::ws::Tickets::default()),
        base_url: base_url.clone(),
        limits: config.limits.clone(),
        shutdown: shutdown_rx.clone(),
        youtube: Some(youtube.clone()),
    };
    let youtube_routes = crate::youtube::routes::router(crate::youtube::routes::YouTubeRoutes {
        youtube,
        api_token: Some(config.api_token.clone()),
    });
    let extra = Some(match extra {
        Some(e) => youtube_routes.merge(e),
        None => youtube_routes,
    });
    let app = http::router(state, &config.cors_origins, extra);
    let mut stop = shutdown_rx;
    let http = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(listener, service)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!("HTTP server failed: {e}");
        }
    });
    tracing::info!(
        "listening on {base_url} (HTTP {http_addr}), WebRTC UDP {udp_addr}, candidates {:?}",
        ingest.candidates()
    );
    Ok(RunningServer {
        http_addr,
        udp_addr,
        base_url,
        api_token: config.api_token.clone(),
        manager,
        shutdown: shutdown_tx,
        http,
    })
}

/// In the background: first ends the broadcasts a crash left on YouTube (or deletes them),
/// then every `cleanup_interval` the broadcasts no running stream uses any more (a clean-up
/// that failed for lack of quota, or outlasted the stop timeout), until shutdown.
fn spawn_broadcast_cleanup(
    youtube: Arc<YouTube>,
    manager: &StreamManager,
    mut shutdown: watch::Receiver<bool>,
) {
    let manager = manager.clone();
    let interval = youtube.config().timing.cleanup_interval;
    tokio::spawn(async move {
        if let Err(e) = youtube.end_interrupted_broadcasts().await {
            tracing::warn!("cannot end the broadcasts interrupted by a restart: {e}");
        }
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(interval) => {}
            }
            let running = |id: &str| manager.get(id).is_ok_and(|s| !s.state().is_terminal());
            if let Err(e) = youtube.end_orphaned_broadcasts(running).await {
                tracing::warn!("cannot end the broadcasts left by a failed clean-up: {e}");
            }
        }
    });
}

fn internal(message: String) -> Error {
    Error::new(ErrorCode::Internal, message)
}
