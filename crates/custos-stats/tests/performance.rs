//! Realized performance metrics against scikit-learn, merge laws and hostile input.
//!
//! Golden numbers come from `tests/golden/performance_golden.py` (scikit-learn 1.9.1, numpy 2,
//! pandas) on NannyML 0.13.1's datasets in `<repo>/../shared/data/nannyml` (binary and
//! regression read here from the same CSV files; multiclass rows from the compact
//! `tests/fixtures/performance/mc_rows.csv` written by the script from the Parquet files).
//! Agreement required: counts and confusion matrices exact, ROC AUC within 1e-12, other metrics
//! within 1e-9 relative; the measured worst cases are printed (`--nocapture`).

// Test crate: helpers outside #[test] fns are not covered by clippy.toml's allow-*-in-tests, and
// here a failing unwrap or index is exactly a failing test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;

use custos_stats::{
    BinaryPerformance, MulticlassPerformance, PerformanceMetrics, PerformanceProfile,
    RegressionPerformance, ScoreHistogram, StatsError, roc_auc,
};
use proptest::prelude::*;
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/nannyml/");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/performance/");

/// Columns of a simple CSV file (no quoting: the NannyML files have none), by header name.
fn read_columns(path: &str, wanted: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w).unwrap())
        .collect();
    let mut cols = vec![Vec::new(); wanted.len()];
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields.len(), header.len(), "{path}: ragged row");
        for (c, i) in cols.iter_mut().zip(&idx) {
            c.push(fields[*i].to_owned());
        }
    }
    cols
}

fn golden(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap()
}

/// Tracks the worst relative / absolute disagreement per metric for the printed summary.
#[derive(Default)]
struct Worst(Vec<(String, f64)>);

impl Worst {
    fn rel(&mut self, what: &str, got: f64, want: f64, tol: f64) {
        let err = (got - want).abs() / want.abs().max(f64::MIN_POSITIVE);
        assert!(err <= tol, "{what}: got {got}, want {want} (rel {err:e})");
        self.note(what, err);
    }

    fn abs(&mut self, what: &str, got: f64, want: f64, tol: f64) {
        let err = (got - want).abs();
        assert!(err <= tol, "{what}: got {got}, want {want} (abs {err:e})");
        self.note(what, err);
    }

    fn note(&mut self, what: &str, err: f64) {
        let key = what.split(' ').next().unwrap().to_owned();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) => *w = w.max(err),
            None => self.0.push((key, err)),
        }
    }

    fn print(&self, title: &str) {
        let parts: Vec<String> = self.0.iter().map(|(k, e)| format!("{k} {e:.1e}")).collect();
        eprintln!("{title}: worst disagreement {}", parts.join(", "));
    }
}

fn chunk_bounds(g: &Value) -> (String, usize, usize) {
    (
        g["chunk"].as_str().unwrap().to_owned(),
        g["start"].as_u64().unwrap() as usize,
        g["end"].as_u64().unwrap() as usize,
    )
}

// ---------------------------------------------------------------------------------------------
// (a) binary: NannyML synthetic sample
// ---------------------------------------------------------------------------------------------

struct BinaryRows {
    actual: Vec<bool>,
    predicted: Vec<bool>,
    score: Vec<f64>,
}

fn binary_rows() -> BinaryRows {
    let a = read_columns(
        &format!("{DATA}synthetic_sample_analysis.csv"),
        &["id", "y_pred_proba", "y_pred"],
    );
    let gt = read_columns(
        &format!("{DATA}synthetic_sample_analysis_gt.csv"),
        &["id", "work_home_actual"],
    );
    let labels: HashMap<&str, bool> = gt[0]
        .iter()
        .zip(&gt[1])
        .map(|(id, y)| (id.as_str(), y == "1"))
        .collect();
    BinaryRows {
        actual: a[0].iter().map(|id| labels[id.as_str()]).collect(),
        predicted: a[2].iter().map(|y| y == "1").collect(),
        score: a[1].iter().map(|p| p.parse().unwrap()).collect(),
    }
}

fn binary_profile(rows: &BinaryRows, start: usize, end: usize) -> BinaryPerformance {
    let mut p = BinaryPerformance::new();
    for i in start..end {
        p.observe(rows.actual[i], rows.predicted[i], Some(rows.score[i]))
            .unwrap();
    }
    p
}

