//! Drift report over 20 features from stored profiles: the server's drift endpoint minus IO.
//!
//! Owns: the `drift_report` criterion bench and its one-shot modes for `scripts/bench/run.sh`.
//! Must not: assert correctness (tests do), generate data (`scripts/bench/peers.py gen` does, so
//! Evidently gets the same table), or time anything but the report itself.
//!
//! Setup, outside the timed loop: read `reference.csv` and `current.csv` (1,000,000 rows each by
//! default; see `support/table.rs`), profile each of the 20 columns (12 numeric, 6 categorical
//! incl. `cat_5000` in sketch mode, 2 boolean) and encode every profile with
//! [`FeatureProfile::to_bytes`], i.e. as stored.
//!
//! Timed: for each feature, decode both sides with [`FeatureProfile::from_bytes`] (what the
//! server does after decrypting a stored profile; decryption, storage reads and the merge of
//! hourly profiles into one are not part of this bench), choose the statistic with
//! [`MethodChoice::for_column`] (inputs computed like `rule_inputs` in
//! `custos-server/src/drift.rs`), run it, compute the chart bins with [`compare`], then the
//! dataset verdict with [`dataset_drift`] over the default-rule verdicts.
//!
//! Modes (environment variable `CUSTOS_BENCH_ONESHOT`):
//! * unset: the criterion bench `drift_report/20_features_from_bytes`.
//! * `store`: profile the CSV files and write the 40 encoded profiles to
//!   `<data>/profiles/{reference,current}/<feature>.csp`.
//! * `report`: read those files, run the report once, print a JSON line (time, per-feature
//!   verdicts, memory) on stdout. Run under `/usr/bin/time -v` for the process's peak RSS.

#[path = "support/table.rs"]
mod table;

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::Criterion;
use custos_stats::{
    DEFAULT_DRIFT_SHARE, DatasetDrift, DriftThresholds, FeatureDrift, FeatureProfile, MethodChoice,
    StatsError, TestResult, compare, dataset_drift,
};
use table::fail;

/// One feature's stored profiles.
struct Stored {
    name: String,
    reference: Vec<u8>,
    current: Vec<u8>,
}

/// The report's output: per feature the default-rule result and the chart bins (whose `drifted`
/// is replaced by the default rule's verdict, as the server reports it), then the dataset verdict.
struct Report {
    features: Vec<(TestResult, FeatureDrift)>,
    dataset: DatasetDrift,
}

