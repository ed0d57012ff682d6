//! Publishes an FLV file to an RTMP or RTMPS server in real time, paced by its timestamps.
//!
//! ```text
//! cargo run --release -p streamify-rtmp --features tokio --example publish -- \
//!     IN.flv rtmp[s]://host[:port]/app/key [--ca-file CERT.pem]
//! ```
//! Exits 0 only when the whole file was sent and the server acknowledged the publish.

use std::path::PathBuf;
use std::process::ExitCode;

use rtmp::tokio::{publish_flv_file, PublishFileOptions};

fn usage() -> ExitCode {
    eprintln!("usage: publish IN.flv rtmp[s]://host[:port]/app/key [--ca-file CERT.pem] [--fast]");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut options = PublishFileOptions::default();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--ca-file" => match args.next() {
                Some(path) => options.connect.ca_file = Some(PathBuf::from(path)),
                None => return usage(),
            },
            "--fast" => options.realtime = false,
            "-h" | "--help" => return usage(),
            _ => positional.push(arg),
        }
    }
    let [input, url] = positional.as_slice() else {
        return usage();
    };
    let redacted = rtmp::RtmpUrl::parse(url)
        .map(|u| u.redacted())
        .unwrap_or_else(|_| url.clone());
    match publish_flv_file(input.as_ref(), url, options).await {
        Ok(report) => {
            println!(
                "published {input} to {redacted}: {} video, {} audio, {} metadata tags, {} bytes, last timestamp {} ms",
                report.video_tags, report.audio_tags, report.metadata_tags, report.payload_bytes, report.last_timestamp
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("publish: {e}");
            ExitCode::FAILURE
        }
    }
}