#[test]
fn binary_matches_sklearn_per_chunk_and_overall() {
    let rows = binary_rows();
    let g = golden("binary.json");
    let mut worst = Worst::default();
    let mut merged = BinaryPerformance::new();
    let mut overall = None;
    for c in g.as_array().unwrap() {
        let (name, start, end) = chunk_bounds(c);
        let p = binary_profile(&rows, start, end);
        if name == "overall" {
            overall = Some(p.clone());
        } else {
            merged.merge(&p).unwrap();
        }
        let m = p.metrics();
        assert_eq!(m.rows, c["rows"].as_u64().unwrap(), "{name}");
        assert_eq!(m.scored_rows, m.rows);
        let conf = m.confusion;
        for (got, key) in [
            (conf.tp, "tp"),
            (conf.fp, "fp"),
            (conf.tn, "tn"),
            (conf.fn_, "fn"),
        ] {
            assert_eq!(got, c[key].as_u64().unwrap(), "{name} {key}");
        }
        for (got, key) in [
            (m.accuracy, "accuracy"),
            (m.precision, "precision"),
            (m.recall, "recall"),
            (m.f1, "f1"),
            (m.log_loss, "log_loss"),
        ] {
            worst.rel(&format!("{key} {name}"), got.unwrap(), f(&c[key]), 1e-9);
        }
        worst.abs(
            &format!("roc_auc {name}"),
            m.roc_auc.unwrap(),
            f(&c["roc_auc"]),
            1e-12,
        );
    }
    // Merging the ten hourly-style chunks is exactly the one-pass summary.
    assert_eq!(Some(merged), overall);
    worst.print("binary vs sklearn");
}

// ---------------------------------------------------------------------------------------------
// (b) regression: NannyML synthetic car prices
// ---------------------------------------------------------------------------------------------

#[test]
fn regression_matches_sklearn_per_chunk_and_overall() {
    let a = read_columns(
        &format!("{DATA}regression_synthetic_analysis.csv"),
        &["id", "y_pred"],
    );
    let t = read_columns(
        &format!("{DATA}regression_synthetic_analysis_targets.csv"),
        &["id", "y_true"],
    );
    let targets: HashMap<&str, f64> = t[0]
        .iter()
        .zip(&t[1])
        .map(|(id, y)| (id.as_str(), y.parse().unwrap()))
        .collect();
    let actual: Vec<f64> = a[0].iter().map(|id| targets[id.as_str()]).collect();
    let predicted: Vec<f64> = a[1].iter().map(|y| y.parse().unwrap()).collect();
    let g = golden("regression.json");
    let mut worst = Worst::default();
    let mut merged = RegressionPerformance::new();
    let mut overall = None;
    for c in g.as_array().unwrap() {
        let (name, start, end) = chunk_bounds(c);
        let mut p = RegressionPerformance::new();
        for i in start..end {
            p.observe(actual[i], predicted[i]).unwrap();
        }
        if name == "overall" {
            overall = Some(p.clone());
        } else {
            merged.merge(&p).unwrap();
        }
        let m = p.metrics();
        assert_eq!(m.rows, c["rows"].as_u64().unwrap());
        for (got, key) in [
            (m.mae, "mae"),
            (m.mse, "mse"),
            (m.rmse, "rmse"),
            (m.mape, "mape"),
            (m.r2, "r2"),
        ] {
            worst.rel(&format!("{key} {name}"), got.unwrap(), f(&c[key]), 1e-9);
        }
    }
    assert_eq!(Some(merged), overall);
    worst.print("regression vs sklearn");
}

// ---------------------------------------------------------------------------------------------
// (c) multiclass: NannyML synthetic credit-card products
// ---------------------------------------------------------------------------------------------

