//! The `streamify` binary (in progress: the server command is being built).

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("streamify {}", env!("CARGO_PKG_VERSION")),
        _ => println!(
            "streamify {}\n\nUSAGE:\n    streamify serve [OPTIONS]\n    streamify --version",
            env!("CARGO_PKG_VERSION")
        ),
    }
}
