#!/usr/bin/env bash
# Starts a real OpenID provider (tests/oidc) and `custos demo` (configured to sign in through it)
# on fresh state and free ports, waits until the demo's history is in, runs the browser test
# against it, and stops both. Usage: run.sh PATH_TO_CUSTOS_BINARY
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(mktemp -d)"
chmod 700 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
oidc_port=$(free_port)

# The provider reads its people from this file at every sign-in; ui.mjs changes their groups.
export OIDC_USERS_FILE="$work/idp-users.json"
echo '{}' >"$OIDC_USERS_FILE"
printf 'demo-client-secret\n' >"$work/oidc-client-secret"
OIDC_PORT=$oidc_port RP_REDIRECT="http://127.0.0.1:$port/ui/oidc/callback" \
  OIDC_CLIENT_SECRET=demo-client-secret node "$here/../oidc/provider.mjs" >"$work/idp.log" 2>&1 &
idp_pid=$!

cat >"$work/custos.toml" <<TOML
[oidc]
issuer = "http://127.0.0.1:$oidc_port"
client_id = "custos"
client_secret_file = "$work/oidc-client-secret"
redirect_url = "http://127.0.0.1:$port/ui/oidc/callback"
display_name = "Test IdP"
allow_plaintext_loopback = true
[oidc.group_roles]
ml-team = [{ role = "data-scientist", model = "demo-fraud" }]
compliance = [{ role = "auditor", model = "*" }]
TOML

"$bin" demo --config "$work/custos.toml" --data-dir "$work/data" --listen "127.0.0.1:$port" \
  --history-hours 48 >"$work/demo.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" "$idp_pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  wait "$idp_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q 'oidc-provider ready' "$work/idp.log" && break; sleep 0.1; done
grep -q 'oidc-provider ready' "$work/idp.log" || { cat "$work/idp.log"; echo "the OpenID provider did not come up"; exit 1; }
for _ in $(seq 600); do
  grep -q 'Custos demo is running' "$work/demo.log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/demo.log"; echo "demo exited early"; exit 1; }
  sleep 0.2
done
grep -q 'Custos demo is running' "$work/demo.log" || { cat "$work/demo.log"; echo "demo did not come up"; exit 1; }
node "$here/ui.mjs" "http://127.0.0.1:$port" "$work/data/bootstrap-token" "${SCREENSHOT_DIR:-$here/../../target/browser}"
