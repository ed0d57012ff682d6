//! The publisher against a real nginx-rtmp (and its TLS front): recordings must hold the
//! same audio and video tag bodies with the same timestamps, and decode strictly clean.
//! nginx, ffmpeg and openssl must be installed (scripts/install-deps.sh test); a missing
//! tool fails the test, it never skips.

use std::path::Path;
use std::time::Duration;

use flv::{Demuxer, TagKind};
use rtmp::tokio::{
    publish_flv_file, ConnectError, ConnectOptions, PublishError, PublishFileError,
    PublishFileOptions, Publisher,
};
use rtmp::{CloseReason, Event};
use streamify_testsupport::{ffprobe, reference_flv, Nginx, NginxOptions, ReferenceMedia};

/// The reference FLV. `reference_flv` writes its temp file under a per-process name, so
/// concurrent first calls from several test threads would clobber each other: serialize.
fn reference() -> std::path::PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    reference_flv(ReferenceMedia::default())
}

/// (kind, timestamp, body) of every audio and video tag.
fn media_tags(path: &Path) -> Vec<(TagKind, u32, bytes::Bytes)> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut demuxer = Demuxer::new();
    demuxer.push(&bytes);
    let mut tags = Vec::new();
    while let Some(tag) = demuxer
        .pull()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    {
        if tag.kind != TagKind::Script {
            tags.push((tag.kind, tag.timestamp, tag.data));
        }
    }
    tags
}

fn is_sequence_header(kind: TagKind, body: &[u8]) -> bool {
    match kind {
        TagKind::Video => body.len() > 1 && body[0] & 0x0f == 7 && body[1] == 0,
        TagKind::Audio => body.len() > 1 && body[0] >> 4 == 10 && body[1] == 0,
        TagKind::Script => false,
    }
}

fn assert_same_media(reference: &Path, recording: &Path) {
    let want = media_tags(reference);
    let mut got = media_tags(recording);
    // nginx-rtmp's record module writes the current AVC/AAC sequence headers into a new
    // recording itself, so a sequence header we sent can appear twice in a row. Remove
    // such exact repeats (at most one per kind); everything else must match exactly.
    let mut repeats = Vec::new();
    let mut i = 1;
    while i < got.len() {
        let (kind, ts, body) = &got[i];
        let repeated = is_sequence_header(*kind, body)
            && got[..i]
                .iter()
                .rev()
                .take(3)
                .any(|(k, t, b)| k == kind && t == ts && b == body);
        if repeated {
            repeats.push(*kind);
            got.remove(i);
        } else {
            i += 1;
        }
    }
    assert!(
        repeats.len() <= 2,
        "more repeated sequence headers than nginx inserts: {repeats:?}"
    );
    assert!(!want.is_empty());
    let first_diff = want.iter().zip(&got).position(|(a, b)| a != b);
    assert!(
        want.len() == got.len() && first_diff.is_none(),
        "recording {} differs from {}: {} vs {} tags, first difference at tag {:?}: {:?} vs {:?}",
        recording.display(),
        reference.display(),
        got.len(),
        want.len(),
        first_diff,
        first_diff.map(|i| (want[i].0, want[i].1, want[i].2.len())),
        first_diff.map(|i| (got[i].0, got[i].1, got[i].2.len())),
    );
    ffprobe::strict_decode(recording).unwrap_or_else(|e| panic!("{}: {e}", recording.display()));
    let probe = ffprobe::probe(recording);
    let video = probe.video.expect("video stream");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 1280, 720)
    );
    let audio = probe.audio.expect("audio stream");
    assert_eq!(
        (
            audio.codec.as_str(),
            audio.profile.as_str(),
            audio.sample_rate
        ),
        ("aac", "LC", 48000)
    );
}

