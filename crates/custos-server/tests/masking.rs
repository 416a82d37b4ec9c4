//! Every masking kind end to end, on both stores: values are masked before anything is profiled
//! or sealed, so neither the API, the SQLite files nor a `pg_dump` holds an original value; the
//! same input always gives the same masked value; a configuration that cannot protect (an FF1
//! domain under 1,000,000 values, settings of another policy) is refused at registration with a
//! message naming the field; a value too short for its FF1 format is refused (422) naming row
//! and field, without echoing it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use chrono::{TimeZone, Utc};
use common::{Backend, Site};
use serde_json::{Value, json};

const CARD: &str = "4111-1111-1111-1111";
const PHONE: &str = "+44 20 7946 0958";
const POSTCODE: &str = "SW1A 1AA";
const AGE: f64 = 37.0;
const BIRTHDAY: &str = "1990-05-17T08:30:00Z";

fn spec() -> Value {
    json!({
        "name": "kyc-v1",
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [
            {"name": "card", "type": "categorical", "pii": true, "masking": "ff1",
             "masking_options": {"alphabet": "digits", "min_length": 12}},
            {"name": "phone", "type": "categorical", "pii": true, "masking": "mask",
             "masking_options": {"keep_last": 4}},
            {"name": "postcode", "type": "categorical", "pii": true, "masking": "generalize",
             "masking_options": {"keep_prefix": 3}},
            {"name": "age", "type": "numeric", "pii": true, "masking": "generalize",
             "masking_options": {"bucket_width": 10}},
            {"name": "birthday", "type": "timestamp", "pii": true, "masking": "generalize",
             "masking_options": {"truncate_to": "year"}},
            {"name": "amount", "type": "numeric"}
        ],
        "prediction": {"name": "score", "type": "binary_score"}
    })
}

fn rows(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "event_id": format!("kyc-{i}"),
                "ts": Utc.with_ymd_and_hms(2026, 11, 20, 0, 10, 0).unwrap().to_rfc3339(),
                "card": CARD, "phone": PHONE, "postcode": POSTCODE, "age": AGE,
                "birthday": BIRTHDAY, "amount": i as f64, "score": 0.5,
            })
        })
        .collect()
}

const WINDOW: &str = "start=2026-11-20T00:00:00Z&end=2026-11-20T01:00:00Z";

#[tokio::test]
async fn every_masking_kind_hides_the_original_before_storage() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let site = Site::new(backend);
        let s = site.start().await;
        let r = s.post_json("/api/v1/models", Some(&s.admin), &spec()).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let r = s
            .post_ndjson(
                "/api/v1/models/kyc-v1/predictions",
                Some(&s.admin),
                &rows(30),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);

        let profile = |feature: &'static str| {
            let s = &s;
            async move {
                let r = s
                    .get(
                        &format!("/api/v1/models/kyc-v1/features/{feature}/profile?{WINDOW}"),
                        Some(&s.admin),
                    )
                    .await;
                assert_eq!(r.status, 200, "{feature}: {:?}", r.body);
                r.body["summary"].clone()
            }
        };
        // ff1: one distinct value (deterministic), the card's shape, not the card.
        let card = profile("card").await.to_string();
        assert!(!card.contains(CARD) && !card.contains("4111"), "{card}");
        let shaped = regex_like_card(&card).expect("a dddd-dddd-dddd-dddd value");
        assert_ne!(shaped, CARD);
        // mask: the last four digits only.
        let phone = profile("phone").await.to_string();
        assert!(phone.contains("************0958"), "{phone}");
        assert!(!phone.contains("7946"), "{phone}");
        // generalize: the postcode's district, the age's decade, the birthday's year.
        let postcode = profile("postcode").await.to_string();
        assert!(postcode.contains("\"SW1\""), "{postcode}");
        assert!(!postcode.contains("1AA"), "{postcode}");
        let age = profile("age").await;
        assert_eq!(age["detail"]["min"].as_f64(), Some(30.0), "{age}");
        assert_eq!(age["detail"]["max"].as_f64(), Some(30.0), "{age}");
        let birthday = profile("birthday").await;
        let jan_first = Utc
            .with_ymd_and_hms(1990, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp() as f64;
        assert_eq!(
            birthday["detail"]["min"].as_f64(),
            Some(jan_first),
            "{birthday}"
        );
        assert_eq!(
            birthday["detail"]["max"].as_f64(),
            Some(jan_first),
            "{birthday}"
        );

        // Configurations that cannot protect are refused, naming the field.
        let mut small = spec();
        small["name"] = json!("kyc-small");
        small["features"][0]["masking_options"]["min_length"] = json!(5);
        let r = s.post_json("/api/v1/models", Some(&s.admin), &small).await;
        assert_eq!(r.status, 400);
        let message = r.body["message"].as_str().unwrap();
        assert!(
            message.contains("card") && message.contains("1000000"),
            "{message}"
        );
        let mut foreign = spec();
        foreign["name"] = json!("kyc-foreign");
        foreign["features"][1]["masking_options"] = json!({"bucket_width": 5});
        let r = s
            .post_json("/api/v1/models", Some(&s.admin), &foreign)
            .await;
        assert_eq!(r.status, 400);
        assert!(
            r.body["message"]
                .as_str()
                .unwrap()
                .contains("bucket_width does not apply")
        );

        // A card too short for its format: the row and field are named, the value is not.
        let mut short = rows(3);
        short[1]["card"] = json!("4111-11");
        short[1]["event_id"] = json!("kyc-short");
        let r = s
            .post_ndjson("/api/v1/models/kyc-v1/predictions", Some(&s.admin), &short)
            .await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        let listed = r.body["rows"][0].clone();
        assert_eq!(listed["row"], 1);
        assert_eq!(listed["field"], "card");
        assert!(!r.body.to_string().contains("4111-11"));
        s.stop().await;

        common::assert_absent_from_store(
            &site,
            &[CARD, PHONE, POSTCODE, "1990-05-17", "7946 0958"],
        );
    }
}

