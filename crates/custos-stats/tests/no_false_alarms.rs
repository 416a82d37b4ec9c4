//! No false alarms at scale: 20 features, 1,000,000 reference and 1,000,000 current rows drawn
//! from the same distributions, profiled, then judged by the default rule
//! ([`MethodChoice::for_column`] with the reference size: normed Wasserstein ≥ 0.1 for numeric,
//! Jensen–Shannon ≥ 0.1 for categorical at this size) and by [`compare`] (PSI ≥ 0.2 /
//! Jensen–Shannon ≥ 0.1, what the server's drift endpoint and [`dataset_drift`] use). Neither may
//! flag a feature, and the dataset verdict (share 0.5) must be "no drift". Then three columns
//! of the current window are redrawn shifted (normal mean + 0.5σ, a normal's σ × 1.6, weekday
//! shares 20 % each → 35/25/20/12/8 %) and exactly those three must be flagged, by both.
//!
//! The features cover shapes that trip sketches up: skew and long tails (lognormal σ 1,
//! log-income σ 0.4, exponential, Gamma(2), 80 % zeros + lognormal σ 1 "spend"), ties (rounded
//! ages, counts, 80 % zeros), bimodality, 3 to 50,000 categories (the last two in sketch mode)
//! and a rare boolean (3 %). Values come from
//! splitmix64 + Box–Muller, seeded, so the data are the same on every run; KLL compaction is
//! randomly seeded per thread, so the statistics are not. Measured over 30 runs of this test
//! (release build), the largest normed Wasserstein distance of any of the 12 numeric columns
//! was 0.054 (lognormal; the exact value is ≈ 0.002–0.004, the rest is sketch error), spend
//! 0.040.
//!
//! History: with the whole step CDFs integrated, lognormal σ 1 reached 0.19, zero-inflated
//! lognormal 0.13 and Pareto α 2.5 0.56 on identical data (a standalone probe of the same
//! integration, 40–100 runs each), and this test
//! failed in CI on `spend` at 0.115. The cause is the far tail: there one retained item stands
//! for thousands of values, and which of them survived a compaction moves W1 a lot. Since the
//! distance leaves out the outer `wasserstein_trim` of rank (≈ 0.33 %) and keeps the exact
//! mean difference as a floor (`statistics.rs`), those three stay below 0.07 over 40 runs each
//! (`heavy_tails_wasserstein_noise_floor`).
//!
//! Runtime: 43 M observations, two threads; about 10 s in the debug test profile on this
//! machine (2 cores), so no optimization override is needed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use custos_stats::{
    CategoricalProfile, DEFAULT_DRIFT_SHARE, DriftThresholds, FeatureProfile, MethodChoice,
    NumericProfile, ProfileKind, StatMethod, compare, dataset_drift,
};

const ROWS: usize = 1_000_000;

