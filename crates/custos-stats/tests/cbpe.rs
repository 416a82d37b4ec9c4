//! CBPE (performance estimation without labels) against NannyML 0.13.1.
//!
//! Golden numbers: `tests/golden/performance_golden.py` runs `nannyml.CBPE` (binary, metrics
//! roc_auc, f1, accuracy, precision, recall, chunk_size 5000) on NannyML's synthetic binary
//! dataset and on its modified California housing dataset, fitted on the reference file and
//! estimated on the analysis file, and writes per-chunk estimates, sampling errors, bands and
//! realized values (`tests/fixtures/performance/cbpe_*.json`). The Rust side reads the same CSV
//! files from `<repo>/../shared/data/nannyml`.
//!
//! Measured agreement (printed with `--nocapture`): calibration knots bit-identical to sklearn;
//! accuracy, F1, precision and recall estimates and their sampling errors within 1e-12
//! (measured ≤ 1.2e-15); the ROC AUC estimate within 1e-6 absolute (measured ≤ 2.3e-9: NannyML
//! rounds its ROC curve to 5 decimals); the ROC AUC sampling error within 0.3 % of NannyML's
//! (measured 0.27 % synthetic, 0.14 % California: NannyML's own value depends on how numpy's
//! unstable argsort orders tied scores; see `cbpe.rs`) and within 1e-12 of the tie-order
//! expectation computed independently in the golden script.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;

use custos_stats::{
    BinaryPerformance, Calibration, CbpeEstimate, CbpeModel, MetricEstimate, ScoreHistogram,
    StatsError, estimate, needs_calibration,
};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/nannyml/");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/performance/");

fn read_columns(path: &str, wanted: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = wanted
        .iter()
        .map(|w| header.iter().position(|h| h == w).unwrap())
        .collect();
    let mut cols = vec![Vec::new(); wanted.len()];
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        for (c, i) in cols.iter_mut().zip(&idx) {
            c.push(fields[*i].to_owned());
        }
    }
    cols
}

fn golden(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}{name}")).unwrap()).unwrap()
}

/// (actual, predicted, score) rows of a NannyML binary dataset file pair.
struct Dataset {
    reference: Vec<(bool, bool, f64)>,
    analysis: Vec<(bool, bool, f64)>,
}

fn dataset(name: &str, y_true: &str) -> Dataset {
    let parse = |cols: &[Vec<String>], labels: &dyn Fn(usize) -> bool| -> Vec<(bool, bool, f64)> {
        (0..cols[0].len())
            .map(|i| (labels(i), cols[1][i] == "1", cols[0][i].parse().unwrap()))
            .collect()
    };
    let r = read_columns(
        &format!("{DATA}{name}_reference.csv"),
        &["y_pred_proba", "y_pred", y_true],
    );
    let reference = parse(&r, &|i| r[2][i] == "1");
    let a = read_columns(
        &format!("{DATA}{name}_analysis.csv"),
        &["y_pred_proba", "y_pred", "id"],
    );
    let gt = read_columns(&format!("{DATA}{name}_analysis_gt.csv"), &["id", y_true]);
    let labels: HashMap<&str, bool> = gt[0]
        .iter()
        .zip(&gt[1])
        .map(|(id, y)| (id.as_str(), y == "1"))
        .collect();
    let analysis = parse(&a, &|i| labels[a[2][i].as_str()]);
    Dataset {
        reference,
        analysis,
    }
}

fn performance(rows: &[(bool, bool, f64)]) -> BinaryPerformance {
    let mut p = BinaryPerformance::new();
    for (y, yhat, s) in rows {
        p.observe(*y, *yhat, Some(*s)).unwrap();
    }
    p
}

fn scores(rows: &[(bool, bool, f64)]) -> ScoreHistogram {
    let mut h = ScoreHistogram::new();
    for (_, _, s) in rows {
        h.observe(*s).unwrap();
    }
    h
}

const METRICS: [&str; 5] = ["roc_auc", "f1", "accuracy", "precision", "recall"];

fn metric<'a>(e: &'a CbpeEstimate, name: &str) -> &'a MetricEstimate {
    match name {
        "roc_auc" => &e.roc_auc,
        "f1" => &e.f1,
        "accuracy" => &e.accuracy,
        "precision" => &e.precision,
        "recall" => &e.recall,
        _ => unreachable!(),
    }
}

struct Outcome {
    /// Per chunk: (Custos estimate, realized from the shipped labels) of ROC AUC with bands.
    auc: Vec<(MetricEstimate, f64)>,
    nannyml_inside: Vec<bool>,
}

