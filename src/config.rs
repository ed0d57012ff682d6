//! Server configuration: the `streamify serve` flags (each also read from a `STREAMIFY_*`
//! environment variable) and their resolution into a [`Config`] (data directory created,
//! API token loaded or generated, advertised WebRTC addresses chosen).

use crate::error::{Error, ErrorCode, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Flags of `streamify serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// HTTP listen address (API, WHIP, WebSocket).
    #[arg(long, env = "STREAMIFY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Data directory (created with mode 0700): API token, database.
    #[arg(long, env = "STREAMIFY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// API token for `Authorization: Bearer`. If unset, one is generated at first start,
    /// stored in the data directory (mode 0600) and printed once.
    #[arg(long, env = "STREAMIFY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// The one UDP socket every WebRTC peer uses.
    #[arg(long, env = "STREAMIFY_WEBRTC_UDP", default_value = "0.0.0.0:8189")]
    pub webrtc_udp: SocketAddr,

    /// Comma-separated addresses advertised as ICE host candidates (default: the bound UDP
    /// address if specific, else the machine's interface addresses).
    #[arg(long, env = "STREAMIFY_WEBRTC_PUBLIC_IPS", value_delimiter = ',')]
    pub webrtc_public_ips: Vec<IpAddr>,

    /// An extra CA certificate (PEM) trusted for rtmps:// destinations.
    #[arg(long, env = "STREAMIFY_RTMP_CA_FILE")]
    pub rtmp_ca_file: Option<PathBuf>,

    /// Comma-separated origins allowed by CORS (default: none besides same-origin).
    #[arg(long, env = "STREAMIFY_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Maximum number of streams that exist at once.
    #[arg(long, env = "STREAMIFY_MAX_STREAMS", default_value_t = 16)]
    pub max_streams: usize,

    /// Maximum number of destinations of one stream.
    #[arg(long, env = "STREAMIFY_MAX_DESTINATIONS", default_value_t = 8)]
    pub max_destinations: usize,

    /// Maximum HTTP request body (and SDP) size in bytes.
    #[arg(long, env = "STREAMIFY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Maximum WebSocket message size in bytes.
    #[arg(long, env = "STREAMIFY_MAX_WS_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_ws_message_bytes: usize,

    /// Seconds a publisher may take to connect (ICE + DTLS) before the session fails.
    #[arg(long, env = "STREAMIFY_ICE_CONNECT_TIMEOUT", default_value_t = 15)]
    pub ice_connect_timeout_secs: u64,

    /// Seconds a publisher's ICE may stay disconnected before the session fails.
    #[arg(long, env = "STREAMIFY_ICE_DISCONNECT_TIMEOUT", default_value_t = 10)]
    pub ice_disconnect_timeout_secs: u64,

    /// Seconds a stream whose publisher was lost keeps its destinations connected and waits
    /// for a new publish (WHIP or WebSocket) that continues it; then it fails `publisher_lost`.
    /// 0 ends the stream at once.
    #[arg(long, env = "STREAMIFY_PUBLISHER_GRACE", default_value_t = 15)]
    pub publisher_grace_secs: u64,

    /// Public base URL used in `whip_url`/`ws_url` (default `http://<listen>`).
    #[arg(long, env = "STREAMIFY_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Seconds an RTMP destination keeps reconnecting (backoff 0.5 s doubling to 10 s) before
    /// it fails.
    #[arg(long, env = "STREAMIFY_RTMP_FAILURE_BUDGET", default_value_t = 60)]
    pub rtmp_failure_budget_secs: u64,

    /// Ask the publisher for a keyframe when none arrived for this many milliseconds.
    #[arg(long, env = "STREAMIFY_KEYFRAME_INTERVAL_MS", default_value_t = 2000)]
    pub keyframe_interval_ms: u64,

    /// AAC-LC bit rate in bit/s (48 kHz stereo).
    #[arg(long, env = "STREAMIFY_AAC_BITRATE", default_value_t = 128_000)]
    pub aac_bitrate: u32,
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Data directory (exists, mode 0700).
    pub data_dir: PathBuf,
    /// The API bearer token.
    pub api_token: String,
    /// UDP address of the WebRTC socket (port 0 picks a free port).
    pub webrtc_udp: SocketAddr,
    /// Addresses advertised as host candidates (empty: resolved when the socket is bound).
    pub webrtc_public_ips: Vec<IpAddr>,
    /// Extra CA for rtmps destinations.
    pub rtmp_ca_file: Option<PathBuf>,
    /// CORS origins allowed besides same-origin.
    pub cors_origins: Vec<String>,
    /// Resource limits.
    pub limits: Limits,
    /// Public base URL for `whip_url`/`ws_url`; `None` means `http://<bound listen address>`.
    pub public_url: Option<String>,
    /// How long an RTMP destination keeps reconnecting before it fails.
    pub rtmp_failure_budget: std::time::Duration,
    /// Keyframe request interval.
    pub keyframe_interval: std::time::Duration,
    /// AAC bit rate (bit/s).
    pub aac_bitrate: u32,
}