/// The first `dddd-dddd-dddd-dddd` string in `text`.
fn regex_like_card(text: &str) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.windows(19).find_map(|w| {
        let ok = w.iter().enumerate().all(|(i, c)| {
            if i % 5 == 4 {
                *c == '-'
            } else {
                c.is_ascii_digit()
            }
        });
        ok.then(|| w.iter().collect())
    })
}

#[tokio::test]
async fn pii_detection_masks_or_refuses_personal_data_in_undeclared_fields() {
    let email = "jane.canary@example.com";
    let card = "4111 1111 1111 1111";
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let site = Site::new(backend);
        let s = site.start().await;
        for (name, action) in [("support-mask", "mask"), ("support-reject", "reject")] {
            let spec = json!({"name": name, "id_field": "event_id", "timestamp_field": "ts",
                "features": [{"name": "ticket", "type": "text"},
                             {"name": "channel", "type": "categorical"}],
                "prediction": {"name": "score", "type": "binary_score"},
                "pii_detection": action});
            let r = s.post_json("/api/v1/models", Some(&s.admin), &spec).await;
            assert_eq!(r.status, 201, "{:?}", r.body);
        }
        let rows: Vec<Value> = (0..20)
            .map(|i| {
                json!({"event_id": format!("t-{i}"), "ts": "2026-11-20T00:20:00Z",
                       "ticket": format!("refund {card} please, mail {email}"),
                       "channel": if i % 2 == 0 { "web" } else { "phone" }, "score": 0.5})
            })
            .collect();
        let r = s
            .post_ndjson(
                "/api/v1/models/support-mask/predictions",
                Some(&s.admin),
                &rows,
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body["accepted"], 20);
        assert_eq!(r.body["pii_redacted"], 40, "a card and an e-mail per row");
        // The counts are kept (per field and kind), and only the counts.
        let quality = s
            .get(
                "/api/v1/models/support-mask/quality?start=2026-11-20T00:00:00Z&end=2026-11-20T01:00:00Z",
                Some(&s.admin),
            )
            .await;
        assert_eq!(quality.status, 200, "{:?}", quality.body);
        assert_eq!(
            quality.body["pii_findings"],
            json!([{"field": "ticket", "kind": "email", "count": 20},
                   {"field": "ticket", "kind": "payment_card", "count": 20}]),
            "{:?}",
            quality.body
        );
        let r = s
            .post_ndjson(
                "/api/v1/models/support-reject/predictions",
                Some(&s.admin),
                &rows,
            )
            .await;
        assert_eq!(r.status, 422, "{:?}", r.body);
        assert_eq!(r.body["row_error_count"], 20);
        assert_eq!(r.body["rows"][0]["field"], "ticket");
        assert!(!r.body.to_string().contains(email));
        let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
        assert_eq!(audit.status, 200);
        let audit = audit.body.to_string();
        assert!(!audit.contains(email) && !audit.contains(card), "audit log");
        s.stop().await;
        common::assert_absent_from_store(&site, &[email, card, "jane.canary"]);
    }
}

