#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what the tests need, checks
# formatting and lints, runs every test against real peers, and builds the fuzz targets.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p streamify-rtmp -p streamify-flv --no-default-features -- -D warnings
# --all-targets builds examples as test harnesses only; the rtmp nginx tests run the real
# `publish` example binary, so build it first.
cargo build --workspace --examples
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
scripts/fuzz.sh build
