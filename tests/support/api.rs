//! The in-process server on free ports with its embedded defaults, and an HTTP client for
//! it, as the API-level tests (`tests/api.rs`, `tests/openapi.rs`) use them.

use std::time::Duration;

use streamify::config::Config;
use streamify::server::{start, RunningServer};

/// The API token of these servers.
pub const TOKEN: &str = "test-token-0123456789";

/// Starts a server with its data in a fresh temporary directory named after `name`, the
/// config first changed by `edit`.
pub async fn server_named(name: &str, edit: impl FnOnce(&mut Config)) -> RunningServer {
    let dir = std::env::temp_dir().join(format!(
        "streamify-{name}-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = Config::local(dir, TOKEN);
    edit(&mut config);
    start(config).await.expect("server starts")
}

/// An HTTP client with a 10 s timeout that does not follow redirects (the tests look at
/// them).
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `http://{server}{path}`.
pub fn url(s: &RunningServer, path: &str) -> String {
    format!("http://{}{}", s.http_addr(), path)
}