/// Fits on the reference, estimates every 5,000-row analysis chunk and checks agreement with
/// NannyML; returns what the acceptance tests need.
fn check_against_nannyml(name: &str, y_true: &str) -> Outcome {
    let g = golden(&format!("cbpe_{name}.json"));
    let data = dataset(name, y_true);
    let threshold = g["threshold"].as_f64().unwrap();
    for (_, yhat, s) in data.reference.iter().chain(&data.analysis) {
        assert_eq!(*yhat, *s >= threshold, "y_pred is the thresholded score");
    }
    let reference = performance(&data.reference);

    // Calibration decision and knots.
    assert_eq!(
        needs_calibration(&reference).unwrap(),
        g["needs_calibration"].as_bool().unwrap()
    );
    let model = CbpeModel::fit(&reference, threshold).unwrap();
    let knots = model.calibration.knots();
    let want_x = g["knots_x"].as_array().unwrap();
    let want_bits = g["knots_y_bits"].as_array().unwrap();
    assert_eq!(knots.len(), want_x.len());
    for ((x, y), (wx, wb)) in knots.iter().zip(want_x.iter().zip(want_bits)) {
        assert_eq!(*x, wx.as_f64().unwrap());
        assert_eq!(
            y.to_bits(),
            wb.as_u64().unwrap(),
            "knot at {x}: sklearn {wb}"
        );
    }

    // Sampling-error components.
    let nc = &g["nannyml_components"];
    let c = &model.components;
    let close = |got: f64, want: f64, tol: f64, what: &str| {
        let rel = (got - want).abs() / want.abs();
        assert!(rel <= tol, "{name} {what}: {got} vs {want} (rel {rel:e})");
        rel
    };
    for (comp, key) in [
        (c.f1.unwrap(), "f1"),
        (c.precision.unwrap(), "precision"),
        (c.recall.unwrap(), "recall"),
    ] {
        close(comp.std, nc[key][0].as_f64().unwrap(), 1e-12, key);
        close(comp.fraction, nc[key][1].as_f64().unwrap(), 1e-12, key);
    }
    close(
        c.accuracy.unwrap().std,
        nc["accuracy"][0].as_f64().unwrap(),
        1e-12,
        "accuracy",
    );
    let auc_c = c.roc_auc.unwrap();
    let expected = &g["expected_auroc_component"];
    close(
        auc_c.std,
        expected[0].as_f64().unwrap(),
        1e-12,
        "auroc expectation",
    );
    close(
        auc_c.fraction,
        expected[1].as_f64().unwrap(),
        1e-12,
        "auroc fraction",
    );
    let auc_component_rel = close(
        auc_c.std,
        nc["roc_auc"][0].as_f64().unwrap(),
        3e-3,
        "auroc vs nannyml",
    );

    // Per chunk.
    let mut worst: HashMap<&str, [f64; 2]> = HashMap::new();
    let mut outcome = Outcome {
        auc: Vec::new(),
        nannyml_inside: Vec::new(),
    };
    for chunk in g["chunks"].as_array().unwrap() {
        let (start, end) = (
            chunk["start"].as_u64().unwrap() as usize,
            chunk["end"].as_u64().unwrap() as usize,
        );
        let rows = &data.analysis[start..end];
        let est = model.estimate(&scores(rows)).unwrap();
        assert_eq!(est.rows as usize, rows.len());
        let realized = performance(rows).metrics();
        for m in METRICS {
            let want = &chunk[m];
            let got = metric(&est, m);
            let value_diff = (got.value.unwrap() - want["value"].as_f64().unwrap()).abs();
            let se_want = want["sampling_error"].as_f64().unwrap();
            let se_rel = (got.sampling_error.unwrap() - se_want).abs() / se_want;
            let (value_tol, se_tol) = if m == "roc_auc" {
                (1e-6, 3e-3)
            } else {
                (1e-12, 1e-12)
            };
            assert!(
                value_diff <= value_tol,
                "{name} {m} [{start}:{end}): {value_diff:e}"
            );
            assert!(
                se_rel <= se_tol,
                "{name} {m} sampling error: rel {se_rel:e}"
            );
            let w = worst.entry(m).or_insert([0.0; 2]);
            w[0] = w[0].max(value_diff);
            w[1] = w[1].max(se_rel);
        }
        // Realized values from the shipped labels equal NannyML's realized column.
        let realized_auc = realized.roc_auc.unwrap();
        assert!((realized_auc - chunk["roc_auc"]["realized"].as_f64().unwrap()).abs() < 1e-12);
        assert!((realized.f1.unwrap() - chunk["f1"]["realized"].as_f64().unwrap()).abs() < 1e-12);
        let nannyml = &chunk["roc_auc"];
        let (lo, hi) = (
            nannyml["lower"].as_f64().unwrap(),
            nannyml["upper"].as_f64().unwrap(),
        );
        outcome
            .nannyml_inside
            .push(lo <= realized_auc && realized_auc <= hi);
        outcome.auc.push((est.roc_auc, realized_auc));
    }
    let mut parts: Vec<String> = METRICS
        .iter()
        .map(|m| {
            let w = worst[m];
            format!("{m} value {:.1e} se(rel) {:.1e}", w[0], w[1])
        })
        .collect();
    parts.push(format!(
        "auroc component vs NannyML rel {auc_component_rel:.1e}"
    ));
    eprintln!("{name} vs NannyML: {}", parts.join("; "));
    outcome
}

