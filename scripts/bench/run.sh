#!/usr/bin/env bash
# Custos vs Evidently (drift report) and whylogs (profiling) on the same data, in one run.
#
#   scripts/bench/run.sh
#
# Builds the Rust benches, creates the Python venvs if needed (pinned versions), generates the
# table once (target/bench-data/, not committed), waits for a quiet machine, runs Custos and the
# peers one after the other and prints a comparison table with ratios. Everything it measured is
# left in target/bench-results/ (JSON, criterion estimates, /usr/bin/time output, table.txt).
# See scripts/bench/README.md for what each number includes.
#
# Environment (all optional):
#   BENCH_ROWS=1000000           rows of the reference and of the current table
#   BENCH_MAX_LOAD=1.0           wait until the 1-minute load average is below this ('' = don't)
#   BENCH_WAIT_SECS=1800         ... but at most this long, then measure anyway (and say so)
#   BENCH_EVIDENTLY_REPEAT=1     Evidently reports to time (each ~1-2 minutes at 1M rows)
#   BENCH_WHYLOGS_REPEAT=3       whylogs profiling runs to time
#   BENCH_VENV=/tmp/benchvenv                  venv for Evidently (requirements.txt)
#   BENCH_VENV_WHYLOGS=/tmp/benchvenv-whylogs  venv for whylogs (requirements-whylogs.txt);
#                                              whylogs 1.6.4 needs numpy < 2, Evidently 0.7 a
#                                              newer scipy stack, hence two venvs
#   BENCH_PYTHON=python3         interpreter that creates the venvs (3.11 tested)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
here=$root/scripts/bench

rows=${BENCH_ROWS:-1000000}
max_load=${BENCH_MAX_LOAD-1.0}
wait_secs=${BENCH_WAIT_SECS:-1800}
ev_repeat=${BENCH_EVIDENTLY_REPEAT:-1}
wl_repeat=${BENCH_WHYLOGS_REPEAT:-3}
venv=${BENCH_VENV:-/tmp/benchvenv}
wl_venv=${BENCH_VENV_WHYLOGS:-/tmp/benchvenv-whylogs}
python=${BENCH_PYTHON:-python3}
out=$root/target/bench-results
export CUSTOS_BENCH_DATA=${CUSTOS_BENCH_DATA:-$root/target/bench-data}
export CRITERION_HOME=$out/criterion
export WHYLOGS_NO_ANALYTICS=True ITERATIVE_DO_NOT_TRACK=1 DO_NOT_TRACK=1