/// Limits on resources and sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Streams at once.
    pub max_streams: usize,
    /// Destinations per stream.
    pub max_destinations: usize,
    /// HTTP body bytes.
    pub max_body_bytes: usize,
    /// WebSocket message bytes.
    pub max_ws_message_bytes: usize,
    /// Time allowed for a publisher to connect.
    pub ice_connect_timeout: std::time::Duration,
    /// Time a publisher's ICE may stay disconnected.
    pub ice_disconnect_timeout: std::time::Duration,
    /// Time a stream waits for a lost publisher to come back.
    pub publisher_grace: std::time::Duration,
    /// Time without any datagram after which a connected publisher counts as disconnected.
    pub publisher_silence_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: 16,
            max_destinations: 8,
            max_body_bytes: 64 * 1024,
            max_ws_message_bytes: 64 * 1024,
            ice_connect_timeout: std::time::Duration::from_secs(15),
            ice_disconnect_timeout: std::time::Duration::from_secs(10),
            publisher_grace: std::time::Duration::from_secs(15),
            publisher_silence_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// What happened to the API token while resolving the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// Given on the command line or in the environment.
    Given,
    /// Read from the data directory.
    Stored,
    /// Generated now and stored; print it once.
    Generated,
}

const TOKEN_FILE: &str = "api_token";

impl Config {
    /// A configuration for tests and embedding: loopback HTTP and UDP on free ports, the given
    /// data directory and token, default limits.
    pub fn local(data_dir: impl Into<PathBuf>, api_token: impl Into<String>) -> Config {
        Config {
            listen: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            data_dir: data_dir.into(),
            api_token: api_token.into(),
            webrtc_udp: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            webrtc_public_ips: Vec::new(),
            rtmp_ca_file: None,
            cors_origins: Vec::new(),
            limits: Limits::default(),
            public_url: None,
            rtmp_failure_budget: std::time::Duration::from_secs(60),
            keyframe_interval: std::time::Duration::from_secs(2),
            aac_bitrate: 128_000,
        }
    }