#[test]
fn multiclass_matches_sklearn_per_chunk_and_overall() {
    let g = golden("multiclass.json");
    let classes: Vec<String> = g["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let text = std::fs::read_to_string(format!("{FIXTURES}mc_rows.csv")).unwrap();
    let rows: Vec<(usize, usize, Vec<f64>)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let v: Vec<u32> = l.split(',').map(|x| x.parse().unwrap()).collect();
            // Hundredths / 100 is the same f64 as the Parquet file's two-decimal value.
            let p = v[2..].iter().map(|k| f64::from(*k) / 100.0).collect();
            (v[0] as usize, v[1] as usize, p)
        })
        .collect();
    assert_eq!(rows.len(), 60_000);
    let mut worst = Worst::default();
    let mut merged = MulticlassPerformance::new();
    let mut overall = None;
    for c in g["chunks"].as_array().unwrap() {
        let (name, start, end) = chunk_bounds(c);
        let mut p = MulticlassPerformance::new();
        for (actual, predicted, probs) in &rows[start..end] {
            let scores: Vec<(&str, f64)> = classes
                .iter()
                .map(String::as_str)
                .zip(probs.iter().copied())
                .collect();
            p.observe(&classes[*actual], &classes[*predicted], Some(&scores))
                .unwrap();
        }
        if name == "overall" {
            overall = Some(p.clone());
        } else {
            merged.merge(&p).unwrap();
        }
        let m = p.metrics();
        assert_eq!(m.rows, c["rows"].as_u64().unwrap());
        let labels: Vec<String> = c["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(m.classes, labels);
        let confusion: Vec<Vec<u64>> = serde_json::from_value(c["confusion"].clone()).unwrap();
        assert_eq!(m.confusion, confusion, "{name}");
        for (got, key) in [
            (m.accuracy, "accuracy"),
            (m.macro_precision, "macro_precision"),
            (m.macro_recall, "macro_recall"),
            (m.macro_f1, "macro_f1"),
            (m.log_loss, "log_loss"),
        ] {
            worst.rel(&format!("{key} {name}"), got.unwrap(), f(&c[key]), 1e-9);
        }
        worst.abs(
            &format!("macro_roc_auc {name}"),
            m.macro_roc_auc.unwrap(),
            f(&c["macro_roc_auc"]),
            1e-12,
        );
        for (i, cm) in m.per_class.iter().enumerate() {
            worst.rel("precision", cm.precision, f(&c["precision"][i]), 1e-9);
            worst.rel("recall", cm.recall, f(&c["recall"][i]), 1e-9);
            worst.rel("f1", cm.f1, f(&c["f1"][i]), 1e-9);
            let k = classes.iter().position(|x| *x == cm.class).unwrap();
            worst.abs(
                "class_roc_auc",
                cm.roc_auc.unwrap(),
                f(&c["roc_auc"][k]),
                1e-12,
            );
        }
    }
    assert_eq!(Some(merged), overall);
    worst.print("multiclass vs sklearn");
}

// ---------------------------------------------------------------------------------------------
// (d) hand cases
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_summaries_have_no_metrics() {
    let b = BinaryPerformance::new().metrics();
    assert_eq!(b.rows, 0);
    assert_eq!(
        (b.accuracy, b.f1, b.roc_auc, b.log_loss),
        (None, None, None, None)
    );
    let m = MulticlassPerformance::new().metrics();
    assert!(m.classes.is_empty() && m.accuracy.is_none() && m.macro_f1.is_none());
    let r = RegressionPerformance::new().metrics();
    assert_eq!((r.mae, r.rmse, r.mape, r.r2), (None, None, None, None));
}

