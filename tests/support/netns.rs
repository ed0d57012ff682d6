//! Runs one test inside a fresh, loopback-only network namespace (TESTING.md: Chromium offers
//! 127.0.0.1 candidates only there, with `--allow-loopback-in-peer-connection`).
//!
//! The test re-executes its own test binary under
//! `unshare -n sh -c 'ip link set lo up && exec "$@"'` with [`INSIDE_ENV`] set, filtered to
//! itself (`--exact NAME`), and asserts that the inner run passed exactly that test. Everything
//! the test starts (server, nginx, Chromium) then runs inside the namespace.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamify_testsupport::require_tool;

/// Set (to the test's name) in the environment of the inner run.
pub const INSIDE_ENV: &str = "STREAMIFY_E2E_NETNS";

/// Whether this process is the inner run of test `name`. The inner run also checks that it
/// really is in a namespace with nothing but an `up` loopback interface.
pub fn inside(name: &str) -> bool {
    if std::env::var(INSIDE_ENV).ok().as_deref() != Some(name) {
        return false;
    }
    // /proc/self/net follows the process's network namespace (/sys/class/net does not).
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let mut interfaces: Vec<String> = dev
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.trim().to_string())
        .collect();
    interfaces.sort();
    assert_eq!(
        interfaces,
        vec!["lo".to_string()],
        "the inner run of {name} is not in a loopback-only network namespace"
    );
    true
}

/// Re-executes test `name` of this binary inside a loopback-only network namespace and panics
/// (printing the inner output) unless it passed within `limit`.
pub fn run_inside(name: &str, limit: Duration) {
    use std::os::unix::process::CommandExt;
    let unshare = require_tool("unshare");
    require_tool("ip");
    let exe = std::env::current_exe().expect("current test binary");
    let dir = streamify_testsupport::test_dir(&format!("netns-{name}"));
    let out_path = dir.join("inner-output.log");
    let out = std::fs::File::create(&out_path).expect("inner output file");
    let err = out.try_clone().expect("clone output file");
    let mut child = Command::new(unshare)
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$@\"", "sh"])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(INSIDE_ENV, name)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run unshare -n (root needed): {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the inner run") {
            break Some(status);
        }
        if Instant::now() > deadline {
            // The whole group: unshare's sh, the test binary and whatever it started.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = String::new();
    let _ = std::fs::File::open(&out_path).and_then(|mut f| f.read_to_string(&mut output));
    println!("---- inner run of {name} (loopback-only network namespace) ----\n{output}\n---- end of inner run ----");
    let Some(status) = status else {
        panic!("the inner run of {name} did not finish within {limit:?} (output above)");
    };
    // Exactly one test ran and passed: a filter that matched nothing would also exit 0.
    assert!(
        status.success() && output.contains("test result: ok. 1 passed;"),
        "the inner run of {name} in a loopback-only network namespace failed ({status}); \
         its output is above"
    );
}
