//! The harness itself against its real peers: nginx-rtmp records what ffmpeg publishes, the
//! TLS front verifies with the test CA, the refusing app refuses.

use std::process::Command;
use streamify_testsupport::{
    ffprobe, reference_flv, require_tool, Nginx, NginxOptions, ReferenceMedia,
};

fn ffmpeg_publish(input: &std::path::Path, url: &str) -> std::process::Output {
    Command::new(require_tool("ffmpeg"))
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(input)
        .args(["-c", "copy", "-f", "flv", url])
        .output()
        .expect("run ffmpeg")
}

#[test]
fn nginx_records_a_publish_and_ffprobe_judges_it() {
    let media = ReferenceMedia {
        seconds: 3,
        ..ReferenceMedia::default()
    };
    let input = reference_flv(media);
    let probe = ffprobe::probe(&input);
    let video = probe.video.expect("reference has video");
    assert_eq!(
        (video.codec.as_str(), video.width, video.height),
        ("h264", 1280, 720)
    );
    let audio = probe.audio.expect("reference has audio");
    assert_eq!(
        (
            audio.codec.as_str(),
            audio.profile.as_str(),
            audio.sample_rate
        ),
        ("aac", "LC", 48000)
    );
    assert!(ffprobe::max_keyframe_interval(&input) <= 2.01);

    let mut nginx = Nginx::start(NginxOptions::default());
    let out = ffmpeg_publish(&input, &nginx.rtmp_url("live", "harness"));
    assert!(
        out.status.success(),
        "ffmpeg publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    nginx.stop();
    let rec = nginx.recording("harness");
    ffprobe::strict_decode(&rec).unwrap();
    let recorded = ffprobe::probe(&rec);
    assert!(
        (recorded.duration - 3.0).abs() < 0.2,
        "duration {}",
        recorded.duration
    );
}

#[test]
fn refusing_app_refuses() {
    let nginx = Nginx::start(NginxOptions::default());
    let input = reference_flv(ReferenceMedia {
        seconds: 3,
        ..ReferenceMedia::default()
    });
    // In real time (`-re`): ffmpeg does not wait for NetStream.Publish.Start, so a fast
    // publish of a small file can fit into the socket buffers before nginx's close arrives
    // and exit 0 (seen on a loaded CI machine). Paced, it is still writing when the close
    // lands and must fail.
    let out = Command::new(require_tool("ffmpeg"))
        .args(["-nostdin", "-v", "error", "-re", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "flv"])
        .arg(nginx.rtmp_url("closed", "nope"))
        .output()
        .expect("run ffmpeg");
    assert!(
        !out.status.success(),
        "publish to the closed app must fail; nginx log:\n{}",
        nginx.log()
    );
    assert!(
        nginx.log().contains("access forbidden by rule"),
        "nginx must say why it refused:\n{}",
        nginx.log()
    );
    assert!(!nginx.recording("nope").exists());
}

#[test]
fn tls_front_verifies_with_the_test_ca_only() {
    let nginx = Nginx::start(NginxOptions {
        tls: true,
        ..NginxOptions::default()
    });
    let port = nginx.rtmps_port.unwrap().to_string();
    let connect = |ca: Option<&std::path::Path>| {
        let mut cmd = Command::new(require_tool("openssl"));
        cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"])
            .stdin(std::process::Stdio::null());
        if let Some(ca) = ca {
            cmd.arg("-CAfile").arg(ca);
        }
        cmd.output().expect("openssl s_client")
    };
    let trusted = connect(nginx.ca_cert.as_deref());
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    let untrusted = connect(None);
    assert!(
        !untrusted.status.success(),
        "a self-signed CA must not verify without -CAfile"
    );
}