#[test]
fn binary_hand_cases() {
    // All one class: AUC undefined, precision/recall by sklearn's zero_division = 0.
    let mut p = BinaryPerformance::new();
    for s in [0.2, 0.7, 0.9] {
        p.observe(true, s >= 0.5, Some(s)).unwrap();
    }
    let m = p.metrics();
    assert_eq!(m.roc_auc, None);
    assert_eq!(m.accuracy, Some(2.0 / 3.0));
    assert_eq!(m.precision, Some(1.0));
    assert_eq!(m.recall, Some(2.0 / 3.0));
    // −(ln 0.2 + ln 0.7 + ln 0.9) / 3.
    let want = -(0.2f64.ln() + 0.7f64.ln() + 0.9f64.ln()) / 3.0;
    assert!((m.log_loss.unwrap() - want).abs() < 1e-15);

    // Nothing predicted positive: precision 0 (sklearn warns and returns 0), F1 0.
    let mut q = BinaryPerformance::new();
    q.observe(true, false, None).unwrap();
    q.observe(false, false, None).unwrap();
    let m = q.metrics();
    assert_eq!(
        (m.precision, m.recall, m.f1),
        (Some(0.0), Some(0.0), Some(0.0))
    );
    assert_eq!((m.scored_rows, m.roc_auc, m.log_loss), (0, None, None));

    // Ties: positives {0.3, 0.5, 0.5}, negatives {0.5, 0.1}. Pairs (pos > neg): 0.3>0.1,
    // 0.5>0.1 twice = 3; ties 0.5=0.5 twice = 2 × 1/2; of 6 pairs → 4/6
    // (sklearn.metrics.roc_auc_score([1,1,1,0,0], [.3,.5,.5,.5,.1]) = 0.6666…).
    let mut t = BinaryPerformance::new();
    for (y, s) in [
        (true, 0.3),
        (true, 0.5),
        (true, 0.5),
        (false, 0.5),
        (false, 0.1),
    ] {
        t.observe(y, s >= 0.5, Some(s)).unwrap();
    }
    assert_eq!(t.roc_auc(), Some(4.0 / 6.0));
    // Scores that only differ beyond 4 decimals share a bin and count as ties.
    let mut u = BinaryPerformance::new();
    u.observe(true, true, Some(0.500_01)).unwrap();
    u.observe(false, true, Some(0.499_99)).unwrap();
    assert_eq!(u.roc_auc(), Some(0.5));
    // Probabilities 0 and 1 are clipped to ε: −ln(ε) per row.
    let mut v = BinaryPerformance::new();
    v.observe(true, false, Some(0.0)).unwrap();
    v.observe(false, true, Some(1.0)).unwrap();
    assert_eq!(v.log_loss(), Some(-f64::EPSILON.ln()));
}

#[test]
fn invalid_scores_are_rejected_and_record_nothing() {
    let mut p = BinaryPerformance::new();
    for bad in [-0.1, 1.01, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            p.observe(true, true, Some(bad)),
            Err(StatsError::InvalidInput(_))
        ));
    }
    assert_eq!(p, BinaryPerformance::new());
    let mut m = MulticlassPerformance::new();
    assert!(
        m.observe("a", "a", Some(&[("a", 0.5), ("a", 0.5)]))
            .is_err()
    );
    assert!(m.observe("a", "a", Some(&[("a", 1.5)])).is_err());
    assert_eq!(m, MulticlassPerformance::new());
    let mut r = RegressionPerformance::new();
    for (y, yhat) in [
        (f64::NAN, 1.0),
        (1.0, f64::INFINITY),
        (1e300, -1e300),
        (1e200, 0.0),
    ] {
        assert!(r.observe(y, yhat).is_err());
    }
    assert_eq!(r, RegressionPerformance::new());
}

