//! End-to-end tests of monitoring configuration, reference uploads and chunked drift, against a
//! real server on SQLite and on PostgreSQL.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a panic is a test failure"
)]

mod common;

use chrono::{Duration, TimeZone, Utc};
use common::{BACKENDS, Backend, Site, fraud_rows};
use serde_json::{Value, json};

fn t0() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
}

const PREDICTIONS: &str = "/api/v1/models/fraud-v3/predictions";
const CURRENT_DAY: &str = "current_start=2026-11-21T00:00:00Z&current_end=2026-11-22T00:00:00Z";

/// A day of shifted traffic (the current window), 200 rows per hour.
async fn current_day(s: &common::Server) {
    for h in 0..24 {
        let at = t0() + Duration::hours(24 + h);
        let rows = fraud_rows(&format!("c{h}"), at, 200, true);
        let r = s.post_ndjson(PREDICTIONS, Some(&s.admin), &rows).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

/// Reference rows as training data usually are: no event id, no event time, a label column.
fn reference_csv(n: usize) -> Vec<u8> {
    let mut csv = String::from("amount,country,email,score,is_fraud\n");
    for (i, row) in fraud_rows("ref", t0(), n, false).iter().enumerate() {
        csv.push_str(&format!(
            "{},{},{},{},{}\n",
            row["amount"],
            row["country"].as_str().unwrap(),
            row["email"].as_str().unwrap(),
            row["score"],
            i % 7 == 0
        ));
    }
    csv.into_bytes()
}

fn feature<'a>(body: &'a Value, name: &str) -> &'a Value {
    body["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["feature"] == name)
        .unwrap_or_else(|| panic!("no feature {name} in {body}"))
}

async fn upload(
    s: &common::Server,
    token: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> common::Reply {
    s.send(
        reqwest::Method::POST,
        "/api/v1/models/fraud-v3/reference?label_field=is_fraud&name=train-2026-10",
        Some(token),
        Some((content_type, bytes)),
    )
    .await
}

#[tokio::test]
async fn a_reference_upload_is_profiled_sealed_and_used_by_drift() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        current_day(&s).await;
        let uploader = s.token(&[("references:write", "fraud-v3")]).await;
        let reader = s
            .token(&[("drift:read", "fraud-v3"), ("models:read", "fraud-v3")])
            .await;

        // Without any reference, drift says what is missing.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("no uploaded reference")
        );

        let csv = reference_csv(5_000);
        let r = upload(&s, &uploader, "text/csv", csv.clone()).await;
        assert_eq!(r.status, 201, "{backend:?}: {:?}", r.body);
        assert_eq!(r.body["rows"], 5_000);
        assert_eq!(r.body["name"], "train-2026-10");
        assert_eq!(r.body["label_field"], "is_fraud");
        let sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&csv))
        };
        assert_eq!(r.body["sha256"], sha, "lineage: the file's hash");
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ref_"));

        let listed = s
            .get("/api/v1/models/fraud-v3/reference", Some(&reader))
            .await;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["references"][0]["id"], id.as_str());

        // Drift against the newest upload by default: amount and country moved, score did not.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["reference"]["kind"], "uploaded");
        assert_eq!(r.body["reference"]["id"], id.as_str());
        assert_eq!(r.body["reference"]["rows"], 5_000);
        let amount = feature(&r.body, "amount");
        // 5,000 reference rows: the default rule picks normed Wasserstein for numbers and
        // Jensen–Shannon for categories.
        assert_eq!(amount["method"], "wasserstein");
        assert_eq!(amount["threshold_source"], "default_rule");
        assert_eq!(amount["drifted"], true);
        assert_eq!(amount["reference_count"], 5_000);
        assert_eq!(feature(&r.body, "country")["method"], "jensen_shannon");
        assert_eq!(feature(&r.body, "country")["drifted"], true);
        assert_eq!(feature(&r.body, "score")["drifted"], false);
        assert!(r.body.get("config_version").is_none());

        // Hourly chunks: every hour of the shifted day drifts on amount.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&chunk=hour&reference={id}"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let chunks = r.body["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 24);
        for chunk in chunks {
            assert_eq!(chunk["rows"], 200);
            let amount = chunk["features"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["feature"] == "amount")
                .unwrap();
            assert_eq!(amount["drifted"], true, "{chunk}");
        }
        // Chunks by row count group whole hours: 200 rows an hour, 1,000 rows = 5 hours.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&chunk=rows:1000"),
                Some(&reader),
            )
            .await;
        let chunks = r.body["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 5, "4 full chunks and the 4-hour rest");
        assert_eq!(chunks[0]["rows"], 1_000);
        assert_eq!(chunks[4]["rows"], 800);
        // A trailing reference: the 24 hours before the current window hold no traffic here,
        // so every feature is skipped; naming two references at once is refused.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&reference_trailing_hours=24"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["reference"]["kind"], "window");
        assert_eq!(r.body["reference"]["start"], "2026-11-20T00:00:00Z");
        assert_eq!(r.body["total_features"], 0);
        let r = s
            .get(
                &format!(
                    "/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&reference_trailing_hours=24&reference={id}"
                ),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 400);
        // Unknown reference ids and bad chunk specs are clear errors.
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&reference=ref_nope"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 404);
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}&chunk=fortnight"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.status, 400);

        // NDJSON works the same way and becomes the newest reference.
        let mut ndjson = Vec::new();
        for row in fraud_rows("nd", t0(), 300, false) {
            let mut row = row.as_object().unwrap().clone();
            row.insert("is_fraud".into(), json!(0));
            serde_json::to_writer(&mut ndjson, &row).unwrap();
            ndjson.push(b'\n');
        }
        let r = upload(&s, &uploader, "application/x-ndjson", ndjson).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}"),
                Some(&reader),
            )
            .await;
        assert_eq!(r.body["reference"]["rows"], 300);
        // 300 reference rows: the small-sample rule picks the tests.
        assert_eq!(feature(&r.body, "amount")["method"], "kolmogorov_smirnov");
        assert!(feature(&r.body, "amount")["p_value"].as_f64().unwrap() < 1e-6);

        // The upload is audited with its hash and row count, and the chain verifies.
        let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
        let uploads: Vec<&Value> = audit.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["record"])
            .filter(|e| e["action"] == "reference.upload")
            .collect();
        assert_eq!(uploads.len(), 2, "{:?}", audit.body);
        assert_eq!(uploads[0]["detail"]["sha256"], sha);
        let verify = s.get("/api/v1/audit/verify", Some(&s.admin)).await;
        assert_eq!(verify.body["ok"], true, "{:?}", verify.body);
        s.stop().await;
    }
}