log() { printf '\n==> %s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
for tool in jq /usr/bin/time cargo "$python"; do
  command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done
mkdir -p "$out"

# --- 1. Python peers, pinned, each in its own venv ---------------------------------------------
ensure_venv() { # dir requirements-file
  local dir=$1 req=$2
  if [ -x "$dir/bin/python" ] && cmp -s "$req" "$dir/.bench-requirements"; then return; fi
  log "creating $dir from $(basename "$req")"
  "$python" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip
  "$dir/bin/pip" install -q -r "$req"
  cp "$req" "$dir/.bench-requirements"
}
ensure_venv "$venv" "$here/requirements.txt"
ensure_venv "$wl_venv" "$here/requirements-whylogs.txt"

# --- 2. Rust benches (built before anything is timed) ------------------------------------------
log "building the custos-stats benches (release)"
exes=$(cargo bench -p custos-stats --bench drift_report --bench profiling --no-run \
  --message-format=json 2>/dev/null \
  | jq -r 'select(.reason == "compiler-artifact" and .executable != null)
           | "\(.target.name) \(.executable)"')
drift_exe=$(awk '$1 == "drift_report" { print $2 }' <<<"$exes")
prof_exe=$(awk '$1 == "profiling" { print $2 }' <<<"$exes")
[ -x "$drift_exe" ] && [ -x "$prof_exe" ] || { echo "bench build failed" >&2; exit 1; }

# --- 3. The table, generated once --------------------------------------------------------------
log "benchmark data: $rows rows per side in $CUSTOS_BENCH_DATA"
"$venv/bin/python" "$here/peers.py" gen --rows "$rows" --out "$CUSTOS_BENCH_DATA" >"$out/gen.json"
log "stored profiles (to_bytes) for the drift report"
CUSTOS_BENCH_ONESHOT=store "$drift_exe" >/dev/null

# --- 4. A quiet machine ------------------------------------------------------------------------
if [ -n "$max_load" ]; then
  deadline=$((SECONDS + wait_secs))
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    awk -v l="$load" -v m="$max_load" 'BEGIN { exit !(l < m) }' && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "load average $load still >= $max_load after ${wait_secs}s: measuring anyway"
      break
    fi
    log "load average $load >= $max_load: waiting (up to ${wait_secs}s)"
    sleep 30
  done
fi
load_before=$(loadavg)
log "measuring; load average: $load_before"

# --- 5. Custos ---------------------------------------------------------------------------------
maxrss() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }
log "Custos: drift report, one shot (/usr/bin/time -v)"
CUSTOS_BENCH_ONESHOT=report /usr/bin/time -v -o "$out/custos_report.time" "$drift_exe" \
  >"$out/custos_report.raw.json"
jq --argjson rss "$(maxrss "$out/custos_report.time")" '. + {time_v_maxrss_kib: $rss}' \
  "$out/custos_report.raw.json" >"$out/custos_report.json"
log "Custos: profiling, one shot (/usr/bin/time -v)"
CUSTOS_BENCH_ONESHOT=profile /usr/bin/time -v -o "$out/custos_profiling.time" "$prof_exe" \
  >"$out/custos_profiling.raw.json"
jq --argjson rss "$(maxrss "$out/custos_profiling.time")" '. + {time_v_maxrss_kib: $rss}' \
  "$out/custos_profiling.raw.json" >"$out/custos_profiling.json"
log "Custos: criterion drift_report"
"$drift_exe" --bench 2>&1 | tee "$out/criterion_drift_report.log" | grep -E "time:|thrpt:|^drift" >&2
log "Custos: criterion profiling"
"$prof_exe" --bench 2>&1 | tee "$out/criterion_profiling.log" | grep -E "time:|thrpt:|^profiling" >&2
estimate() { jq '{median_ns: .median.point_estimate, mean_ns: .mean.point_estimate}' \
  "$CRITERION_HOME/$1/new/estimates.json"; }
jq -n --argjson d "$(estimate drift_report/20_features_from_bytes)" \
  --argjson p "$(estimate profiling/20_features_column_major)" \
  --argjson r "$(estimate profiling/20_features_row_major)" \
  '{drift_report: $d, profiling: $p, profiling_row_major: $r}' >"$out/criterion.json"
load_mid=$(loadavg)

# --- 6. Peers, each in its own process ---------------------------------------------------------
log "Evidently: DataDriftPreset report ($ev_repeat run(s))"
"$venv/bin/python" "$here/peers.py" evidently --data "$CUSTOS_BENCH_DATA" --repeat "$ev_repeat" \
  >"$out/evidently.json"
log "whylogs: why.log(pandas=df) ($wl_repeat run(s))"
"$wl_venv/bin/python" "$here/peers.py" whylogs --data "$CUSTOS_BENCH_DATA" --repeat "$wl_repeat" \
  >"$out/whylogs.json"
load_after=$(loadavg)

# --- 7. The comparison -------------------------------------------------------------------------
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- crates/custos-stats 2>/dev/null || rev="$rev+local changes"
jq -n --arg date "$(date -u '+%Y-%m-%d %H:%M UTC')" \
  --arg cpu "$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)" \
  --arg cores "$(nproc)" --arg mem "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)" \
  --arg rustc "$(rustc --version)" --arg rev "$rev" \
  --arg lb "$load_before" --arg lm "$load_mid" --arg la "$load_after" \
  '{date: $date, cpu: $cpu, cores: $cores, memory: $mem, rustc: $rustc, custos_rev: $rev,
    load_before: $lb, load_mid: $lm, load_after: $la}' >"$out/env.json"
"$venv/bin/python" "$here/peers.py" table --results "$out" | tee "$out/table.txt"