/// The acceptance test: on NannyML's synthetic binary dataset, every analysis chunk's realized
/// ROC AUC (from the shipped labels) lies within 3 sampling errors of Custos's estimate.
#[test]
fn synthetic_estimates_cover_realized_auc_and_match_nannyml() {
    let outcome = check_against_nannyml("synthetic_sample", "work_home_actual");
    assert_eq!(outcome.auc.len(), 10);
    for (i, (est, realized)) in outcome.auc.iter().enumerate() {
        let value = est.value.unwrap();
        let se = est.sampling_error.unwrap();
        let gap = (value - realized).abs();
        eprintln!(
            "chunk {i}: estimated {value:.6} realized {realized:.6} |gap| {gap:.6} ≤ 3σ {:.6}",
            3.0 * se
        );
        assert!(gap <= 3.0 * se, "chunk {i}: realized outside the band");
        assert!(est.band_contains(*realized));
        assert!(outcome.nannyml_inside[i]);
    }
}

/// California housing: CBPE's assumption (no concept shift) fails on its first analysis chunk,
/// for NannyML and Custos alike; what matters here is that both agree number for number and
/// band for band.
#[test]
fn california_housing_matches_nannyml() {
    let outcome = check_against_nannyml("california_housing", "clf_target");
    assert_eq!(outcome.auc.len(), 2);
    for ((est, realized), nannyml_inside) in outcome.auc.iter().zip(&outcome.nannyml_inside) {
        assert_eq!(est.band_contains(*realized), *nannyml_inside);
        eprintln!(
            "california: estimated {:.6} realized {realized:.6} inside band: {nannyml_inside}",
            est.value.unwrap()
        );
    }
}

#[test]
fn calibration_decision_matches_nannyml_on_miscalibrated_references() {
    for case in golden("calibration_cases.json").as_array().unwrap() {
        let mut p = BinaryPerformance::new();
        for bin in case["bins"].as_array().unwrap() {
            let (b, pos, neg) = (
                bin[0].as_u64().unwrap() as u16,
                bin[1].as_u64().unwrap(),
                bin[2].as_u64().unwrap(),
            );
            let s = ScoreHistogram::score_of(b);
            for _ in 0..pos {
                p.observe(true, s >= 0.5, Some(s)).unwrap();
            }
            for _ in 0..neg {
                p.observe(false, s >= 0.5, Some(s)).unwrap();
            }
        }
        assert_eq!(
            needs_calibration(&p).unwrap(),
            case["needs_calibration"].as_bool().unwrap(),
            "{}",
            case["name"]
        );
    }
}

