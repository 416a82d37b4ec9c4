#!/usr/bin/env python3
"""Benchmark data generator and the Python peers (Evidently, whylogs) for `scripts/bench/run.sh`.

Subcommands (each prints one JSON object on stdout, progress on stderr):

  gen        Generates the benchmark table once with numpy (seeded) and writes
             `reference.csv` and `current.csv` into the data directory (target/bench-data/, not
             committed). Both the Rust benches (crates/custos-stats/benches/) and the peers read
             these files, so every tool sees exactly the same values. Skipped when the files
             already exist for the same rows/seed/schema version.
  evidently  Evidently's DataDriftPreset report on reference vs current (two pandas DataFrames).
  whylogs    `why.log(pandas=df)` on the reference table; rows per second.
  table      Prints the comparison table from the JSON results of run.sh.

The table: 20 columns, 12 numeric (`num_*`, different shapes, two of them integers, one with 5 %
missing values), 6 categorical (`cat_*`, 3 to 5,000 distinct values; `cat_5000` has more than
1,000 distinct values, so Custos keeps it in sketch mode; `cat_800` has 2 % missing values) and
2 boolean (`bool_*`). The current table is drawn with a different seed and 5 features shifted
(`num_normal`, `num_exponential`, `num_zero_inflated`, `cat_12`, `bool_churn`), far enough above
the default thresholds that sketch error cannot flip a verdict.

CSV conventions (the Rust loader relies on them and checks them): no quoting, no commas inside
values, an empty field is a missing value, booleans are `true` / `false`, floats are written in
shortest round-trip form (checked here by reading the file back and comparing bit for bit).

Peak memory: each peer runs in its own process. It reports `ru_maxrss` of the whole process
(interpreter + imports + CSV load + the timed work), the RSS right after loading the data, and
the peak RSS of the timed work alone (the kernel's high-water mark is reset through
/proc/self/clear_refs just before it and read from /proc/self/status after it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

# No usage telemetry from the peers (whylogs sends usage events by default; Evidently's telemetry
# library honours ITERATIVE_DO_NOT_TRACK); set before they are imported.
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
os.environ.setdefault("ITERATIVE_DO_NOT_TRACK", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

SCHEMA_VERSION = 1
DEFAULT_ROWS = 1_000_000
DEFAULT_SEED = 20_240_601


def log(msg: str) -> None:
    print(f"[peers] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Memory helpers (Linux)


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory(phase_peak_valid: bool) -> dict:
    return {
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "phase_peak_kib": _status_kib("VmHWM") if phase_peak_valid else None,
    }


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------------------------------------
# Data


def generate(rng, n: int, current: bool) -> dict:
    """One table as {column name: numpy array or pyarrow-ready list}; `current` shifts 5 features."""
    import numpy as np

    def categorical(prefix: str, k: int, p) -> "np.ndarray":
        labels = np.array([f"{prefix}_{i:04d}" for i in range(k)], dtype=object)
        return labels[rng.choice(k, size=n, p=p)]

    def zipf_p(k: int, s: float, offset: float = 1.0) -> "np.ndarray":
        w = 1.0 / (np.arange(k) + offset) ** s
        return w / w.sum()

    cols: dict = {}
    # --- 12 numeric
    cols["num_normal"] = rng.normal(55.0 if current else 50.0, 10.0, n)
    cols["num_lognormal"] = rng.lognormal(3.0, 1.0, n)
    cols["num_uniform"] = rng.uniform(0.0, 1000.0, n)
    cols["num_exponential"] = rng.exponential(2.6 if current else 2.0, n)
    cols["num_poisson"] = rng.poisson(4.0, n).astype(np.int64)
    mix = rng.random(n) < 0.6
    cols["num_bimodal"] = np.where(mix, rng.normal(-2.0, 0.5, n), rng.normal(3.0, 1.0, n))
    cols["num_pareto"] = (rng.pareto(2.5, n) + 1.0) * 10.0
    cols["num_beta"] = rng.beta(2.0, 5.0, n)
    zero = rng.random(n) < (0.6 if current else 0.7)
    cols["num_zero_inflated"] = np.where(zero, 0.0, rng.gamma(2.0, 50.0, n))
    cols["num_age"] = np.clip(np.rint(rng.triangular(18, 35, 90, n)), 18, 90).astype(np.int64)
    cols["num_student_t"] = rng.standard_t(3.0, n)
    with_missing = rng.normal(0.0, 1.0, n)
    with_missing[rng.random(n) < 0.05] = np.nan
    cols["num_with_missing"] = with_missing
    # --- 6 categorical
    cols["cat_3"] = categorical("c3", 3, [0.5, 0.3, 0.2])
    p12 = zipf_p(12, 1.0)
    cols["cat_12"] = categorical("c12", 12, p12[::-1] / p12.sum() if current else p12)
    cols["cat_50"] = categorical("c50", 50, zipf_p(50, 1.2))
    cols["cat_200"] = categorical("c200", 200, None)
    c800 = categorical("c800", 800, zipf_p(800, 0.8))
    c800[rng.random(n) < 0.02] = None
    cols["cat_800"] = c800
    cols["cat_5000"] = categorical("id", 5000, zipf_p(5000, 0.9, offset=10.0))
    # --- 2 boolean
    cols["bool_flag"] = rng.random(n) < 0.3
    cols["bool_churn"] = rng.random(n) < (0.20 if current else 0.05)
    return cols


def column_types():
    import pyarrow as pa

    types = {}
    for name in COLUMNS:
        if name in ("num_poisson", "num_age"):
            types[name] = pa.int64()
        elif name.startswith("num_"):
            types[name] = pa.float64()
        elif name.startswith("cat_"):
            types[name] = pa.string()
        else:
            types[name] = pa.bool_()
    return types


COLUMNS = [
    "num_normal", "num_lognormal", "num_uniform", "num_exponential", "num_poisson",
    "num_bimodal", "num_pareto", "num_beta", "num_zero_inflated", "num_age", "num_student_t",
    "num_with_missing",
    "cat_3", "cat_12", "cat_50", "cat_200", "cat_800", "cat_5000",
    "bool_flag", "bool_churn",
]  # fmt: skip


def read_arrow(path: Path):
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(column_types=column_types(), strings_can_be_null=True)
    return pcsv.read_csv(path, convert_options=convert)


def read_pandas(path: Path):
    """The table as a pandas DataFrame: float64 / int64 / bool / object (str or None)."""
    return read_arrow(path).to_pandas()


def cmd_gen(args) -> dict:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {"schema_version": SCHEMA_VERSION, "rows": args.rows, "seed": args.seed,
                "columns": COLUMNS, "numpy": np.__version__}
    manifest_path = out / "manifest.json"
    files = [out / "reference.csv", out / "current.csv"]
    if manifest_path.exists() and all(f.exists() for f in files):
        old = json.loads(manifest_path.read_text())
        if all(old.get(k) == manifest[k] for k in ("schema_version", "rows", "seed", "columns")):
            log(f"data up to date in {out}")
            return {"data": str(out), "generated": False, **old}
    manifest_path.unlink(missing_ok=True)
    types = column_types()
    for i, path in enumerate(files):
        rng = np.random.default_rng([args.seed, i])
        cols = generate(rng, args.rows, current=(i == 1))
        # from_pandas=True: NaN becomes null, written as an empty field (a missing value).
        table = pa.table(
            {name: pa.array(cols[name], type=types[name], from_pandas=True) for name in COLUMNS}
        )
        log(f"writing {path} ({args.rows} rows)")
        pcsv.write_csv(table, path, write_options=pcsv.WriteOptions(quoting_style="none"))
        back = read_arrow(path)
        if not back.equals(table):
            raise SystemExit(f"{path}: CSV round trip changed values")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return {"data": str(out), "generated": True, **manifest}


# ---------------------------------------------------------------------------------------------
# Peers


def cmd_evidently(args) -> dict:
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    data = Path(args.data)
    t0 = time.perf_counter()
    reference = read_pandas(data / "reference.csv")
    current = read_pandas(data / "current.csv")
    load_s = time.perf_counter() - t0
    rss_loaded = _status_kib("VmRSS")
    log(f"evidently {evidently.__version__}: loaded {len(reference)} + {len(current)} rows "
        f"in {load_s:.1f} s")
    definition = DataDefinition(
        numerical_columns=[c for c in COLUMNS if c.startswith("num_")],
        categorical_columns=[c for c in COLUMNS if not c.startswith("num_")],
    )
    runs = []
    features = None
    dataset = None
    valid = reset_peak()
    for i in range(args.repeat):
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        ref_ds = Dataset.from_pandas(reference, data_definition=definition)
        cur_ds = Dataset.from_pandas(current, data_definition=definition)
        t1 = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=cur_ds, reference_data=ref_ds)
        t2 = time.perf_counter()
        result = snapshot.dict()
        t3 = time.perf_counter()
        runs.append({"total_s": t3 - t0, "datasets_s": t1 - t0, "run_s": t2 - t1,
                     "dict_s": t3 - t2, "cpu_s": cpu_seconds() - c0})
        log(f"evidently run {i + 1}/{args.repeat}: {t3 - t0:.2f} s")
        features, dataset = parse_evidently(result)
    return {
        "peer": "evidently",
        "versions": {"evidently": evidently.__version__, "pandas": pd.__version__,
                     **numeric_versions()},
        "rows": {"reference": len(reference), "current": len(current)},
        "load_s": load_s,
        "runs": runs,
        "rss_after_load_kib": rss_loaded,
        **memory(valid),
        "features": features,
        "dataset": dataset,
    }


def parse_evidently(result: dict):
    features = {}
    dataset = None
    for m in result.get("metrics", []):
        cfg = m.get("config", {})
        kind = cfg.get("type", "")
        if kind.endswith("ValueDrift"):
            method = cfg.get("method", "")
            value = m.get("value")
            threshold = cfg.get("threshold")
            p_value_test = "p_value" in method.lower() or "test" in method.lower()
            drifted = None
            if value is not None and threshold is not None:
                value, threshold = float(value), float(threshold)  # numpy scalars -> JSON numbers
                drifted = bool(value < threshold if p_value_test else value >= threshold)
            features[cfg.get("column")] = {"method": method, "statistic": value,
                                           "threshold": threshold, "drifted": drifted}
        elif kind.endswith("DriftedColumnsCount"):
            dataset = m.get("value")
    return features, dataset


def numeric_versions() -> dict:
    import numpy as np
    import pyarrow as pa

    return {"numpy": np.__version__, "pyarrow": pa.__version__,
            "python": sys.version.split()[0]}


def cmd_whylogs(args) -> dict:
    import pandas as pd
    import whylogs
    import whylogs as why

    data = Path(args.data)
    t0 = time.perf_counter()
    df = read_pandas(data / "reference.csv")
    load_s = time.perf_counter() - t0
    rss_loaded = _status_kib("VmRSS")
    log(f"whylogs {whylogs.__version__}: loaded {len(df)} rows in {load_s:.1f} s")
    runs = []
    valid = reset_peak()
    for i in range(args.repeat):
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        results = why.log(pandas=df)
        view = results.view()
        elapsed = time.perf_counter() - t0
        runs.append({"total_s": elapsed, "cpu_s": cpu_seconds() - c0,
                     "rows_per_s": len(df) / elapsed})
        log(f"whylogs run {i + 1}/{args.repeat}: {elapsed:.2f} s, {len(df) / elapsed:,.0f} rows/s")
    columns = len(view.get_columns())
    return {
        "peer": "whylogs",
        "versions": {"whylogs": whylogs.__version__, "pandas": pd.__version__,
                     **numeric_versions()},
        "rows": len(df),
        "columns_profiled": columns,
        "load_s": load_s,
        "runs": runs,
        "rss_after_load_kib": rss_loaded,
        **memory(valid),
    }


# ---------------------------------------------------------------------------------------------
# Comparison table


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return float("nan")
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:,.0f} MiB"


def cmd_table(args) -> dict:
    d = Path(args.results)
    load = lambda name: json.loads((d / name).read_text())  # noqa: E731
    ev = load("evidently.json")
    wl = load("whylogs.json")
    cr = load("custos_report.json")
    cp = load("custos_profiling.json")
    crit = load("criterion.json")
    env = load("env.json")

    ev_s = median([r["total_s"] for r in ev["runs"]])
    ev_run = median([r["run_s"] for r in ev["runs"]])
    ev_cpu = median([r["cpu_s"] for r in ev["runs"]])
    cu_report_s = crit["drift_report"]["median_ns"] * 1e-9
    wl_rps = median([r["rows_per_s"] for r in wl["runs"]])
    wl_cpu_share = median([r["cpu_s"] / r["total_s"] for r in wl["runs"]])
    rows = cp["rows"]
    cu_rps = rows / (crit["profiling"]["median_ns"] * 1e-9)

    out = []
    p = out.append
    p("")
    p(f"Custos vs peers — {env['date']} — {env['cpu']}, {env['cores']} cores, {env['memory']}")
    p(f"load average (1/5/15 min) before Custos: {env['load_before']}; before the peers: "
      f"{env['load_mid']}; at the end: {env['load_after']}")
    p(f"table: {ev['rows']['reference']:,} reference + {ev['rows']['current']:,} current rows, "
      "20 features (12 numeric, 6 categorical, 2 boolean)")
    p("")
    w = [44, 22, 22, 16]
    line = lambda *c: p("".join(str(x).ljust(n) for x, n in zip(c, w)).rstrip())  # noqa: E731
    line("metric", "Custos", "peer", "ratio")
    line("-" * 42, "-" * 20, "-" * 20, "-" * 14)
    line("drift report, 20 features (median)", f"{cu_report_s * 1e3:.2f} ms",
         f"{ev_s:.1f} s (Evidently)", f"{ev_s / cu_report_s:,.0f}x faster")
    line("  target", "<= 50 ms", "", "met" if cu_report_s <= 0.05 else "MISSED")
    line("  Evidently Report.run alone", "", f"{ev_run:.1f} s", "")
    line("drift report peak RSS, whole process", mib(cr.get("time_v_maxrss_kib")),
         mib(ev["ru_maxrss_kib"]), "")
    line("drift report peak RSS, report phase only", mib(cr["phase_peak_kib"]),
         mib(ev["phase_peak_kib"]), "")
    line("  RSS before the report (data loaded)", mib(cr["rss_after_load_kib"]),
         mib(ev["rss_after_load_kib"]), "")
    line("profiling throughput (median, 1 thread)", f"{cu_rps:,.0f} rows/s",
         f"{wl_rps:,.0f} rows/s (whylogs)", f"{cu_rps / wl_rps:,.1f}x faster")
    line("  target", ">= 2,000,000 rows/s", "", "met" if cu_rps >= 2e6 else "MISSED")
    line("  CPU time / wall time", "1.00 (single thread)", f"{wl_cpu_share:.2f}", "")
    if "profiling_row_major" in crit:
        rm = rows / (crit["profiling_row_major"]["median_ns"] * 1e-9)
        line("  Custos row by row (as on ingest)", f"{rm:,.0f} rows/s", "", "")
    line("profiling peak RSS, whole process", mib(cp.get("time_v_maxrss_kib")),
         mib(wl["ru_maxrss_kib"]), "")
    line("profiling peak RSS, profiling phase only", mib(cp["phase_peak_kib"]),
         mib(wl["phase_peak_kib"]), "")
    line("  RSS before profiling (table loaded)", mib(cp["rss_after_load_kib"]),
         mib(wl["rss_after_load_kib"]), "")
    p("")
    p(f"Evidently CPU time per report: {ev_cpu:.1f} s; runs: "
      + ", ".join(f"{r['total_s']:.1f} s" for r in ev["runs"]))
    p("whylogs runs: " + ", ".join(f"{r['rows_per_s']:,.0f} rows/s" for r in wl["runs"]))
    p(f"Custos one-shot (cold, outside criterion): report {cr['report_ms']:.2f} ms, "
      f"profiling {cp['rows_per_s']:,.0f} rows/s")
    p("")
    p("per-feature verdicts (Custos default rule vs Evidently DataDriftPreset):")
    p(f"  {'feature':<18}{'Custos method':<16}{'stat':>9} {'drift':<7}"
      f"{'Evidently method':<34}{'stat':>9} {'drift':<6}")
    agree = 0
    for f in cr["features"]:
        e = (ev.get("features") or {}).get(f["feature"], {})
        same = e.get("drifted") == f["drifted"]
        agree += same
        p(f"  {f['feature']:<18}{f['method']:<16}{f['statistic']:>9.4f} {str(f['drifted']):<7}"
          f"{str(e.get('method', '?'))[:33]:<34}{float(e.get('statistic', float('nan'))):>9.4f} "
          f"{str(e.get('drifted')):<6}{'' if same else '  <- differs'}")
    p(f"  verdicts agree on {agree}/{len(cr['features'])} features; dataset drift share: Custos "
      f"{cr['dataset']['share']:.2f}, Evidently {(ev.get('dataset') or {}).get('share', '?')}")
    p("")
    p("versions: Custos " + env["custos_rev"] + ", rustc " + env["rustc"] + "; "
      + ", ".join(f"{k} {v}" for k, v in ev["versions"].items()) + "; whylogs env: "
      + ", ".join(f"{k} {v}" for k, v in wl["versions"].items()))
    print("\n".join(out))
    summary = {"custos_report_ms": cu_report_s * 1e3, "evidently_s": ev_s,
            "report_ratio": ev_s / cu_report_s, "custos_rows_per_s": cu_rps,
            "whylogs_rows_per_s": wl_rps, "profiling_ratio": cu_rps / wl_rps}
    (d / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    g.add_argument("--seed", type=int, default=DEFAULT_SEED)
    g.add_argument("--out", default="target/bench-data")
    e = sub.add_parser("evidently")
    e.add_argument("--data", default="target/bench-data")
    e.add_argument("--repeat", type=int, default=1)
    w = sub.add_parser("whylogs")
    w.add_argument("--data", default="target/bench-data")
    w.add_argument("--repeat", type=int, default=3)
    t = sub.add_parser("table")
    t.add_argument("--results", required=True)
    args = ap.parse_args()
    result = {"gen": cmd_gen, "evidently": cmd_evidently, "whylogs": cmd_whylogs,
              "table": cmd_table}[args.cmd](args)
    if result is not None:
        json.dump(result, sys.stdout, default=str)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
