//! `GET /metrics`: the Prometheus text format (version 0.0.4).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::streams::StreamState;

const STATES: [StreamState; 8] = [
    StreamState::Created,
    StreamState::Ready,
    StreamState::Starting,
    StreamState::Live,
    StreamState::Reconnecting,
    StreamState::Stopping,
    StreamState::Ended,
    StreamState::Failed,
];

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The handler.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let snapshots: Vec<_> = state
        .manager
        .streams()
        .iter()
        .map(|s| s.snapshot())
        .collect();
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "streamify_streams",
        "gauge",
        "Streams in memory by state.",
    );
    for st in STATES {
        let n = snapshots.iter().filter(|s| s.state == st).count();
        let _ = writeln!(out, "streamify_streams{{state=\"{st}\"}} {n}");
    }
    family(
        &mut out,
        "streamify_publisher_sessions",
        "gauge",
        "WebRTC publisher sessions on the UDP socket.",
    );
    let _ = writeln!(
        out,
        "streamify_publisher_sessions {}",
        state.manager.ingest().session_count()
    );
    let per_stream: [(&str, &str, &str); 6] = [
        (
            "streamify_stream_bitrate_bps",
            "gauge",
            "Output bit rate by track.",
        ),
        (
            "streamify_stream_frames_in_total",
            "counter",
            "Frames received from the publisher by track.",
        ),
        (
            "streamify_stream_frames_out_total",
            "counter",
            "Frames produced for destinations by track.",
        ),
        (
            "streamify_stream_frames_dropped_total",
            "counter",
            "Frames dropped by the pipeline by track.",
        ),
        (
            "streamify_stream_keyframe_requests_total",
            "counter",
            "Keyframe requests sent to the publisher.",
        ),
        (
            "streamify_stream_audio_concealed_total",
            "counter",
            "Opus packets concealed.",
        ),
    ];
    for (name, kind, help) in per_stream {
        family(&mut out, name, kind, help);
        for s in &snapshots {
            let id = &s.id;
            let m = &s.media;
            match name {
                "streamify_stream_keyframe_requests_total" => {
                    let _ = writeln!(out, "{name}{{stream=\"{id}\"}} {}", m.keyframe_requests);
                }
                "streamify_stream_audio_concealed_total" => {
                    let _ = writeln!(out, "{name}{{stream=\"{id}\"}} {}", m.audio_concealed);
                }
                _ => {
                    for (track, t) in [("video", &m.video), ("audio", &m.audio)] {
                        let v = match name {
                            "streamify_stream_bitrate_bps" => t.bitrate_bps,
                            "streamify_stream_frames_in_total" => t.frames_in,
                            "streamify_stream_frames_out_total" => t.frames_out,
                            _ => t.frames_dropped,
                        };
                        let _ = writeln!(out, "{name}{{stream=\"{id}\",track=\"{track}\"}} {v}");
                    }
                }
            }
        }
    }
    let per_destination: [(&str, &str, &str); 4] = [
        (
            "streamify_destination_up",
            "gauge",
            "1 while the destination is publishing.",
        ),
        (
            "streamify_destination_reconnects_total",
            "counter",
            "Successful reconnections.",
        ),
        (
            "streamify_destination_bytes_sent_total",
            "counter",
            "Tag bytes sent.",
        ),
        (
            "streamify_destination_frames_dropped_total",
            "counter",
            "Frames not sent (back-pressure, lag, waiting for a keyframe).",
        ),
    ];
    for (name, kind, help) in per_destination {
        family(&mut out, name, kind, help);
        for s in &snapshots {
            for d in &s.destinations {
                let v = match name {
                    "streamify_destination_up" => {
                        u64::from(d.state == crate::output::DestinationState::Live)
                    }
                    "streamify_destination_reconnects_total" => d.stats.reconnects,
                    "streamify_destination_bytes_sent_total" => d.stats.bytes_sent,
                    _ => d.stats.frames_dropped,
                };
                let _ = writeln!(
                    out,
                    "{name}{{stream=\"{}\",destination=\"{}\"}} {v}",
                    s.id, d.id
                );
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
