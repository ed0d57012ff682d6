#!/usr/bin/env bash
# Runs the Streamify server with its embedded defaults (SQLite in ./data, HTTP on 127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
exec cargo run --release -- serve "$@"