    /// Resolves `serve` flags: creates the data directory (0700) and loads or generates the
    /// API token (stored with mode 0600).
    pub fn from_args(args: ServeArgs) -> Result<(Config, TokenSource)> {
        ensure_private_dir(&args.data_dir)?;
        let (api_token, source) = match args.api_token.filter(|t| !t.is_empty()) {
            Some(token) => (token, TokenSource::Given),
            None => load_or_generate_token(&args.data_dir)?,
        };
        let config = Config {
            listen: args.listen,
            data_dir: args.data_dir,
            api_token,
            webrtc_udp: args.webrtc_udp,
            webrtc_public_ips: args.webrtc_public_ips,
            rtmp_ca_file: args.rtmp_ca_file,
            cors_origins: args
                .cors_origins
                .into_iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            limits: Limits {
                max_streams: args.max_streams,
                max_destinations: args.max_destinations,
                max_body_bytes: args.max_body_bytes,
                max_ws_message_bytes: args.max_ws_message_bytes,
                ice_connect_timeout: std::time::Duration::from_secs(args.ice_connect_timeout_secs),
                ice_disconnect_timeout: std::time::Duration::from_secs(
                    args.ice_disconnect_timeout_secs,
                ),
                publisher_grace: std::time::Duration::from_secs(args.publisher_grace_secs),
                ..Limits::default()
            },
            public_url: args.public_url,
            rtmp_failure_budget: std::time::Duration::from_secs(args.rtmp_failure_budget_secs),
            keyframe_interval: std::time::Duration::from_millis(args.keyframe_interval_ms.max(100)),
            aac_bitrate: args.aac_bitrate,
        };
        Ok((config, source))
    }

    /// The addresses to advertise as host candidates for a socket bound to `bound`.
    pub fn advertised_ips(&self, bound: SocketAddr) -> Vec<IpAddr> {
        if !self.webrtc_public_ips.is_empty() {
            return self.webrtc_public_ips.clone();
        }
        if !bound.ip().is_unspecified() {
            return vec![bound.ip()];
        }
        let mut ips = interface_ipv4_addresses();
        if ips.is_empty() {
            ips.push(Ipv4Addr::LOCALHOST.into());
        }
        ips
    }
}

fn internal(what: &str, e: std::io::Error) -> Error {
    Error::new(ErrorCode::Internal, format!("{what}: {e}"))
}

/// Creates `dir` (and parents) and sets its mode to 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|e| internal(&format!("cannot create {}", dir.display()), e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| internal(&format!("cannot chmod {}", dir.display()), e))
}

fn load_or_generate_token(dir: &Path) -> Result<(String, TokenSource)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(TOKEN_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        if !token.is_empty() {
            return Ok((token, TokenSource::Stored));
        }
    }
    let token = random_token();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| internal("cannot store the API token", e))?;
    file.write_all(token.as_bytes())
        .map_err(|e| internal("cannot store the API token", e))?;
    Ok((token, TokenSource::Generated))
}

/// 32 random bytes, URL-safe base64 (43 characters).
pub fn random_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The machine's IPv4 interface addresses, loopback excluded (read from
/// `/proc/net/fib_trie`, Linux only; empty elsewhere).
pub fn interface_ipv4_addresses() -> Vec<IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") else {
        return Vec::new();
    };
    let mut found: Vec<IpAddr> = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let trimmed = line.trim_start_matches([' ', '|', '+', '-', '`']).trim();
        if let Ok(ip) = trimmed.parse::<Ipv4Addr>() {
            last = Some(ip);
        } else if trimmed.starts_with("/32 host LOCAL") {
            if let Some(ip) = last {
                if !ip.is_loopback() && !found.contains(&IpAddr::V4(ip)) {
                    found.push(IpAddr::V4(ip));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_generated_once_with_private_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("streamify-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data = dir.join("data");
        ensure_private_dir(&data).unwrap();
        let (a, src_a) = load_or_generate_token(&data).unwrap();
        let (b, src_b) = load_or_generate_token(&data).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (src_a, src_b),
            (TokenSource::Generated, TokenSource::Stored)
        );
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join(TOKEN_FILE)), 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn advertised_ips_prefer_flag_then_bound_address() {
        let mut c = Config::local("/tmp/x", "t");
        let bound: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(c.advertised_ips(bound), vec![bound.ip()]);
        c.webrtc_public_ips = vec!["10.1.2.3".parse().unwrap()];
        assert_eq!(c.advertised_ips(bound), c.webrtc_public_ips);
        c.webrtc_public_ips.clear();
        assert!(!c.advertised_ips("0.0.0.0:9".parse().unwrap()).is_empty());
    }
}