#[test]
fn multiclass_hand_cases() {
    let mut p = MulticlassPerformance::new();
    // a,a  a,b  b,b  c,a — class c is never predicted: precision 0 (zero_division).
    for (y, yhat) in [("a", "a"), ("a", "b"), ("b", "b"), ("c", "a")] {
        p.observe(y, yhat, None).unwrap();
    }
    let m = p.metrics();
    assert_eq!(m.classes, ["a", "b", "c"]);
    assert_eq!(
        m.confusion,
        vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 0]]
    );
    assert_eq!(m.accuracy, Some(0.5));
    let precision: Vec<f64> = m.per_class.iter().map(|c| c.precision).collect();
    let recall: Vec<f64> = m.per_class.iter().map(|c| c.recall).collect();
    assert_eq!(precision, [0.5, 0.5, 0.0]);
    assert_eq!(recall, [0.5, 1.0, 0.0]);
    assert_eq!(m.macro_precision, Some(1.0 / 3.0));
    assert_eq!(m.macro_roc_auc, None);
    // f1: a = 2/(2+2) = 0.5, b = 2/(1+2) = 2/3, c = 0.
    assert!((m.macro_f1.unwrap() - (0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-15);

    // Class cap: 256 classes fit, the 257th is refused and nothing changes.
    let mut q = MulticlassPerformance::new();
    for i in 0..256 {
        let name = format!("c{i}");
        q.observe(&name, &name, None).unwrap();
    }
    let before = q.clone();
    assert!(matches!(
        q.observe("new", "c0", None),
        Err(StatsError::InvalidInput(_))
    ));
    assert_eq!(q, before);
    let mut other = MulticlassPerformance::new();
    other.observe("another", "another", None).unwrap();
    assert!(q.merge(&other).is_err());
    assert_eq!(q, before);
}

#[test]
fn regression_hand_cases() {
    let mut p = RegressionPerformance::new();
    for (y, yhat) in [(1.0, 2.0), (2.0, 2.0), (3.0, 1.0), (0.0, 0.5)] {
        p.observe(y, yhat).unwrap();
    }
    let m = p.metrics();
    // |e| = 1, 0, 2, 0.5; e² = 1, 0, 4, 0.25; ȳ = 1.5, Σ(y − ȳ)² = 5.
    assert_eq!(m.mae, Some(3.5 / 4.0));
    assert_eq!(m.mse, Some(5.25 / 4.0));
    assert_eq!(m.rmse, Some((5.25f64 / 4.0).sqrt()));
    assert_eq!(m.r2, Some(1.0 - 5.25 / 5.0));
    // MAPE: 1/1 + 0 + 2/3 + 0.5/ε.
    let want = (1.0 + 2.0 / 3.0 + 0.5 / f64::EPSILON) / 4.0;
    assert!((m.mape.unwrap() - want).abs() <= want * 1e-15);

    // Constant target: R² is 1 for perfect predictions, 0 otherwise (sklearn force_finite).
    let mut c = RegressionPerformance::new();
    c.observe(0.1, 0.1).unwrap();
    c.observe(0.1, 0.1).unwrap();
    assert_eq!(c.metrics().r2, Some(1.0));
    c.observe(0.1, 0.2).unwrap();
    assert_eq!(c.metrics().r2, Some(0.0));
    let mut one = RegressionPerformance::new();
    one.observe(3.0, 1.0).unwrap();
    assert_eq!(one.metrics().r2, None);

    // A huge mean and a tiny spread: the exact sums keep R² exact where Σy² − (Σy)²/n in plain
    // f64 would lose every digit. y = 1e9 + {0, 1, 2}, ŷ = 1e9 + 1: SS_res = 2, SS_tot = 2.
    let mut big = RegressionPerformance::new();
    for d in [0.0, 1.0, 2.0] {
        big.observe(1e9 + d, 1e9 + 1.0).unwrap();
    }
    assert_eq!(big.metrics().r2, Some(0.0));
}

// ---------------------------------------------------------------------------------------------
// Byte format, serde, hostile input
// ---------------------------------------------------------------------------------------------

fn sample_profiles() -> Vec<PerformanceProfile> {
    let mut b = BinaryPerformance::new();
    for (i, s) in [0.1, 0.35, 0.8, 0.95, 0.5].iter().enumerate() {
        b.observe(i % 2 == 0, *s >= 0.5, Some(*s)).unwrap();
    }
    b.observe(true, false, None).unwrap();
    let mut m = MulticlassPerformance::new();
    m.observe("x", "y", Some(&[("x", 0.25), ("y", 0.7), ("z", 0.05)]))
        .unwrap();
    m.observe("z", "z", Some(&[("x", 0.0), ("y", 0.1), ("z", 0.9)]))
        .unwrap();
    m.observe("ü", "x", None).unwrap();
    let mut r = RegressionPerformance::new();
    for (y, yhat) in [(3.5, 3.0), (-2.0, 1e-3), (1e10, 1.2e10)] {
        r.observe(y, yhat).unwrap();
    }
    vec![
        PerformanceProfile::Binary(b),
        PerformanceProfile::Multiclass(m),
        PerformanceProfile::Regression(r),
        PerformanceProfile::Binary(BinaryPerformance::new()),
        PerformanceProfile::Multiclass(MulticlassPerformance::new()),
        PerformanceProfile::Regression(RegressionPerformance::new()),
    ]
}

#[test]
fn byte_and_serde_round_trips() {
    for p in sample_profiles() {
        let bytes = p.to_bytes();
        assert_eq!(&bytes[..4], b"CPP\x01");
        assert_eq!(PerformanceProfile::from_bytes(&bytes).unwrap(), p);
        let json = serde_json::to_value(&p).unwrap();
        let back: PerformanceProfile = serde_json::from_value(json.clone()).unwrap();
        // serde_json is built without float_roundtrip: compare re-serialized JSON (the only
        // floats are the regression min/max) and the exact integer state via bytes.
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        if !matches!(p, PerformanceProfile::Regression(_)) {
            assert_eq!(back, p);
        }
        let metrics = serde_json::to_string(&p.metrics()).unwrap();
        let _: PerformanceMetrics = serde_json::from_str(&metrics).unwrap();
    }
}

#[test]
fn hostile_bytes_never_panic() {
    for p in sample_profiles() {
        let bytes = p.to_bytes();
        for len in 0..bytes.len() {
            assert!(PerformanceProfile::from_bytes(&bytes[..len]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PerformanceProfile::from_bytes(&longer).is_err());
        // Every single-byte corruption decodes to an error or to some valid profile.
        for i in 0..bytes.len() {
            for x in [0x01u8, 0x80, 0xFF] {
                let mut b = bytes.clone();
                b[i] ^= x;
                if let Ok(q) = PerformanceProfile::from_bytes(&b) {
                    let _ = q.metrics();
                    let mut merged = q.clone();
                    let _ = merged.merge(&q);
                }
            }
        }
    }
    let mut wrong_version = sample_profiles()[0].to_bytes();
    wrong_version[3] = 9;
    assert_eq!(
        PerformanceProfile::from_bytes(&wrong_version),
        Err(StatsError::UnsupportedVersion(9))
    );
    // Huge claimed lengths fail on truncation without allocating.
    let mut huge = b"CPP\x01\x02".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(PerformanceProfile::from_bytes(&huge).is_err());
}

#[test]
fn hostile_json_is_rejected() {
    let bad = [
        // bin beyond 10 000
        r#"{"kind":"binary","confusion":{"tp":1,"fp":0,"tn":0,"fn":0},"log_loss_sum":[],"positive_scores":[[10001,1]],"negative_scores":[]}"#,
        // more scores than rows
        r#"{"kind":"binary","confusion":{"tp":1,"fp":0,"tn":0,"fn":0},"log_loss_sum":[],"positive_scores":[[5,2]],"negative_scores":[]}"#,
        // negative log-loss sum
        r#"{"kind":"binary","confusion":{"tp":1,"fp":0,"tn":0,"fn":0},"log_loss_sum":[[69,-1]],"positive_scores":[[5,1]],"negative_scores":[]}"#,
        // counts beyond 2^62
        r#"{"kind":"binary","confusion":{"tp":4611686018427387904,"fp":1,"tn":0,"fn":0},"log_loss_sum":[],"positive_scores":[],"negative_scores":[]}"#,
        // zero-count confusion cell
        r#"{"kind":"multiclass","confusion":{"a":{"a":0}},"scored_rows":0,"log_loss_sum":[],"scores":{}}"#,
        // regression rows without a range
        r#"{"kind":"regression","rows":2,"min_actual":null,"max_actual":null,"sum_abs_error":[],"sum_sq_error":[],"sum_abs_pct_error":[],"sum_actual":[],"sum_actual_sq":[]}"#,
        // exact-sum limb out of range
        r#"{"kind":"regression","rows":1,"min_actual":1.0,"max_actual":1.0,"sum_abs_error":[[3,4294967296]],"sum_sq_error":[],"sum_abs_pct_error":[],"sum_actual":[],"sum_actual_sq":[]}"#,
    ];
    // Control: the same shape with consistent numbers is accepted.
    let good = r#"{"kind":"binary","confusion":{"tp":1,"fp":0,"tn":0,"fn":0},"log_loss_sum":[],"positive_scores":[[5,1]],"negative_scores":[]}"#;
    assert!(serde_json::from_str::<PerformanceProfile>(good).is_ok());
    for json in bad {
        assert!(
            serde_json::from_str::<PerformanceProfile>(json).is_err(),
            "accepted {json}"
        );
    }
    assert!(serde_json::from_str::<ScoreHistogram>("[[3,0]]").is_err());
    assert!(serde_json::from_str::<ScoreHistogram>("[[4,1],[3,1]]").is_err());
    assert!(serde_json::from_str::<ScoreHistogram>("[[4,1],[4,1]]").is_err());
    assert_eq!(
        serde_json::from_str::<ScoreHistogram>("[[4,1],[9,2]]")
            .unwrap()
            .count(),
        3
    );
}

#[test]
fn kinds_do_not_merge() {
    let mut a = PerformanceProfile::new(custos_stats::PerformanceKind::Binary);
    let b = PerformanceProfile::new(custos_stats::PerformanceKind::Regression);
    assert_eq!(a.merge(&b), Err(StatsError::KindMismatch));
}

#[test]
fn histogram_auc_is_symmetric() {
    let mut pos = ScoreHistogram::new();
    let mut neg = ScoreHistogram::new();
    for s in [0.9, 0.8, 0.4] {
        pos.observe(s).unwrap();
    }
    for s in [0.1, 0.8, 0.5] {
        neg.observe(s).unwrap();
    }
    let auc = roc_auc(&pos, &neg).unwrap();
    assert_eq!(auc + roc_auc(&neg, &pos).unwrap(), 1.0);
    // 0.9 beats all 3, 0.8 beats 2 and ties 1, 0.4 beats 1: (3 + 2.5 + 1) / 9.
    assert_eq!(auc, 6.5 / 9.0);
    assert_eq!(ScoreHistogram::bin_of(0.07).unwrap(), 700);
    assert_eq!(ScoreHistogram::score_of(700), 0.07);
}

// ---------------------------------------------------------------------------------------------
// Merge laws
// ---------------------------------------------------------------------------------------------

type Row = (u8, u8, Option<Vec<f64>>, f64, f64);

fn score() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u16..=100).prop_map(|k| f64::from(k) / 100.0),
        0.0f64..=1.0,
        Just(0.0),
        Just(1.0),
    ]
}

