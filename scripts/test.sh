#!/usr/bin/env bash
# The one command that runs every Custos test on a fresh machine of this kind.
# It installs what the tests need, starts the services they talk to, then runs:
#   format check, clippy (all targets, warnings are errors), the whole test suite on SQLite and
#   PostgreSQL, the Python client's tests against a real server, the benchmarks' compilation, and
#   the browser test of the web UI in Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pg_dump >/dev/null 2>&1 || need_apt+=(postgresql-client)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
# OpenLDAP for the LDAP sign-in tests (crates/custos-server/tests/ldap.rs), which run their own
# slapd per test in a temp dir on a free loopback port; the system instance is never used.
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need_apt+=(slapd)
command -v ldapmodify >/dev/null 2>&1 || need_apt+=(ldap-utils)
# SoftHSM2 (a software PKCS#11 token) and OpenSC's pkcs11-tool for the HSM key-provider tests
# (crates/custos-crypto/tests/pkcs11_softhsm.rs, crates/custos/tests/keys_hsm.rs); in CI they fail
# rather than skip when these are missing.
command -v softhsm2-util >/dev/null 2>&1 || need_apt+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need_apt+=(opensc)
# Prometheus for the scrape test (crates/custos-server/tests/prometheus.rs), which runs its own
# prometheus process per test in a temp dir on a free loopback port; the packaged service is
# never used (and is kept from starting during the install, below).
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need_apt+=(prometheus)
# A local SMTP server for the e-mail alert test (crates/custos-server/tests/alerts.rs), which runs
# Debian's aiosmtpd with the system interpreter per test on a free loopback port, STARTTLS required.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_apt+=(python3-aiosmtpd)
# A venv for the Python client's tests (clients/python); Debian's python3 needs python3-venv for it.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  # Tell slapd's postinst to create no database of its own (so no system slapd starts).
  echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
  # No packaged service is needed (the tests start their own slapd and prometheus): forbid
  # service starts for the install (policy-rc.d exit 101), unless the machine has its own policy.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
  fi
  install_rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null \
    || install_rc=$?
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  [ "$install_rc" = 0 ] || exit "$install_rc"
fi

log "PostgreSQL on 127.0.0.1:5432"
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.1; done
fi
pg_isready -h 127.0.0.1 -p 5432
export CUSTOS_TEST_POSTGRES_URL="${CUSTOS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

log "browser test dependencies (npm playwright-core, driving Debian's Chromium)"
( cd tests/browser && { [ -d node_modules/playwright-core ] || npm install --no-audit --no-fund --silent; } )

# The OpenID provider for the single sign-on tests (crates/custos-server/tests/oidc.rs and the
# browser test), which start their own instance per test on a free loopback port.
log "OpenID provider for the sign-on tests (npm oidc-provider, from its lock file)"
( cd tests/oidc && { [ -d node_modules/oidc-provider ] || npm ci --no-audit --no-fund --silent; } )

log "supply chain: cargo deny (advisories from the offline RustSec snapshot, licences, bans)"
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --quiet
snapshot="${CUSTOS_ADVISORY_DB:-../shared/advisory-db}"
db=target/advisory-dbs/advisory-db-3157b0e258782691
rm -rf "$db" && mkdir -p "$(dirname "$db")" && cp -r "$snapshot" "$db" && chmod -R u+w "$db"
git -C "$db" init -q && git -C "$db" add -A \
  && git -C "$db" -c user.email=ci@localhost -c user.name=ci commit -qm snapshot
# cargo deny reads the metadata of every package in the lock file, for every platform; fetch them
# all first (a build downloads only this platform's), so the offline check does not stop at a
# Windows-only crate missing from the local cache.
cargo fetch --locked --quiet
cargo deny --offline check advisories bans licenses sources

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "cargo test (SQLite and PostgreSQL)"
cargo test --workspace --locked

# The Python client against the `custos` binary that cargo test just built: pinned test
# dependencies (clients/python/requirements-test.txt) in a venv under target/.
log "Python client tests (clients/python, pytest against a real custos serve)"
[ -x target/pyclient-venv/bin/python ] || python3 -m venv target/pyclient-venv
target/pyclient-venv/bin/pip install --quiet --disable-pip-version-check \
  -r clients/python/requirements-test.txt "./clients/python[pandas]"
CUSTOS_BIN="$PWD/target/debug/custos" target/pyclient-venv/bin/python -m pytest -q \
  -p no:cacheprovider clients/python/tests

log "benchmarks compile"
cargo bench --workspace --locked --no-run

log "browser test: sign in to the demo with the one-time secret"
cargo build --locked -p custos
tests/browser/run.sh target/debug/custos

log "all tests passed"
