#!/usr/bin/env bash
# Fuzz targets (cargo-fuzz, nightly toolchain).
#   scripts/fuzz.sh build            build every target (CI does this so they never rot)
#   scripts/fuzz.sh run SECONDS      run every target for SECONDS each, print executions/findings
#   scripts/fuzz.sh run SECONDS T..  run only the named targets
# A finding leaves its input in fuzz/artifacts/TARGET/; replay it with
#   cargo +nightly fuzz run -O TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz from crates.io" >&2
  cargo install --locked cargo-fuzz >/dev/null
fi
cmd=${1:-build}
case "$cmd" in
  build)
    cargo +nightly fuzz build -O
    ;;
  run)
    secs=${2:?usage: scripts/fuzz.sh run SECONDS [TARGET..]}
    shift 2
    targets=("$@")
    [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo +nightly fuzz list)
    mkdir -p fuzz/logs
    for t in "${targets[@]}"; do
      log=fuzz/logs/$t.log
      status=ok
      cargo +nightly fuzz run -O "$t" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || status=FINDING
      execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1 || true)
      artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | awk '{print $5}' | tail -1 || true)
      echo "$t: executions=${execs:-?} result=$status${artifact:+ artifact=$artifact} (log: $log)"
    done
    ;;
  *) echo "usage: scripts/fuzz.sh build | run SECONDS [TARGET..]" >&2; exit 2 ;;
esac