#[tokio::test]
async fn a_bad_reference_file_is_refused_whole_naming_rows_and_never_values() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    let mut csv = String::from_utf8(reference_csv(50)).unwrap();
    csv.push_str("not-a-number-SECRET,DE,a@b.example,0.5,false\n");
    csv.push_str("12.5,DE,a@b.example,1.5,maybe-SECRET\n");
    let r = upload(&s, &s.admin, "text/csv", csv.into_bytes()).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let text = r.body.to_string();
    assert!(!text.contains("SECRET"), "values are never echoed: {text}");
    assert!(text.contains("amount"), "{text}");

    // Row 52 has a score outside [0, 1] and a label that is not 0/1/true/false.
    let mut csv = String::from_utf8(reference_csv(50)).unwrap();
    csv.push_str("12.5,DE,a@b.example,1.5,maybe-SECRET\n");
    let r = upload(&s, &s.admin, "text/csv", csv.into_bytes()).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let rows = r.body["rows"].as_array().unwrap();
    let fields: Vec<&str> = rows.iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"score"), "{rows:?}");
    assert!(fields.contains(&"is_fraud"), "{rows:?}");
    assert!(rows.iter().all(|e| e["row"] == 50), "{rows:?}");
    assert!(!r.body.to_string().contains("SECRET"));

    // Not a Parquet file at all, an empty file, an unknown media type, a label column that is
    // a feature: all refused.
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/fraud-v3/reference",
            Some(&s.admin),
            Some((
                "application/vnd.apache.parquet",
                b"PAR1 not really PAR1".to_vec(),
            )),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["code"], "invalid_file");
    let r = upload(&s, &s.admin, "text/csv", b"amount,country\n".to_vec()).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = upload(&s, &s.admin, "application/pdf", b"%PDF".to_vec()).await;
    assert_eq!(r.status, 400);
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/fraud-v3/reference?label_field=amount",
            Some(&s.admin),
            Some(("text/csv", reference_csv(5))),
        )
        .await;
    assert_eq!(r.status, 400);

    let listed = s
        .get("/api/v1/models/fraud-v3/reference", Some(&s.admin))
        .await;
    assert_eq!(listed.body["references"], json!([]), "nothing was stored");
    s.stop().await;
}