/// splitmix64 (Vigna's reference constants).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in (0, 1].
    fn next_open(&mut self) -> f64 {
        1.0 - self.next_f64()
    }

    /// Standard normal (Box–Muller, one output per call; simple rather than fast).
    fn normal(&mut self) -> f64 {
        let r = (-2.0 * self.next_open().ln()).sqrt();
        r * (2.0 * std::f64::consts::PI * self.next_f64()).cos()
    }

    fn exponential(&mut self) -> f64 {
        -self.next_open().ln()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[derive(Clone)]
enum Dist {
    Normal(f64, f64),
    LogNormal(f64, f64),
    Exponential,
    Laplace,
    /// ½ N(−2, 1) + ½ N(2, 1).
    Bimodal,
    /// ⌊3·Exp(1)⌋: small non-negative integer counts, heavy ties.
    Counts,
    /// Pareto with x_m = 1 and this α.
    Pareto(f64),
    /// Exp(1) + Exp(1): Gamma(2, 1).
    Gamma2,
    /// round(N(40, 12)): ages, integer ties.
    RoundedAge,
    /// 80 % exact zeros, else Exp(1).
    ZeroInflated,
    /// 80 % exact zeros, else lognormal(0, 1).
    ZeroInflatedLogNormal,
    /// Category `k` with probability weights[k] / Σ.
    Categorical(Vec<u64>),
    /// Uniform over this many ids (sketch mode beyond 1,000).
    Ids(u64),
    /// `true` with probability num / den.
    Bool(u64, u64),
}

impl Dist {
    fn kind(&self) -> ProfileKind {
        match self {
            Dist::Categorical(_) | Dist::Ids(_) | Dist::Bool(..) => ProfileKind::Categorical,
            _ => ProfileKind::Numeric,
        }
    }
}

struct Column {
    name: &'static str,
    reference: Dist,
    /// The distribution of the current window in the shifted scenario, if it changes.
    shifted: Option<Dist>,
}

fn columns() -> Vec<Column> {
    let c = |name, reference, shifted| Column {
        name,
        reference,
        shifted,
    };
    let zipf200: Vec<u64> = (1..=200u64).map(|k| 1_000_000 / k).collect();
    let head_tail: Vec<u64> = std::iter::repeat_n(1000, 10)
        .chain(std::iter::repeat_n(5, 1990))
        .collect();
    let geometric20: Vec<u64> = (0..20u32).map(|k| 1u64 << (20 - k)).collect();
    vec![
        c(
            "normal",
            Dist::Normal(0.0, 1.0),
            Some(Dist::Normal(0.5, 1.0)),
        ),
        c(
            "normal_scaled",
            Dist::Normal(100.0, 15.0),
            Some(Dist::Normal(100.0, 24.0)),
        ),
        c("lognormal", Dist::LogNormal(0.0, 1.0), None),
        c("exponential", Dist::Exponential, None),
        c("spend", Dist::ZeroInflatedLogNormal, None),
        c("laplace", Dist::Laplace, None),
        c("bimodal", Dist::Bimodal, None),
        c("counts", Dist::Counts, None),
        c("gamma", Dist::Gamma2, None),
        c("age", Dist::RoundedAge, None),
        c("zero_inflated", Dist::ZeroInflated, None),
        c("income", Dist::LogNormal(10.0, 0.4), None),
        c("cat3", Dist::Categorical(vec![5, 3, 2]), None),
        c(
            "weekday",
            Dist::Categorical(vec![1; 5]),
            Some(Dist::Categorical(vec![35, 25, 20, 12, 8])),
        ),
        c("cat20", Dist::Categorical(geometric20), None),
        c("cat200", Dist::Categorical(zipf200), None),
        c("cat2000", Dist::Categorical(head_tail), None),
        c("user_id", Dist::Ids(50_000), None),
        c("flag", Dist::Bool(1, 2), None),
        c("rare_flag", Dist::Bool(3, 100), None),
    ]
}

/// Labels `c0 … c{n-1}` built once, so observing does not allocate.
fn labels(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("c{k}")).collect()
}

fn profile(dist: &Dist, seed: u64, rows: usize) -> FeatureProfile {
    let mut g = SplitMix64(seed);
    match dist {
        Dist::Categorical(weights) => {
            let total: u64 = weights.iter().sum();
            let names = labels(weights.len());
            // Cumulative weights; a draw picks the first bucket whose cumulative weight exceeds it.
            let cumulative: Vec<u64> = weights
                .iter()
                .scan(0u64, |acc, w| {
                    *acc += w;
                    Some(*acc)
                })
                .collect();
            let mut p = CategoricalProfile::new();
            for _ in 0..rows {
                let t = g.below(total);
                let k = cumulative.partition_point(|&c| c <= t);
                p.observe(&names[k]);
            }
            FeatureProfile::Categorical(p)
        }
        Dist::Ids(n) => {
            let names = labels(*n as usize);
            let mut p = CategoricalProfile::new();
            for _ in 0..rows {
                p.observe(&names[g.below(*n) as usize]);
            }
            FeatureProfile::Categorical(p)
        }
        Dist::Bool(num, den) => {
            let mut p = CategoricalProfile::new();
            for _ in 0..rows {
                p.observe_bool(g.below(*den) < *num);
            }
            FeatureProfile::Categorical(p)
        }
        numeric => {
            let mut p = NumericProfile::new();
            for _ in 0..rows {
                let v = match numeric {
                    Dist::Normal(mu, sigma) => mu + sigma * g.normal(),
                    Dist::LogNormal(mu, sigma) => (mu + sigma * g.normal()).exp(),
                    Dist::Exponential => g.exponential(),
                    Dist::Laplace => g.exponential() - g.exponential(),
                    Dist::Bimodal => {
                        let centre = if g.below(2) == 0 { -2.0 } else { 2.0 };
                        centre + g.normal()
                    }
                    Dist::Counts => (3.0 * g.exponential()).floor(),
                    Dist::Pareto(alpha) => g.next_open().powf(-1.0 / alpha),
                    Dist::Gamma2 => g.exponential() + g.exponential(),
                    Dist::RoundedAge => (40.0 + 12.0 * g.normal()).round(),
                    Dist::ZeroInflated => {
                        if g.below(5) < 4 {
                            0.0
                        } else {
                            g.exponential()
                        }
                    }
                    Dist::ZeroInflatedLogNormal => {
                        if g.below(5) < 4 {
                            0.0
                        } else {
                            g.normal().exp()
                        }
                    }
                    _ => unreachable!(),
                };
                p.observe(v);
            }
            FeatureProfile::Numeric(p)
        }
    }
}

