//! Performance end to end on NannyML's synthetic binary dataset (work from home): a labelled
//! reference uploaded as CSV, 50,000 analysis predictions streamed in, labels arriving later.
//! Before the labels, CBPE estimates each 5,000-row chunk; after them, the realized ROC AUC of
//! every chunk must lie within the estimate's band (NannyML's acceptance criterion), and both
//! numbers must match what NannyML 0.13.1 computes on the same chunks.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code: a panic is a test failure"
)]

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{Backend, Site};
use serde_json::{Value, json};

fn data(name: &str) -> String {
    let path = format!(
        "{}/../../../shared/data/nannyml/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

const FEATURES: [(&str, &str); 7] = [
    ("distance_from_office", "numeric"),
    ("salary_range", "categorical"),
    ("gas_price_per_litre", "numeric"),
    ("public_transportation_cost", "numeric"),
    ("wfh_prev_workday", "boolean"),
    ("workday", "categorical"),
    ("tenure", "numeric"),
];

/// The analysis rows as predictions: event time compressed to one row every 72 s (50 rows an
/// hour, so 5,000 rows are exactly 100 hours and `chunk=rows:5000` cuts NannyML's chunks).
fn analysis_rows() -> Vec<Value> {
    let text = data("synthetic_sample_analysis.csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    lines
        .enumerate()
        .map(|(i, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            let cell = |name: &str| cells[header.iter().position(|h| *h == name).unwrap()];
            let mut row = serde_json::Map::new();
            row.insert("id".into(), json!(cell("id")));
            row.insert(
                "timestamp".into(),
                json!((t0 + Duration::seconds(72 * i as i64)).to_rfc3339()),
            );
            for (name, kind) in FEATURES {
                let value = match kind {
                    "numeric" => json!(cell(name).parse::<f64>().unwrap()),
                    "boolean" => json!(cell(name) == "True"),
                    _ => json!(cell(name)),
                };
                row.insert(name.into(), value);
            }
            row.insert(
                "y_pred_proba".into(),
                json!(cell("y_pred_proba").parse::<f64>().unwrap()),
            );
            Value::Object(row)
        })
        .collect()
}

fn labels() -> Vec<Value> {
    data("synthetic_sample_analysis_gt.csv")
        .lines()
        .skip(1)
        .map(|line| {
            let (id, label) = line.split_once(',').unwrap();
            json!({"event_id": id, "label": label.parse::<u8>().unwrap()})
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cbpe_before_labels_and_realized_after_agree_with_nannyml() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    let features: Vec<Value> = FEATURES
        .iter()
        .map(|(name, kind)| json!({"name": name, "type": kind}))
        .collect();
    let spec = json!({"name": "wfh", "id_field": "id", "timestamp_field": "timestamp",
        "unknown_fields": "drop", "features": features,
        "prediction": {"name": "y_pred_proba", "type": "binary_score"}});
    let r = s.post_json("/api/v1/models", Some(&s.admin), &spec).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // The dataset's y_pred is y_pred_proba >= 0.48: that is this model's decision threshold.
    let r = s
        .send(
            reqwest::Method::PUT,
            "/api/v1/models/wfh/monitoring",
            Some(&s.admin),
            Some((
                "application/json",
                br#"{"performance": {"decision_threshold": 0.48}}"#.to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/wfh/reference?label_field=work_home_actual",
            Some(&s.admin),
            Some((
                "text/csv",
                data("synthetic_sample_reference.csv").into_bytes(),
            )),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["rows"], 50_000);

    let rows = analysis_rows();
    assert_eq!(rows.len(), 50_000);
    for batch in rows.chunks(5_000) {
        let r = s
            .post_ndjson("/api/v1/models/wfh/predictions", Some(&s.admin), batch)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let reader = s.token(&[("performance:read", "wfh")]).await;
    let query = "/api/v1/models/wfh/performance?start=2026-01-01T00:00:00Z\
                 &end=2026-02-12T00:00:00Z&chunk=rows:5000";

    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../custos-stats/tests/fixtures/performance/cbpe_synthetic_sample.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let nannyml = fixture["chunks"].as_array().unwrap();

    // No labels yet: nothing realized, every chunk estimated.
    let r = s.get(query, Some(&reader)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["overall"]["predictions"], 50_000);
    assert_eq!(r.body["overall"]["labelled"], 0);
    assert!(
        r.body["estimation_reference"]
            .as_str()
            .unwrap()
            .starts_with("ref_")
    );
    let chunks = r.body["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 10);
    for (chunk, expected) in chunks.iter().zip(nannyml) {
        assert_eq!(chunk["predictions"], 5_000);
        assert!(chunk.get("realized").is_none());
        let auc = &chunk["estimated"]["roc_auc"];
        let want = &expected["roc_auc"];
        let diff = (auc["value"].as_f64().unwrap() - want["value"].as_f64().unwrap()).abs();
        assert!(diff < 1e-6, "estimated ROC AUC {auc} vs NannyML {want}");
        let (se, want_se) = (
            auc["sampling_error"].as_f64().unwrap(),
            want["sampling_error"].as_f64().unwrap(),
        );
        assert!(
            (se - want_se).abs() / want_se < 0.01,
            "sampling error {se} vs NannyML {want_se}"
        );
        for metric in ["accuracy", "f1"] {
            let got = chunk["estimated"][metric]["value"].as_f64().unwrap();
            let want = expected[metric]["value"].as_f64().unwrap();
            assert!((got - want).abs() < 1e-9, "{metric}: {got} vs {want}");
        }
    }

    // The labels arrive later.
    let labels = labels();
    for batch in labels.chunks(10_000) {
        let r = s
            .post_ndjson("/api/v1/models/wfh/labels", Some(&s.admin), batch)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let r = s
        .get(&format!("{query}&segment_by=workday"), Some(&reader))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["overall"]["labelled"], 50_000);
    for (chunk, expected) in r.body["chunks"].as_array().unwrap().iter().zip(nannyml) {
        assert_eq!(chunk["labelled"], 5_000);
        let realized = chunk["realized"]["roc_auc"].as_f64().unwrap();
        let want = expected["roc_auc"]["realized"].as_f64().unwrap();
        assert!(
            (realized - want).abs() < 1e-12,
            "realized {realized} vs {want}"
        );
        let accuracy = chunk["realized"]["accuracy"].as_f64().unwrap();
        assert!((accuracy - expected["accuracy"]["realized"].as_f64().unwrap()).abs() < 1e-12);
        // The acceptance criterion: the realized value lies in the estimate's band.
        let estimate = &chunk["estimated"]["roc_auc"];
        let (value, se) = (
            estimate["value"].as_f64().unwrap(),
            estimate["sampling_error"].as_f64().unwrap(),
        );
        assert!(
            (realized - value).abs() <= 3.0 * se,
            "chunk {}: realized {realized}, estimate {value} ± 3·{se}",
            chunk["start"]
        );
    }
    let segments = r.body["segments"].as_array().unwrap();
    assert_eq!(r.body["segment_by"], "workday");
    assert_eq!(segments.len(), 5, "Monday to Friday: {segments:?}");
    let total: u64 = segments
        .iter()
        .map(|seg| seg["labelled"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 50_000);
    // Confusion matrix of the whole window: its cells add up to the labelled rows.
    let confusion = &r.body["overall"]["realized"]["confusion"];
    let cells: u64 = ["tp", "fp", "tn", "fn"]
        .iter()
        .map(|c| confusion[c].as_u64().unwrap_or_default())
        .sum();
    assert_eq!(cells, 50_000, "{confusion}");

    // Segmenting by a numeric field is refused.
    let r = s
        .get(&format!("{query}&segment_by=tenure"), Some(&reader))
        .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}
