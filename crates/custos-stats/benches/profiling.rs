//! In-process profiling throughput: 20 columns of an in-memory table into 20 feature profiles.
//!
//! Owns: the `profiling` criterion bench and its one-shot mode for `scripts/bench/run.sh`. Must
//! not: assert correctness (tests do), generate data (`scripts/bench/peers.py gen` does, so
//! whylogs profiles the same table), or time the CSV parsing.
//!
//! The table is `reference.csv` (1,000,000 rows by default), loaded once into memory (see
//! `support/table.rs`: numeric `f64`, dictionary-encoded strings, one-byte booleans). One
//! iteration creates 20 empty profiles and observes every value of every column, on one thread.
//! Throughput is in rows per second (one row = 20 observations).
//!
//! * `20_features_column_major`: column by column, as whylogs does on a DataFrame (the number
//!   compared with whylogs).
//! * `20_features_row_major`: row by row across the 20 profiles, as ingesting events does; for
//!   information (the 20 profiles' state competes for cache).
//!
//! `CUSTOS_BENCH_ONESHOT=profile`: load, profile once column-major with a time per column, print
//! a JSON line (rows/s, per-column ns per value, memory) on stdout. Run under `/usr/bin/time -v`
//! for the process's peak RSS.

#[path = "support/table.rs"]
mod table;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use custos_stats::{CategoricalProfile, FeatureProfile, NumericProfile};
use table::{BOOL_MISSING, Table, Values, fail};

fn load(dir: &Path) -> Result<Table, String> {
    let started = Instant::now();
    let table = table::load(&dir.join("reference.csv"))?;
    eprintln!(
        "setup: {} rows x {} columns loaded in {:.1} s",
        table.rows,
        table.columns.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(table)
}

/// Row by row: every row's 20 values go to the 20 profiles before the next row.
fn profile_row_major(table: &Table) -> Vec<FeatureProfile> {
    let mut profiles: Vec<FeatureProfile> = table
        .columns
        .iter()
        .map(|c| match c.values {
            Values::Numeric(_) => NumericProfile::new().into(),
            _ => CategoricalProfile::new().into(),
        })
        .collect();
    for row in 0..table.rows {
        for (column, profile) in table.columns.iter().zip(profiles.iter_mut()) {
            match (&column.values, profile) {
                (Values::Numeric(v), FeatureProfile::Numeric(p)) => match v.get(row) {
                    Some(x) if !x.is_nan() => p.observe(*x),
                    _ => p.observe_missing(),
                },
                (Values::Categorical { dict, codes }, FeatureProfile::Categorical(p)) => {
                    match codes.get(row).and_then(|c| dict.get(*c as usize)) {
                        Some(s) => p.observe(s),
                        None => p.observe_missing(),
                    }
                }
                (Values::Boolean(v), FeatureProfile::Categorical(p)) => match v.get(row) {
                    Some(0) => p.observe_bool(false),
                    Some(1) => p.observe_bool(true),
                    Some(&BOOL_MISSING) | Some(_) | None => p.observe_missing(),
                },
                _ => {}
            }
        }
    }
    profiles
}

fn oneshot(dir: &Path) -> Result<(), String> {
    let table = load(dir)?;
    let rss_after_load = table::status_kib("VmRSS");
    let peak_before = table::status_kib("VmHWM");
    let reset = table::reset_peak();
    let mut columns = Vec::new();
    let mut profiles = Vec::new();
    let started = Instant::now();
    for column in &table.columns {
        let t = Instant::now();
        profiles.push(table::profile_column(&column.values));
        let ns = t.elapsed().as_secs_f64() * 1e9;
        columns.push(serde_json::json!({
            "feature": column.name,
            "ns_per_value": ns / table.rows as f64,
        }));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let phase_peak = if reset {
        table::status_kib("VmHWM")
    } else {
        None
    };
    let bytes: usize = black_box(&profiles)
        .iter()
        .map(|p| p.to_bytes().len())
        .sum();
    let json = serde_json::json!({
        "rows": table.rows,
        "features": table.columns.len(),
        "profile_s": elapsed,
        "rows_per_s": table.rows as f64 / elapsed,
        "columns": columns,
        "encoded_profile_bytes": bytes,
        "rss_after_load_kib": rss_after_load,
        "phase_peak_kib": phase_peak,
        "ru_maxrss_kib": peak_before.max(phase_peak),
    });
    println!("{json}");
    Ok(())
}

fn bench(dir: &Path) -> Result<(), String> {
    let table = load(dir)?;
    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("profiling");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15))
        .throughput(Throughput::Elements(table.rows as u64));
    group.bench_function("20_features_column_major", |b| {
        b.iter(|| table::profile_table(black_box(&table)));
    });
    group.bench_function("20_features_row_major", |b| {
        b.iter(|| profile_row_major(black_box(&table)));
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
            "profiling: skipped, no benchmark data in {} (scripts/bench/run.sh generates it)",
            dir.display()
        );
        if mode.is_some() {
            std::process::exit(1);
        }
        return;
    }
    let outcome = match mode.as_deref() {
        None | Some("") => bench(&dir),
        Some("profile") => oneshot(&dir),
        Some(other) => Err(format!("unknown CUSTOS_BENCH_ONESHOT mode {other:?}")),
    };
    if let Err(e) = outcome {
        fail(&e);
    }
}
