#!/usr/bin/env bash
# Installs the Debian packages Streamify needs to build and to test against real peers.
# Idempotent: packages already present are not touched, so a second run is a no-op.
#   build:  cmake nasm pkg-config (bundled libopus, fdk-aac, openh264, aws-lc)
#   tests:  nginx + RTMP module + stream module (RTMP ingest and TLS front), ffmpeg/ffprobe,
#           chromium + chromedriver (browser WebRTC client), openssl (test certificates),
#           iproute2 (loopback-only network namespaces)
# Usage: scripts/install-deps.sh [build|test]   (default: test, which includes build)
set -euo pipefail
want=${1:-test}
pkgs=(cmake nasm pkg-config build-essential ca-certificates)
if [ "$want" = test ]; then
  pkgs+=(nginx libnginx-mod-rtmp libnginx-mod-stream ffmpeg chromium chromium-driver
         fonts-liberation openssl iproute2 util-linux)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The system nginx service is not used by the tests (each test runs its own nginx); make sure a
# package post-install did not leave one holding ports.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
echo "install-deps: ok ($want)" >&2
