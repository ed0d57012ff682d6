//! The `streamify` binary: `streamify serve [OPTIONS]` (see `--help`; every flag also reads a
//! `STREAMIFY_*` environment variable).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use streamify::config::{Config, ServeArgs, TokenSource};

#[derive(Debug, Parser)]
#[command(
    name = "streamify",
    version,
    about = "Browser (WebRTC) to RTMP/YouTube live relay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (HTTP API, WHIP, WebSocket signaling, WebRTC ingest, RTMP outputs).
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Command::Serve(args) => serve(args).await,
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let (config, source) = match Config::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("streamify: {e}");
            return ExitCode::FAILURE;
        }
    };
    if source == TokenSource::Generated {
        println!(
            "Generated an API token (stored in {}, shown only this once):\n{}",
            config.data_dir.join("api_token").display(),
            config.api_token
        );
    }
    let server = match streamify::server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("streamify: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "streamify listening on {} (WebRTC UDP {})",
        server.base_url(),
        server.udp_addr()
    );
    server.run_until_signal().await;
    ExitCode::SUCCESS
}