/// A model registered under `tenant` (none: the default tenant) with an `hmac` e-mail and an
/// `ff1` card number.
fn tenant_spec(name: &str, tenant: Option<&str>) -> Value {
    let mut spec = json!({
        "name": name,
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [
            {"name": "email", "type": "categorical", "pii": true, "masking": "hmac"},
            {"name": "card", "type": "categorical", "pii": true, "masking": "ff1",
             "masking_options": {"alphabet": "digits", "min_length": 12}},
            {"name": "amount", "type": "numeric"}
        ],
        "prediction": {"name": "score", "type": "binary_score"}
    });
    if let Some(tenant) = tenant {
        spec["tenant"] = json!(tenant);
    }
    spec
}

/// Same input, same pseudonym within a tenant (across its models and across batches); a
/// different one in another tenant; the default tenant keeps the instance keys. Neither the
/// e-mail nor the card reaches the store.
#[tokio::test]
async fn pseudonyms_join_within_a_tenant_and_differ_across_tenants() {
    const EMAIL: &str = "tenant.canary@example.com";
    const TENANT_CARD: &str = "5500 0000 0000 0004";
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let site = Site::new(backend);
        let s = site.start().await;
        let models = [
            ("acme-fraud", Some("acme")),
            ("acme-churn", Some("acme")),
            ("globex-fraud", Some("globex")),
            ("plain-fraud", None),
        ];
        for (name, tenant) in models {
            let r = s
                .post_json("/api/v1/models", Some(&s.admin), &tenant_spec(name, tenant))
                .await;
            assert_eq!(r.status, 201, "{name}: {:?}", r.body);
        }
        let r = s
            .post_json(
                "/api/v1/models",
                Some(&s.admin),
                &tenant_spec("bad-tenant", Some("acme corp")),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.body.to_string().contains("tenant name"), "{:?}", r.body);

        let mut stored = std::collections::BTreeMap::new();
        for (name, _) in models {
            // Two batches, so "the same input" is also checked across commits.
            for batch in 0..2 {
                let row = json!({
                    "event_id": format!("{name}-{batch}"),
                    "ts": "2026-11-20T00:10:00Z",
                    "email": EMAIL, "card": TENANT_CARD, "amount": 1.0, "score": 0.5,
                });
                let r = s
                    .post_ndjson(
                        &format!("/api/v1/models/{name}/predictions"),
                        Some(&s.admin),
                        &[row],
                    )
                    .await;
                assert_eq!(r.status, 200, "{name}: {:?}", r.body);
            }
            let r = s
                .get(
                    &format!("/api/v1/models/{name}/events?{WINDOW}&limit=10"),
                    Some(&s.admin),
                )
                .await;
            assert_eq!(r.status, 200, "{name}: {:?}", r.body);
            let rows = r.body["rows"].as_array().unwrap().clone();
            assert_eq!(rows.len(), 2, "{name}");
            let pair = |row: &Value| {
                (
                    row["values"]["email"].as_str().unwrap().to_owned(),
                    row["values"]["card"].as_str().unwrap().to_owned(),
                )
            };
            assert_eq!(pair(&rows[0]), pair(&rows[1]), "{name}: across batches");
            stored.insert(name, pair(&rows[0]));
        }
        let (email, card) = &stored["acme-fraud"];
        assert!(
            email.starts_with("hm_") && !email.contains("canary"),
            "{email}"
        );
        assert_ne!(card, TENANT_CARD);
        assert_eq!(
            card.len(),
            TENANT_CARD.len(),
            "the card keeps its shape: {card}"
        );
        assert_eq!(
            stored["acme-fraud"], stored["acme-churn"],
            "one tenant's models join"
        );
        for other in ["globex-fraud", "plain-fraud"] {
            assert_ne!(stored["acme-fraud"].0, stored[other].0, "e-mail vs {other}");
            assert_ne!(stored["acme-fraud"].1, stored[other].1, "card vs {other}");
        }
        assert_ne!(stored["globex-fraud"].0, stored["plain-fraud"].0);
        s.stop().await;
        common::assert_absent_from_store(
            &site,
            &[EMAIL, "tenant.canary", TENANT_CARD, "5500000000000004"],
        );
    }
}
