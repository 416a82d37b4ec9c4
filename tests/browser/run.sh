#!/usr/bin/env bash
# Starts `custos demo` on a fresh data directory and a free port, waits until its history is in,
# runs the browser test against it, and stops it. Usage: run.sh PATH_TO_CUSTOS_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d)"
chmod 700 "$work"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" demo --data-dir "$work/data" --listen "127.0.0.1:$port" --history-hours 48 >"$work/demo.log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 600); do
  grep -q 'Custos demo is running' "$work/demo.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/demo.log"; echo "demo exited early"; exit 1; }
  sleep 0.2
done
grep -q 'Custos demo is running' "$work/demo.log" || { cat "$work/demo.log"; echo "demo did not come up"; exit 1; }
node "$here/ui.mjs" "http://127.0.0.1:$port" "$work/data/bootstrap-token" "${SCREENSHOT_DIR:-$here/../../target/browser}"