fn target() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e6f64..1e6,
        (-1000i32..1000).prop_map(f64::from),
        Just(0.0),
        -1e-300f64..1e-300,
        -1e150f64..1e150,
    ]
}

fn row() -> impl Strategy<Value = Row> {
    (
        0u8..4,
        0u8..4,
        proptest::option::of(proptest::collection::vec(score(), 4)),
        target(),
        target(),
    )
}

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

fn build(rows: &[Row]) -> [PerformanceProfile; 3] {
    let mut b = BinaryPerformance::new();
    let mut m = MulticlassPerformance::new();
    let mut r = RegressionPerformance::new();
    for (y, yhat, probs, t, p) in rows {
        b.observe(y % 2 == 0, yhat % 2 == 0, probs.as_ref().map(|v| v[0]))
            .unwrap();
        let scores: Option<Vec<(&str, f64)>> = probs
            .as_ref()
            .map(|v| NAMES.iter().copied().zip(v.iter().copied()).collect());
        m.observe(NAMES[*y as usize], NAMES[*yhat as usize], scores.as_deref())
            .unwrap();
        r.observe(*t, *p).unwrap();
    }
    [
        PerformanceProfile::Binary(b),
        PerformanceProfile::Multiclass(m),
        PerformanceProfile::Regression(r),
    ]
}

fn merged(a: &PerformanceProfile, b: &PerformanceProfile) -> PerformanceProfile {
    let mut out = a.clone();
    out.merge(b).unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn merge_is_associative_and_equals_one_pass(
        a in proptest::collection::vec(row(), 0..40),
        b in proptest::collection::vec(row(), 0..40),
        c in proptest::collection::vec(row(), 0..40),
    ) {
        let (pa, pb, pc) = (build(&a), build(&b), build(&c));
        let all: Vec<Row> = a.iter().chain(&b).chain(&c).cloned().collect();
        let one_pass = build(&all);
        for k in 0..3 {
            let left = merged(&merged(&pa[k], &pb[k]), &pc[k]);
            let right = merged(&pa[k], &merged(&pb[k], &pc[k]));
            prop_assert_eq!(&left, &right);
            prop_assert_eq!(&left, &one_pass[k]);
            // Merging in another order changes nothing either.
            prop_assert_eq!(&merged(&merged(&pc[k], &pa[k]), &pb[k]), &one_pass[k]);
            prop_assert_eq!(left.to_bytes(), one_pass[k].to_bytes());
            prop_assert_eq!(PerformanceProfile::from_bytes(&left.to_bytes()).unwrap(), left);
        }
    }
}