/// Profiles of every column, one seed per (scenario, column); the two sides run on two threads.
fn profiles(cols: &[&Dist], seed_base: u64, rows: usize) -> Vec<FeatureProfile> {
    cols.iter()
        .enumerate()
        .map(|(i, d)| profile(d, seed_base ^ ((i as u64 + 1) << 32), rows))
        .collect()
}

fn distinct_union(r: &FeatureProfile, c: &FeatureProfile) -> u64 {
    match (r, c) {
        (FeatureProfile::Categorical(r), FeatureProfile::Categorical(c)) => {
            let mut names: std::collections::BTreeSet<String> =
                r.category_counts().into_iter().map(|(k, _)| k).collect();
            names.extend(c.category_counts().into_iter().map(|(k, _)| k));
            (names.len() as u64)
                .max(r.distinct_estimate())
                .max(c.distinct_estimate())
        }
        _ => 0,
    }
}

fn reference_count(p: &FeatureProfile) -> u64 {
    match p {
        FeatureProfile::Numeric(n) => n.finite(),
        FeatureProfile::Categorical(c) => c.present(),
    }
}

/// Judges every column both ways; returns the names flagged by the default rule and by
/// `compare`, printing every statistic.
fn judge(
    cols: &[Column],
    reference: &[FeatureProfile],
    current: &[FeatureProfile],
    scenario: &str,
) -> (Vec<&'static str>, Vec<&'static str>, bool) {
    let mut by_rule = Vec::new();
    let mut by_compare = Vec::new();
    let mut drifts = Vec::new();
    for ((col, r), c) in cols.iter().zip(reference).zip(current) {
        let distinct = distinct_union(r, c);
        let choice = MethodChoice::for_column(col.reference.kind(), reference_count(r), distinct);
        let expected = match col.reference.kind() {
            ProfileKind::Numeric => StatMethod::Wasserstein,
            ProfileKind::Categorical => StatMethod::JensenShannon,
        };
        assert_eq!(
            choice.method, expected,
            "{}: default method at 1M rows",
            col.name
        );
        assert_eq!(choice.threshold, 0.1);
        let result = choice.run(r, c).unwrap();
        let drift = compare(r, c, &DriftThresholds::default()).unwrap();
        eprintln!(
            "{scenario:>8} {:>14}: {:?} {:.5} (>= {}: {}) | compare {:?} {:.5} (>= {}: {})",
            col.name,
            result.method,
            result.statistic,
            result.threshold,
            result.drifted,
            drift.method,
            drift.statistic,
            drift.threshold,
            drift.drifted
        );
        if result.drifted {
            by_rule.push(col.name);
        }
        if drift.drifted {
            by_compare.push(col.name);
        }
        drifts.push(drift);
    }
    let dataset = dataset_drift(&drifts, DEFAULT_DRIFT_SHARE);
    eprintln!(
        "{scenario:>8} dataset: {}/{} drifted, share {:.3}, drifted {}",
        dataset.drifted_features, dataset.total_features, dataset.share, dataset.drifted
    );
    assert_eq!(dataset.total_features, cols.len());
    (by_rule, by_compare, dataset.drifted)
}