/// Non-missing reference count and distinct count of reference ∪ current, as the server feeds
/// them to the default rule.
fn rule_inputs(reference: &FeatureProfile, current: &FeatureProfile) -> (u64, u64) {
    match (reference, current) {
        (FeatureProfile::Numeric(r), _) => (r.finite(), 0),
        (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => {
            let distinct = if r.is_exact() && c.is_exact() {
                let names: BTreeSet<String> = r
                    .category_counts()
                    .into_iter()
                    .chain(c.category_counts())
                    .map(|(name, _)| name)
                    .collect();
                names.len() as u64
            } else {
                r.distinct_estimate().max(c.distinct_estimate())
            };
            (r.present(), distinct)
        }
        (FeatureProfile::Categorical(r), _) => (r.present(), 0),
    }
}

/// The timed part.
fn report(stored: &[Stored]) -> Result<Report, StatsError> {
    let thresholds = DriftThresholds::default();
    let mut features = Vec::with_capacity(stored.len());
    for s in stored {
        let reference = FeatureProfile::from_bytes(&s.reference)?;
        let current = FeatureProfile::from_bytes(&s.current)?;
        let (count, distinct) = rule_inputs(&reference, &current);
        let choice = MethodChoice::for_column(reference.kind(), count, distinct);
        let result = choice.run(&reference, &current)?;
        let mut bins = compare(&reference, &current, &thresholds)?;
        bins.drifted = result.drifted;
        features.push((result, bins));
    }
    let verdicts: Vec<FeatureDrift> = features.iter().map(|(_, b)| b.clone()).collect();
    let dataset = dataset_drift(&verdicts, DEFAULT_DRIFT_SHARE);
    Ok(Report { features, dataset })
}

/// Profiles both CSV files and encodes every profile as stored.
fn build(dir: &Path) -> Result<Vec<Stored>, String> {
    let started = Instant::now();
    let reference = table::load(&dir.join("reference.csv"))?;
    let current = table::load(&dir.join("current.csv"))?;
    let r_profiles = table::profile_table(&reference);
    let c_profiles = table::profile_table(&current);
    let stored: Vec<Stored> = reference
        .columns
        .iter()
        .zip(r_profiles.iter().zip(&c_profiles))
        .map(|(col, (r, c))| Stored {
            name: col.name.clone(),
            reference: r.to_bytes(),
            current: c.to_bytes(),
        })
        .collect();
    let bytes: usize = stored
        .iter()
        .map(|s| s.reference.len() + s.current.len())
        .sum();
    eprintln!(
        "setup: {} + {} rows, {} features, {} stored profile bytes, {:.1} s",
        reference.rows,
        current.rows,
        stored.len(),
        bytes,
        started.elapsed().as_secs_f64()
    );
    Ok(stored)
}

fn profiles_dir(dir: &Path) -> std::path::PathBuf {
    dir.join("profiles")
}

fn store(dir: &Path) -> Result<(), String> {
    let stored = build(dir)?;
    let out = profiles_dir(dir);
    let mut names = Vec::new();
    for side in ["reference", "current"] {
        std::fs::create_dir_all(out.join(side)).map_err(|e| e.to_string())?;
    }
    for s in &stored {
        for (side, bytes) in [("reference", &s.reference), ("current", &s.current)] {
            let path = out.join(side).join(format!("{}.csp", s.name));
            std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        names.push(s.name.clone());
    }
    std::fs::write(out.join("features.txt"), names.join("\n") + "\n").map_err(|e| e.to_string())?;
    eprintln!("wrote {} profiles to {}", 2 * stored.len(), out.display());
    Ok(())
}

fn load_stored(dir: &Path) -> Result<Vec<Stored>, String> {
    let out = profiles_dir(dir);
    let list = std::fs::read_to_string(out.join("features.txt")).map_err(|e| {
        format!(
            "{}: {e} (run with CUSTOS_BENCH_ONESHOT=store first)",
            out.display()
        )
    })?;
    list.lines()
        .filter(|l| !l.is_empty())
        .map(|name| {
            let read = |side: &str| {
                let path = out.join(side).join(format!("{name}.csp"));
                std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
            };
            Ok(Stored {
                name: name.to_owned(),
                reference: read("reference")?,
                current: read("current")?,
            })
        })
        .collect()
}

fn oneshot_report(dir: &Path) -> Result<(), String> {
    let stored = load_stored(dir)?;
    let rss_after_load = table::status_kib("VmRSS");
    let peak_before = table::status_kib("VmHWM");
    let reset = table::reset_peak();
    let started = Instant::now();
    let out = report(&stored).map_err(|e| e.to_string())?;
    let elapsed = started.elapsed();
    let phase_peak = if reset {
        table::status_kib("VmHWM")
    } else {
        None
    };
    let features: Vec<serde_json::Value> = stored
        .iter()
        .zip(&out.features)
        .map(|(s, (result, bins))| {
            serde_json::json!({
                "feature": s.name,
                "method": result.method,
                "statistic": result.statistic,
                "p_value": result.p_value,
                "threshold": result.threshold,
                "drifted": result.drifted,
                "psi": bins.psi,
                "jensen_shannon": bins.jensen_shannon,
                "bins": bins.bins.len(),
                "reference_bytes": s.reference.len(),
                "current_bytes": s.current.len(),
            })
        })
        .collect();
    let json = serde_json::json!({
        "report_ms": elapsed.as_secs_f64() * 1e3,
        "rss_after_load_kib": rss_after_load,
        "phase_peak_kib": phase_peak,
        "ru_maxrss_kib": peak_before.max(phase_peak),
        "features": features,
        "dataset": {
            "drifted_features": out.dataset.drifted_features,
            "total_features": out.dataset.total_features,
            "share": out.dataset.share,
            "drifted": out.dataset.drifted,
        },
    });
    println!("{json}");
    Ok(())
}

fn bench(dir: &Path) -> Result<(), String> {
    let stored = build(dir)?;
    // Once, untimed: the report must succeed, and its verdicts are worth a look.
    let out = report(&stored).map_err(|e| e.to_string())?;
    for (s, (result, _)) in stored.iter().zip(&out.features) {
        eprintln!(
            "  {:<18} {:<20} {:>10.4}  drifted: {}",
            s.name,
            format!("{:?}", result.method),
            result.statistic,
            result.drifted
        );
    }
    eprintln!(
        "  dataset: {}/{} drifted (share {:.2}), dataset drift: {}",
        out.dataset.drifted_features,
        out.dataset.total_features,
        out.dataset.share,
        out.dataset.drifted
    );
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(10))
        .configure_from_args();
    let mut group = c.benchmark_group("drift_report");
    group.bench_function("20_features_from_bytes", |b| {
        b.iter(|| report(black_box(&stored)));
    });
    group.finish();
    c.final_summary();
    Ok(())
}

fn main() {
    let dir = table::data_dir();
    let mode = std::env::var("CUSTOS_BENCH_ONESHOT").ok();
    if !table::data_present(&dir) {
        eprintln!(
            "drift_report: skipped, no benchmark data in {} (scripts/bench/run.sh generates it)",
            dir.display()
        );
        if mode.is_some() {
            std::process::exit(1);
        }
        return;
    }
    let outcome = match mode.as_deref() {
        None | Some("") => bench(&dir),
        Some("store") => store(&dir),
        Some("report") => oneshot_report(&dir),
        Some(other) => Err(format!("unknown CUSTOS_BENCH_ONESHOT mode {other:?}")),
    };
    if let Err(e) = outcome {
        fail(&e);
    }
}