#[tokio::test]
async fn monitoring_config_is_checked_versioned_audited_and_drives_drift() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        current_day(&s).await;
        let r = upload(&s, &s.admin, "text/csv", reference_csv(5_000)).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let configurer = s.token(&[("monitors:write", "fraud-v3")]).await;
        let path = "/api/v1/models/fraud-v3/monitoring";

        let r = s.get(path, Some(&s.admin)).await;
        assert_eq!(r.status, 200);
        assert!(r.body.get("version").is_none(), "never configured");
        assert_eq!(r.body["config"]["drift"]["drift_share"], 0.5);

        // Every problem is named at once.
        let bad = json!({"drift": {"drift_share": 2,
            "features": {"country": {"method": "kolmogorov_smirnov"}, "ghost": {"method": "psi"}}}});
        let r = s
            .send(
                reqwest::Method::PUT,
                path,
                Some(&configurer),
                Some(("application/json", serde_json::to_vec(&bad).unwrap())),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        let message = r.body["message"].as_str().unwrap();
        for needle in ["drift_share", "country", "ghost"] {
            assert!(message.contains(needle), "{message}");
        }

        let config = json!({"drift": {
        "drift_share": 0.25,
        "exclude": ["email"],
        "features": {
            "amount": {"method": "kolmogorov_smirnov", "threshold": 0.01},
            "score": {"method": "psi", "data_driven_k": 3}
        }}});
        let r = s
            .send(
                reqwest::Method::PUT,
                path,
                Some(&configurer),
                Some(("application/json", serde_json::to_vec(&config).unwrap())),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["version"], 1);
        assert!(r.body["updated_by"].as_str().unwrap().starts_with("tok_"));

        let r = s
            .get(
                &format!("/api/v1/models/fraud-v3/drift?{CURRENT_DAY}"),
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["config_version"], 1);
        assert_eq!(r.body["dataset_drift_threshold"], 0.25);
        let amount = feature(&r.body, "amount");
        assert_eq!(amount["method"], "kolmogorov_smirnov");
        assert_eq!(amount["threshold"], 0.01);
        assert_eq!(amount["threshold_source"], "feature");
        assert_eq!(amount["drifted"], true);
        let score = feature(&r.body, "score");
        assert_eq!(score["method"], "psi");
        assert_eq!(score["threshold_source"], "data_driven", "{score}");
        assert_eq!(score["drifted"], false, "{score}");
        let threshold = score["threshold"].as_f64().unwrap();
        assert!(threshold > 0.0 && threshold < 0.1, "{threshold}");
        // Unconfigured features keep the default rule; excluded ones are skipped, not judged.
        assert_eq!(
            feature(&r.body, "country")["threshold_source"],
            "default_rule"
        );
        let skipped = r.body["skipped"].as_array().unwrap();
        assert!(
            skipped
                .iter()
                .any(|f| f["feature"] == "email"
                    && f["reason"].as_str().unwrap().contains("excluded")),
            "{skipped:?}"
        );
        assert!(
            r.body["features"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["feature"] != "email")
        );

        // A second version; the change is audited with before and after.
        let r = s
            .send(
                reqwest::Method::PUT,
                path,
                Some(&configurer),
                Some(("application/json", b"{}".to_vec())),
            )
            .await;
        assert_eq!(r.body["version"], 2);
        let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
        let changes: Vec<&Value> = audit.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["record"])
            .filter(|e| e["action"] == "monitoring.update")
            .collect();
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[1]["detail"]["before"]["drift"]["drift_share"], 0.25);
        assert_eq!(changes[1]["detail"]["after"]["drift"]["drift_share"], 0.5);
        s.stop().await;
    }
}