#[test]
fn calibration_edge_cases() {
    let empty = BinaryPerformance::new();
    assert_eq!(needs_calibration(&empty), Err(StatsError::EmptyReference));
    assert_eq!(Calibration::fit(&empty), Err(StatsError::EmptyReference));

    // One class only, or perfectly separated scores: NannyML never calibrates.
    let mut one_class = BinaryPerformance::new();
    let mut separated = BinaryPerformance::new();
    for i in 0..100 {
        let s = f64::from(i) / 100.0;
        one_class.observe(true, s >= 0.5, Some(s)).unwrap();
        separated.observe(s >= 0.5, s >= 0.5, Some(s)).unwrap();
    }
    assert!(!needs_calibration(&one_class).unwrap());
    assert!(!needs_calibration(&separated).unwrap());
    assert!(
        CbpeModel::fit(&separated, 0.5)
            .unwrap()
            .calibration
            .is_identity()
    );

    // Hand-fitted isotonic: bins 0.2 (1 of 2 positive), 0.4 (0 of 1), 0.6 (2 of 2) →
    // means 0.5, 0, 1 → PAVA pools the first two to 1/3 → knots (0.2, 1/3), (0.4, 1/3),
    // (0.6, 1); interpolation in between, clipping outside.
    let mut r = BinaryPerformance::new();
    for (y, s) in [
        (true, 0.2),
        (false, 0.2),
        (false, 0.4),
        (true, 0.6),
        (true, 0.6),
    ] {
        r.observe(y, s >= 0.5, Some(s)).unwrap();
    }
    let cal = Calibration::fit(&r).unwrap();
    assert_eq!(
        cal.knots(),
        &[(0.2, 1.0 / 3.0), (0.4, 1.0 / 3.0), (0.6, 1.0)]
    );
    assert_eq!(cal.calibrate(0.0), 1.0 / 3.0);
    assert_eq!(cal.calibrate(0.3), 1.0 / 3.0);
    assert!((cal.calibrate(0.5) - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!(cal.calibrate(0.9), 1.0);
    assert_eq!(Calibration::identity().calibrate(0.37), 0.37);
}

#[test]
fn estimate_by_hand() {
    // Identity calibration, scores {0.9, 0.6, 0.2}, threshold 0.5:
    // TP = 0.9 + 0.6 = 1.5, FP = 0.1 + 0.4 = 0.5, FN = 0.2, TN = 0.8.
    let mut h = ScoreHistogram::new();
    for s in [0.9, 0.6, 0.2] {
        h.observe(s).unwrap();
    }
    let e = estimate(&Calibration::identity(), &h, 0.5).unwrap();
    let v = |m: &MetricEstimate| m.value.unwrap();
    assert!((v(&e.accuracy) - 2.3 / 3.0).abs() < 1e-15);
    assert!((v(&e.precision) - 0.75).abs() < 1e-15);
    assert!((v(&e.recall) - 1.5 / 1.7).abs() < 1e-15);
    assert!((v(&e.f1) - 1.5 / (1.5 + 0.35)).abs() < 1e-15);
    // ROC from the top: (fp, tp) = (0, 0) → (0.1, 0.9) → (0.5, 1.5) → (1.3, 1.7);
    // area = [0.1·0.9 + 0.4·2.4 + 0.8·3.2] / 2 = 1.805, / (1.7 · 1.3).
    assert!((v(&e.roc_auc) - 1.805 / (1.7 * 1.3)).abs() < 1e-15);
    assert_eq!(e.roc_auc.sampling_error, None);

    // All calibrated probabilities 0: ROC AUC undefined, as NannyML's NaN.
    let mut zero = ScoreHistogram::new();
    zero.observe(0.0).unwrap();
    let z = estimate(&Calibration::identity(), &zero, 0.5).unwrap();
    assert_eq!(z.roc_auc.value, None);
    assert_eq!(z.precision.value, Some(0.0));

    assert_eq!(
        estimate(&Calibration::identity(), &ScoreHistogram::new(), 0.5),
        Err(StatsError::EmptyCurrent)
    );
    assert!(estimate(&Calibration::identity(), &h, f64::NAN).is_err());
}

#[test]
fn model_serde_round_trip_and_hostile_input() {
    let data = dataset("synthetic_sample", "work_home_actual");
    let model = CbpeModel::fit(&performance(&data.reference[..5000]), 0.48).unwrap();
    let json = serde_json::to_string(&model).unwrap();
    let back: CbpeModel = serde_json::from_str(&json).unwrap();
    // The workspace's serde_json is built without float_roundtrip and moves some floats by one
    // ULP, so compare value by value with a relative tolerance of a few ULPs.
    let (k0, k1) = (model.calibration.knots(), back.calibration.knots());
    assert_eq!(k0.len(), k1.len());
    for ((x0, y0), (x1, y1)) in k0.iter().zip(k1) {
        assert_eq!(x0, x1);
        assert!((y0 - y1).abs() <= 4.0 * f64::EPSILON * y0.abs());
    }
    assert_eq!(back.threshold, model.threshold);
    let (c0, c1) = (model.components.f1.unwrap(), back.components.f1.unwrap());
    assert!((c0.std - c1.std).abs() <= 4.0 * f64::EPSILON * c0.std);
    // A one-ULP dip between knots (what such a reader can produce) is repaired, not refused.
    let dip: Calibration =
        serde_json::from_str(r#"{"knots":[[0.1,0.30000000000000004],[0.2,0.3]]}"#).unwrap();
    assert_eq!(
        dip.knots(),
        &[(0.1, 0.30000000000000004), (0.2, 0.30000000000000004)]
    );

    let bad = [
        r#"{"knots":[[0.5,0.2],[0.4,0.3]]}"#,
        r#"{"knots":[[0.1,0.5],[0.4,0.3]]}"#,
        r#"{"knots":[[0.1,1.5]]}"#,
        r#"{"knots":[[-0.1,0.5]]}"#,
    ];
    for b in bad {
        assert!(serde_json::from_str::<Calibration>(b).is_err(), "{b}");
    }
    assert!(
        serde_json::from_str::<Calibration>(r#"{"knots":[]}"#)
            .unwrap()
            .is_identity()
    );
    let mut v: Value = serde_json::from_str(&json).unwrap();
    v["components"]["f1"]["fraction"] = Value::from(0.0);
    assert!(serde_json::from_value::<CbpeModel>(v).is_err());
}