#[test]
fn same_distributions_at_one_million_rows_raise_no_alarm() {
    let start = std::time::Instant::now();
    let cols = columns();
    let reference_dists: Vec<&Dist> = cols.iter().map(|c| &c.reference).collect();
    let shifted: Vec<(usize, &Dist)> = cols
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.shifted.as_ref().map(|d| (i, d)))
        .collect();
    // Reference and current on two threads; different seeds, same distributions.
    let (reference, mut current) = std::thread::scope(|s| {
        let r = s.spawn(|| profiles(&reference_dists, 0x5EED_0000_0000_0001, ROWS));
        let c = s.spawn(|| profiles(&reference_dists, 0x5EED_0000_0000_0002, ROWS));
        (r.join().unwrap(), c.join().unwrap())
    });
    eprintln!("profiled 2 × 20 × {ROWS} values in {:.1?}", start.elapsed());

    let (by_rule, by_compare, dataset) = judge(&cols, &reference, &current, "same");
    assert!(by_rule.is_empty(), "default rule false alarms: {by_rule:?}");
    assert!(
        by_compare.is_empty(),
        "compare false alarms: {by_compare:?}"
    );
    assert!(!dataset, "dataset drift on identical distributions");

    // Three columns of the current window redrawn from shifted distributions.
    let redrawn: Vec<(usize, FeatureProfile)> = std::thread::scope(|s| {
        let handles: Vec<_> = shifted
            .iter()
            .map(|&(i, d)| {
                let seed = 0x5EED_0000_0000_0003 ^ i as u64;
                s.spawn(move || (i, profile(d, seed, ROWS)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, p) in redrawn {
        current[i] = p;
    }
    let want: Vec<&str> = cols
        .iter()
        .filter(|c| c.shifted.is_some())
        .map(|c| c.name)
        .collect();
    assert_eq!(want, ["normal", "normal_scaled", "weekday"]);
    let (by_rule, by_compare, dataset) = judge(&cols, &reference, &current, "shifted");
    assert_eq!(
        by_rule, want,
        "default rule must flag exactly the shifted columns"
    );
    assert_eq!(
        by_compare, want,
        "compare must flag exactly the shifted columns"
    );
    assert!(!dataset, "3 of 20 drifted is below the 0.5 dataset share");
    eprintln!("total {:.1?}", start.elapsed());
}

/// Not part of the suite (`CUSTOS_NOISE_RUNS=40 cargo test --release -p custos-stats --test
/// no_false_alarms -- --ignored --nocapture`): the spread of the default rule's normed
/// Wasserstein distance between two 1,000,000-row samples of the *same* heavy-tailed
/// distribution. The exact (scipy) value is 0.002–0.004 for all of them. Measured over 40 runs
/// each: Pareto α = 2.5 mean 0.023, max 0.070; lognormal(0, 1) mean 0.023, max 0.048; 80 %
/// zeros with lognormal(0, 1) otherwise, mean 0.025, max 0.046; none reached the 0.1
/// threshold. Before the tail trim, the same measurement gave maxima of 0.56, 0.19 and 0.13.
#[test]
#[ignore = "measurement, prints the Wasserstein noise floor of heavy-tailed features"]
fn heavy_tails_wasserstein_noise_floor() {
    let cols = [
        ("pareto_2.5", Dist::Pareto(2.5)),
        ("lognormal_1", Dist::LogNormal(0.0, 1.0)),
        ("zero_inflated_lognormal", Dist::ZeroInflatedLogNormal),
    ];
    let runs: u64 = std::env::var("CUSTOS_NOISE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for (name, dist) in &cols {
        let mut ws = Vec::new();
        for run in 0..runs {
            let (r, c) = std::thread::scope(|s| {
                let a = s.spawn(|| profile(dist, run * 2 + 101, ROWS));
                let b = s.spawn(|| profile(dist, run * 2 + 102, ROWS));
                (a.join().unwrap(), b.join().unwrap())
            });
            let rule = MethodChoice::for_column(ProfileKind::Numeric, reference_count(&r), 0);
            ws.push(rule.run(&r, &c).unwrap().statistic);
        }
        let max = ws.iter().copied().fold(0.0, f64::max);
        let mean = ws.iter().sum::<f64>() / ws.len() as f64;
        let alarms = ws.iter().filter(|w| **w >= 0.1).count();
        eprintln!(
            "{name:>24}: normed Wasserstein mean {mean:.4} max {max:.4}, {alarms} of {runs} >= 0.1, runs {ws:.3?}"
        );
    }
}