async fn with_timeout<T>(what: &str, secs: u64, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for more than {secs} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reference_flv_over_rtmp_is_recorded_byte_exact() {
    let reference = reference();
    let mut nginx = Nginx::start(NginxOptions::default());
    let report = with_timeout(
        "publish",
        60,
        publish_flv_file(
            &reference,
            &nginx.rtmp_url("live", "plain"),
            PublishFileOptions::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("publish failed: {e}\nnginx log:\n{}", nginx.log()));
    assert!(report.video_tags >= 180, "{report:?}");
    assert_eq!(report.dropped, rtmp::DropStats::default());
    nginx.stop();
    assert_same_media(&reference, &nginx.recording("plain"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reference_flv_over_rtmps_with_the_ca_file_is_recorded_byte_exact() {
    let reference = reference();
    let mut nginx = Nginx::start(NginxOptions {
        tls: true,
        ..NginxOptions::default()
    });
    let mut options = PublishFileOptions::default();
    options.connect.ca_file = nginx.ca_cert.clone();
    with_timeout(
        "publish",
        60,
        publish_flv_file(&reference, &nginx.rtmps_url("live", "tls"), options),
    )
    .await
    .unwrap_or_else(|e| panic!("publish failed: {e}\nnginx log:\n{}", nginx.log()));
    nginx.stop();
    assert_same_media(&reference, &nginx.recording("tls"));
}

#[tokio::test]
async fn rtmps_without_the_ca_file_fails_with_a_certificate_error() {
    let nginx = Nginx::start(NginxOptions {
        tls: true,
        ..NginxOptions::default()
    });
    let err = with_timeout(
        "connect",
        20,
        Publisher::connect(
            &nginx.rtmps_url("live", "untrusted"),
            ConnectOptions::default(),
        ),
    )
    .await
    .expect_err("an untrusted certificate must not connect");
    assert!(matches!(err, ConnectError::Certificate { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("certificate") && text.contains("127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("UnknownIssuer"), "{text}");
}

#[tokio::test]
async fn nginx_deny_publish_is_closed_after_publishing_not_rejected() {
    let nginx = Nginx::start(NginxOptions::default());
    // What nginx-rtmp 1.2 actually does with `deny publish all`: it answers the publish with
    // NetStream.Publish.Start, then its access module logs "access forbidden by rule" and
    // closes the connection. No onStatus error is sent, so the honest outcome is a Closed
    // event right after Publishing (a server that sends an onStatus error gives Rejected,
    // see tests/session_pair.rs).
    let mut publisher = with_timeout(
        "connect",
        20,
        Publisher::connect(
            &nginx.rtmp_url("closed", "denied"),
            ConnectOptions::default(),
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("connect: {e}"));
    let err = with_timeout(
        "drive",
        20,
        publisher.drive_until(tokio::time::Instant::now() + Duration::from_secs(10)),
    )
    .await
    .expect_err("nginx must close a denied publish");
    assert!(matches!(err, PublishError::Closed), "{err:?}");
    let mut events = Vec::new();
    while let Some(e) = publisher.poll_event() {
        events.push(e);
    }
    assert_eq!(
        events,
        vec![
            Event::Connected,
            Event::Publishing { stream_id: 1 },
            Event::Closed {
                reason: CloseReason::PeerClosed,
                was_publishing: true
            }
        ]
    );
    assert!(
        nginx.log().contains("access forbidden by rule"),
        "{}",
        nginx.log()
    );
    // The file publisher (and so the example) fails with a clear message.
    let reference = reference();
    let err = with_timeout(
        "publish",
        20,
        publish_flv_file(
            &reference,
            &nginx.rtmp_url("closed", "denied"),
            PublishFileOptions::default(),
        ),
    )
    .await
    .expect_err("denied");
    assert!(
        matches!(
            err,
            PublishFileError::Publish {
                source: PublishError::Closed,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("closed the connection"), "{err}");
}

#[tokio::test]
async fn nginx_refuses_a_second_publisher_on_a_live_key_with_its_code_and_description() {
    // The refusal nginx-rtmp does send as an onStatus error: publishing a key that is
    // already being published (ngx_rtmp_live_module: "NetStream.Publish.BadName",
    // "Already publishing").
    let nginx = Nginx::start(NginxOptions::default());
    let url = nginx.rtmp_url("live", "taken");
    let first = with_timeout(
        "connect",
        20,
        Publisher::connect(&url, ConnectOptions::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("first publisher: {e}\n{}", nginx.log()));
    let err = with_timeout(
        "connect",
        20,
        Publisher::connect(&url, ConnectOptions::default()),
    )
    .await
    .expect_err("a second publisher on the same key must be refused");
    match &err {
        ConnectError::Rejected { code, description } => {
            assert_eq!(code, "NetStream.Publish.BadName");
            assert_eq!(description, "Already publishing");
        }
        other => panic!("expected Rejected, got {other:?}\n{}", nginx.log()),
    }
    assert!(
        err.to_string()
            .contains("NetStream.Publish.BadName: Already publishing"),
        "{err}"
    );
    drop(first);
}

/// The `publish` example binary, built by the same `cargo test` run (cargo test builds
/// the package's examples unless targets are selected explicitly).
fn publish_example() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let example = dir.join("examples").join("publish");
    assert!(
        example.is_file(),
        "{} not found: run the tests with `cargo test -p streamify-rtmp --features tokio` \
         (which builds the examples), not with `--test nginx` alone",
        example.display()
    );
    example
}

#[test]
fn publish_example_round_trips_over_rtmps_with_ca_file_and_fails_clearly_without() {
    let reference = reference();
    let mut nginx = Nginx::start(NginxOptions {
        tls: true,
        ..NginxOptions::default()
    });
    let ca = nginx.ca_cert.clone().expect("CA");
    let run = |url: &str, ca: Option<&Path>| {
        let mut cmd = std::process::Command::new(publish_example());
        cmd.arg(&reference).arg(url);
        if let Some(ca) = ca {
            cmd.arg("--ca-file").arg(ca);
        }
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the publish example");
        // Real time: the 6 s reference must be done well within 40 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the publish example hung");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("output")
    };

    let out = run(&nginx.rtmps_url("live", "example"), Some(&ca));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}: {stdout}{stderr}\n{}",
        out.status,
        nginx.log()
    );
    assert!(stdout.contains("published"), "{stdout}");
    assert!(
        !stdout.contains("/live/example"),
        "the key is redacted: {stdout}"
    );

    let out = run(&nginx.rtmps_url("live", "untrusted"), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("--ca-file"),
        "{stderr}"
    );
    nginx.stop();
    assert_same_media(&reference, &nginx.recording("example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_publish_gives_closed_without_hanging() {
    let reference = reference();
    let mut nginx = Nginx::start(NginxOptions::default());
    let mut publisher = with_timeout(
        "connect",
        20,
        Publisher::connect(&nginx.rtmp_url("live", "killed"), ConnectOptions::default()),
    )
    .await
    .expect("connect");
    let bytes = std::fs::read(&reference).unwrap();
    let mut demuxer = Demuxer::new();
    demuxer.push(&bytes);
    let start = tokio::time::Instant::now();
    let mut killed = false;
    let outcome = with_timeout("publishing to a dead server", 30, async {
        while let Some(tag) = demuxer.pull().unwrap() {
            let due = start + Duration::from_millis(tag.timestamp as u64);
            publisher.drive_until(due).await?;
            if !killed && tag.timestamp > 1500 {
                nginx.kill();
                killed = true;
            }
            match tag.kind {
                TagKind::Audio => drop(publisher.send_audio(tag.timestamp, tag.data)?),
                TagKind::Video => drop(publisher.send_video(tag.timestamp, tag.data)?),
                TagKind::Script => publisher.send_metadata_tag(tag.timestamp, &tag.data)?,
            }
        }
        Ok::<(), PublishError>(())
    })
    .await;
    assert!(killed);
    let err = outcome.expect_err("publishing to a killed server must fail");
    assert!(
        matches!(err, PublishError::Closed | PublishError::Io(_)),
        "{err:?}"
    );
    let mut events = Vec::new();
    while let Some(e) = publisher.poll_event() {
        events.push(e);
    }
    assert!(
        events.contains(&Event::Closed {
            reason: CloseReason::PeerClosed,
            was_publishing: true
        }),
        "{events:?}"
    );
}

#[tokio::test]
async fn unreachable_port_and_bad_urls_fail_clearly() {
    let port = streamify_testsupport::free_port();
    let err = Publisher::connect(
        &format!("rtmp://127.0.0.1:{port}/live/k"),
        ConnectOptions::default(),
    )
    .await
    .expect_err("nothing listens");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let err = Publisher::connect("rtmp://127.0.0.1/onlyapp", ConnectOptions::default())
        .await
        .expect_err("no key");
    assert!(matches!(err, ConnectError::Url(_)), "{err:?}");
    let err = publish_flv_file(
        Path::new("/nonexistent.flv"),
        "rtmp://127.0.0.1/a/b",
        PublishFileOptions::default(),
    )
    .await
    .expect_err("missing file");
    assert!(matches!(err, PublishFileError::Read { .. }), "{err:?}");
}