/// A real reference file: NannyML's multiclass credit-card data (60,000 rows, Parquet).
#[tokio::test]
async fn the_nannyml_parquet_reference_uploads() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/nannyml/mc_reference.parquet"
    );
    let bytes = std::fs::read(path).expect("shared/data/nannyml beside the repository");
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    let spec = json!({"name": "credit-card", "id_field": "id", "timestamp_field": "timestamp",
        "unknown_fields": "drop",
        "features": [
            {"name": "acq_channel", "type": "categorical"},
            {"name": "app_behavioral_score", "type": "numeric"},
            {"name": "requested_credit_limit", "type": "numeric"},
            {"name": "app_channel", "type": "categorical"},
            {"name": "credit_bureau_score", "type": "numeric"},
            {"name": "stated_income", "type": "numeric"},
            {"name": "is_customer", "type": "boolean"}],
        "prediction": {"name": "y_pred", "type": "multiclass",
                       "classes": ["prepaid_card", "highstreet_card", "upmarket_card"]}});
    let r = s.post_json("/api/v1/models", Some(&s.admin), &spec).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/credit-card/reference?label_field=y_true",
            Some(&s.admin),
            Some(("application/vnd.apache.parquet", bytes)),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["rows"], 60_000);
    s.stop().await;
}

#[tokio::test]
async fn data_quality_against_the_reference_volume_and_freshness() {
    for backend in BACKENDS {
        let site = Site::new(backend);
        let s = site.start().await;
        s.register_fraud_model().await;
        current_day(&s).await;
        let reader = s.token(&[("profiles:read", "fraud-v3")]).await;
        let path =
            "/api/v1/models/fraud-v3/quality?start=2026-11-21T00:00:00Z&end=2026-11-22T00:00:00Z";

        // Without a reference: shares only, no range or category checks.
        let r = s.get(path, Some(&reader)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert!(r.body.get("reference").is_none());
        let amount = r.body["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["feature"] == "amount")
            .unwrap();
        assert_eq!(amount["report"]["count"], 4_800);
        assert_eq!(amount["report"]["missing_share"], 0.0);
        assert!(
            amount["report"]
                .get("out_of_range")
                .is_none_or(Value::is_null)
        );

        let r = upload(&s, &s.admin, "text/csv", reference_csv(5_000)).await;
        assert_eq!(r.status, 201);
        let r = s.get(path, Some(&reader)).await;
        assert_eq!(r.body["reference"]["kind"], "uploaded");
        let report = |name: &str| {
            r.body["features"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["feature"] == name)
                .unwrap()["report"]
                .clone()
        };
        // Shifted amounts (2.5 x + 50) lie almost all above the reference's maximum.
        let out = report("amount")["out_of_range"]["share"].as_f64().unwrap();
        assert!(out > 0.9, "{out}");
        // Three of the current window's four countries were never seen in the reference.
        let unseen = &report("country")["unseen"];
        let share = unseen["share"].as_f64().unwrap();
        assert!((0.6..0.9).contains(&share), "{unseen}");
        let names: Vec<&str> = unseen["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[0].as_str().unwrap())
            .collect();
        for country in ["BR", "IN", "NG"] {
            assert!(names.contains(&country), "{unseen}");
        }
        // 24 complete hours judged; the first hours have an empty baseline and are high.
        assert_eq!(r.body["volume"].as_array().unwrap().len(), 24);
        assert!(r.body["anomalous_hours"].as_u64().unwrap() >= 1);
        // The newest event is days old: the model counts as silent.
        assert_eq!(
            r.body["freshness"]["verdict"], "stale",
            "{:?}",
            r.body["freshness"]
        );
        assert!(
            r.body["last_event"]
                .as_str()
                .unwrap()
                .starts_with("2026-11-21T23:")
        );
        assert_eq!(r.body["missing_fields"], json!([]));

        // A client that stops sending `country`: the field shows up as missing.
        let mut rows = fraud_rows("gap", t0() + Duration::hours(48), 50, false);
        for row in &mut rows {
            row.as_object_mut().unwrap().remove("country");
        }
        let r = s.post_ndjson(PREDICTIONS, Some(&s.admin), &rows).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let r = s
            .get(
                "/api/v1/models/fraud-v3/quality?start=2026-11-22T00:00:00Z&end=2026-11-22T01:00:00Z",
                Some(&reader),
            )
            .await;
        assert_eq!(r.body["missing_fields"], json!(["country"]), "{:?}", r.body);

        // Refused rows are counted per field by hour of arrival (never their values).
        let mut rows = fraud_rows("bad", t0(), 3, false);
        rows[0]["amount"] = json!("12,50 EUR");
        rows[1]["amount"] = json!("n/a");
        rows[1]["score"] = json!(7);
        rows[2]["coupon_code"] = json!("SECRET-COUPON");
        let r = s.post_ndjson(PREDICTIONS, Some(&s.admin), &rows).await;
        assert_eq!(r.status, 422);
        let now = Utc::now();
        let window = format!(
            "/api/v1/models/fraud-v3/quality?start={}&end={}",
            (now - Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            (now + Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let r = s.get(&window, Some(&reader)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(
            r.body["rejected"],
            json!([
                {"field": "(undeclared field)", "rows": 1},
                {"field": "amount", "rows": 2},
                {"field": "score", "rows": 1}
            ])
        );
        assert!(!r.body.to_string().contains("SECRET-COUPON"));
        assert!(!r.body.to_string().contains("coupon_code"));
        s.stop().await;
    }
}

#[tokio::test]
async fn reports_as_json_and_as_one_self_contained_html_file() {
    let site = Site::new(Backend::Sqlite);
    let s = site.start().await;
    s.register_fraud_model().await;
    current_day(&s).await;
    let r = upload(&s, &s.admin, "text/csv", reference_csv(5_000)).await;
    assert_eq!(r.status, 201);
    let path = format!("/api/v1/models/fraud-v3/report?{CURRENT_DAY}&chunk=day");

    // Drift only for a token that may read drift only.
    let drift_only = s.token(&[("drift:read", "fraud-v3")]).await;
    let r = s.get(&path, Some(&drift_only)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["drift"]["dataset_drift"], true);
    assert!(r.body.get("quality").is_none());
    assert!(r.body.get("performance").is_none());
    let everything = s
        .token(&[
            ("drift:read", "fraud-v3"),
            ("profiles:read", "fraud-v3"),
            ("performance:read", "fraud-v3"),
        ])
        .await;
    let r = s.get(&path, Some(&everything)).await;
    assert!(r.body["quality"]["features"].is_array());
    assert_eq!(r.body["performance"]["overall"]["predictions"], 4_800);

    let r = s
        .get(&format!("{path}&format=html"), Some(&everything))
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"custos-report-fraud-v3-")
    );
    let html = r.body.as_str().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for needle in [
        "Drift report: fraud-v3",
        "amount",
        "country",
        "wasserstein",
        "jensen_shannon",
        "<svg",
        "Data quality",
        "Performance",
        "Drift over time",
    ] {
        assert!(html.contains(needle), "the report lacks {needle}");
    }
    // Self-contained: nothing is fetched when it is opened.
    for external in ["<script", "<link", "src=", "url("] {
        assert!(!html.contains(external), "the report refers to {external}");
    }
    let r = s
        .get(&format!("{path}&format=pdf"), Some(&everything))
        .await;
    assert_eq!(r.status, 400);
    s.stop().await;
}
