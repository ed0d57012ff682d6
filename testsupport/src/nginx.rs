//! A private nginx with the RTMP module, one per test, on loopback ports of its own.

use crate::{free_port, require_tool, run, set_mode, test_dir};
use std::fmt::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What the test nginx should do besides recording.
#[derive(Debug, Clone, Default)]
pub struct NginxOptions {
    /// Add a TLS front (nginx stream module) so `rtmps://127.0.0.1:{rtmps_port}/..` works with
    /// [`Nginx::ca_cert`] as the trusted CA.
    pub tls: bool,
    /// `record_unique on`: every publish gets its own file (key-TIMESTAMP.flv) instead of
    /// overwriting `key.flv`.
    pub record_unique: bool,
    /// HTTP URL for nginx-rtmp's `on_publish` callback (form fields `name`, `app`, `call`...);
    /// a non-2xx answer refuses the publish.
    pub on_publish: Option<String>,
    /// HTTP URL for nginx-rtmp's `on_publish_done` callback.
    pub on_publish_done: Option<String>,
}

/// A running nginx-rtmp. Applications: `live` and `live2` accept and record every publish;
/// `closed` refuses every publish (`deny publish all`). Stopped (and its process group killed)
/// on drop.
#[derive(Debug)]
pub struct Nginx {
    dir: PathBuf,
    options: NginxOptions,
    child: Option<Child>,
    /// Plain RTMP port on 127.0.0.1.
    pub rtmp_port: u16,
    /// TLS front port on 127.0.0.1 (only with `tls`).
    pub rtmps_port: Option<u16>,
    /// Where recordings are written.
    pub record_dir: PathBuf,
    /// The CA certificate (PEM) that signed the TLS front's certificate (only with `tls`).
    pub ca_cert: Option<PathBuf>,
}

impl Nginx {
    /// Starts nginx and waits until its ports accept connections.
    pub fn start(options: NginxOptions) -> Nginx {
        require_tool("nginx");
        for module in ["ngx_rtmp_module.so", "ngx_stream_module.so"] {
            let path = Path::new("/usr/lib/nginx/modules").join(module);
            assert!(
                path.is_file() || (!options.tls && module == "ngx_stream_module.so"),
                "nginx module {} missing: run scripts/install-deps.sh test",
                path.display()
            );
        }
        let dir = test_dir("nginx");
        let record_dir = dir.join("rec");
        std::fs::create_dir_all(&record_dir).expect("record dir");
        set_mode(&record_dir, 0o1777);
        let rtmp_port = free_port();
        let (rtmps_port, ca_cert) = if options.tls {
            let certs = make_certs(&dir);
            (Some(free_port()), Some(certs))
        } else {
            (None, None)
        };
        let mut nginx = Nginx {
            dir,
            options,
            child: None,
            rtmp_port,
            rtmps_port,
            record_dir,
            ca_cert,
        };
        nginx.write_config();
        nginx.spawn();
        nginx
    }

    /// `rtmp://127.0.0.1:PORT/{app}/{key}`.
    pub fn rtmp_url(&self, app: &str, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/{app}/{key}", self.rtmp_port)
    }

    /// `rtmps://127.0.0.1:TLSPORT/{app}/{key}` (needs `tls`).
    pub fn rtmps_url(&self, app: &str, key: &str) -> String {
        let port = self.rtmps_port.expect("nginx started without tls");
        format!("rtmps://127.0.0.1:{port}/{app}/{key}")
    }

    /// The recording of stream `key` (without `record_unique`).
    pub fn recording(&self, key: &str) -> PathBuf {
        self.record_dir.join(format!("{key}.flv"))
    }

    /// Every recording whose name starts with `key`, oldest first (for `record_unique`).
    pub fn recordings(&self, key: &str) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.record_dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with(key) && n.ends_with(".flv"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by_key(|p| {
            std::fs::metadata(p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::SystemTime::UNIX_EPOCH)
        });
        found
    }

    /// nginx's error log so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// Graceful stop (SIGQUIT; recordings are finalized), SIGKILL after 5 s.
    pub fn stop(&mut self) {
        self.signal_and_reap("QUIT", Duration::from_secs(5));
    }

    /// Fast shutdown (SIGTERM): connections are closed at once.
    pub fn terminate(&mut self) {
        self.signal_and_reap("TERM", Duration::from_secs(5));
    }

    /// Kills master and workers (SIGKILL to the process group): the server "dies".
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts nginx again (same ports, same config) after a stop, terminate or kill.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Whether the master process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    fn signal_and_reap(&mut self, signal: &str, grace: Duration) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let nginx = require_tool("nginx");
        let conf = self.dir.join("nginx.conf");
        let log = std::fs::File::create(self.dir.join("stderr.log")).expect("stderr log");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&self.dir)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("spawn nginx");
        self.child = Some(child);
        let mut ports = vec![self.rtmp_port];
        ports.extend(self.rtmps_port);
        let deadline = Instant::now() + Duration::from_secs(10);
        for port in ports {
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
                if !self.is_running() || Instant::now() > deadline {
                    let stderr =
                        std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
                    panic!(
                        "nginx did not start listening on {port}:\n{stderr}\n{}",
                        self.log()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn write_config(&self) {
        let dir = self.dir.display();
        let rec = self.record_dir.display();
        let unique = if self.options.record_unique {
            "on"
        } else {
            "off"
        };
        let mut hooks = String::new();
        if let Some(url) = &self.options.on_publish {
            let _ = writeln!(hooks, "            on_publish {url};");
        }
        if let Some(url) = &self.options.on_publish_done {
            let _ = writeln!(hooks, "            on_publish_done {url};");
        }
        let mut conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\npid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;\n"
        );
        if self.options.tls {
            conf.push_str("load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n");
        }
        conf.push_str("events { worker_connections 256; }\n");
        let mut apps = String::new();
        for app in ["live", "live2"] {
            let _ = write!(
                apps,
                "        application {app} {{\n            live on;\n            record all;\n\
                 \x20           record_path {rec};\n            record_unique {unique};\n{hooks}        }}\n"
            );
        }
        let _ = write!(
            conf,
            "rtmp {{\n    server {{\n        listen 127.0.0.1:{port};\n        chunk_size 4096;\n\
             {apps}        application closed {{\n            live on;\n            deny publish all;\n        }}\n    }}\n}}\n",
            port = self.rtmp_port
        );
        if let Some(tls_port) = self.rtmps_port {
            let _ = write!(
                conf,
                "stream {{\n    server {{\n        listen 127.0.0.1:{tls_port} ssl;\n\
                 \x20       ssl_certificate {dir}/server.pem;\n        ssl_certificate_key {dir}/server.key;\n\
                 \x20       proxy_pass 127.0.0.1:{port};\n    }}\n}}\n",
                port = self.rtmp_port
            );
        }
        std::fs::write(self.dir.join("nginx.conf"), conf).expect("write nginx.conf");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throw-away CA and a server certificate for 127.0.0.1/localhost signed by it.
/// Returns the CA certificate path.
fn make_certs(dir: &Path) -> PathBuf {
    let openssl = require_tool("openssl");
    let ca_key = dir.join("ca.key");
    let ca_pem = dir.join("ca.pem");
    run(Command::new(&openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=Streamify Test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca_pem));
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    run(Command::new(&openssl)
        .args([
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write ext");
    run(Command::new(&openssl)
        .args(["x509", "-req", "-days", "2", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&ca_pem)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-CAcreateserial")
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(dir.join("server.pem")));
    // nginx's master reads these as root; keep the key private anyway.
    set_mode(&key, 0o600);
    ca_pem
}
