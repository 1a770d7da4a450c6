#!/bin/sh
# The one-command demo: a simulated orchestrator with real agent processes,
# the real emitter and watchdog, and the watchdog's alerts as they happen.
#   ./deploy/demo.sh                 # until Ctrl-C
#   ./deploy/demo.sh --duration 120  # exits on its own
#   ./deploy/demo.sh --with-prometheus --with-alertmanager   # the full stack,
#       with Debian's prometheus and prometheus-alertmanager on PATH
#   ./deploy/demo.sh --help
# Needs only the Rust toolchain and a POSIX shell.
set -eu
cd "$(dirname "$0")/.."
echo "building the release binaries (the first build takes a few minutes)..." >&2
cargo build --release -p emitter -p watchdog -p e2e
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
EMITTER_BIN="${EMITTER_BIN:-$target_dir/release/emitter}"
WATCHDOG_BIN="${WATCHDOG_BIN:-$target_dir/release/watchdog}"
export EMITTER_BIN WATCHDOG_BIN
exec "$target_dir/release/demo" "$@"
