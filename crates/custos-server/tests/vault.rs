//! The `tokenize` masking kind, the rows view, the reveal path and the erasure of one subject,
//! end to end on both stores against a real server:
//!
//! * tokenized e-mails never reach the SQLite files, a `pg_dump` or the audit log; the same
//!   value gets the same token across batches, and two batches racing on a new value get one;
//! * `GET …/events` answers the auditor and the data scientist with tokens, never originals,
//!   and the analyst with 403;
//! * `POST …/reveal` needs `pii:reveal` (403 without), a justification of 20–500 characters
//!   (400), fits a small budget of its own (429 beyond it), returns the originals, and is
//!   audited with the justification and the token ids but not the values;
//! * after `DELETE …/vault/{token}` the vault row is gone, a reveal says `erased`, and the same
//!   value arriving later gets a new token.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Server, Site};
use custos_store::VaultEntry;
use serde_json::{Value, json};
use std::collections::BTreeMap;

const MODEL: &str = "crm-v1";
const ALICE: &str = "alice.canary@example.org";
const BOB: &str = "bob.canary@example.org";
const CAROL: &str = "carol.canary@example.org";
const PASSWORD: &str = "vault lantern orbit 7";
const WINDOW: &str = "start=2026-11-20T00:00:00Z&end=2026-11-21T00:00:00Z";
const JUSTIFICATION: &str = "ticket DSR-4711: customer asked for a copy of their data";

fn spec() -> Value {
    json!({
        "name": MODEL,
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [
            {"name": "email", "type": "categorical", "pii": true, "masking": "tokenize"},
            {"name": "amount", "type": "numeric"}
        ],
        "prediction": {"name": "score", "type": "binary_score"}
    })
}

fn rows(prefix: &str, minute: u32, emails: &[&str]) -> Vec<Value> {
    emails
        .iter()
        .enumerate()
        .map(|(i, email)| {
            json!({"event_id": format!("{prefix}-{i}"),
                   "ts": format!("2026-11-20T10:{minute:02}:{:02}Z", i % 60),
                   "email": email, "amount": i as f64, "score": 0.5})
        })
        .collect()
}

async fn ingest(s: &Server, prefix: &str, minute: u32, emails: &[&str]) {
    let r = s
        .post_ndjson(
            &format!("/api/v1/models/{MODEL}/predictions"),
            Some(&s.admin),
            &rows(prefix, minute, emails),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// event id → stored e-mail value, as the rows view returns them.
fn emails_of(body: &Value) -> BTreeMap<String, String> {
    body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap().to_owned(),
                r["values"]["email"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn get_as(s: &Server, path: &str, cookie: &str) -> (u16, Value) {
    let r = s
        .http
        .get(s.url(path))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn person(s: &Server, name: &str, role: &str) -> String {
    let r = s
        .post_json(
            "/api/v1/users",
            Some(&s.admin),
            &json!({"name": name, "password": PASSWORD,
                    "roles": [{"role": role, "model": "*"}]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    common::FormBrowser::open(s)
        .await
        .session(s, name, PASSWORD)
        .await
}

async fn reveal(s: &Server, token: &str, tokens: &[&str], justification: &str) -> (u16, Value) {
    let r = s
        .post_json(
            &format!("/api/v1/models/{MODEL}/reveal"),
            Some(token),
            &json!({"tokens": tokens, "justification": justification}),
        )
        .await;
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rows_reveal_and_erasure() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let site = Site::new(backend);
        let mut config = site.config();
        // Three reveals at once, then one a minute: the fourth below is refused.
        config.limits.reveal_burst = 3;
        config.limits.reveal_per_minute = 1;
        let s = site.start_with(config).await;
        let r = s.post_json("/api/v1/models", Some(&s.admin), &spec()).await;
        assert_eq!(r.status, 201, "{:?}", r.body);

        // Two batches with the same values; then two racing batches with a new one.
        ingest(&s, "a", 0, &[ALICE, BOB, ALICE, BOB]).await;
        ingest(&s, "b", 1, &[BOB, ALICE]).await;
        tokio::join!(
            ingest(&s, "c", 2, &[CAROL, CAROL]),
            ingest(&s, "d", 3, &[CAROL])
        );

        let events = format!("/api/v1/models/{MODEL}/events?{WINDOW}&limit=1000");
        let r = s.get(&events, Some(&s.admin)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.headers["cache-control"], "no-store");
        let stored = emails_of(&r.body);
        assert_eq!(stored.len(), 9);
        let (alice, bob, carol) = (
            stored["a-0"].as_str(),
            stored["a-1"].as_str(),
            stored["c-0"].as_str(),
        );
        for token in [alice, bob, carol] {
            assert!(token.starts_with("tok_") && token.len() == 26, "{token}");
        }
        assert!(alice != bob && bob != carol && alice != carol);
        assert_eq!(stored["a-2"], alice, "same value, same token");
        assert_eq!(stored["b-1"], alice, "across batches");
        assert_eq!(stored["b-0"], bob);
        assert_eq!(stored["c-1"], carol);
        assert_eq!(stored["d-0"], carol, "racing batches share one token");
        // Newest first, bounded by limit.
        let times: Vec<&str> = r.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["timestamp"].as_str().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        let r = s
            .get(
                &format!("/api/v1/models/{MODEL}/events?{WINDOW}&limit=2"),
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.body["rows"].as_array().unwrap().len(), 2);
        assert_eq!(r.body["truncated"], true);
        assert_eq!(r.body["rows"][0]["event_id"], "d-0");
        let r = s
            .get(
                &format!("/api/v1/models/{MODEL}/events?{WINDOW}&limit=1001"),
                Some(&s.admin),
            )
            .await;
        assert_eq!(r.status, 400);
        let model = s.state.store.get_model(MODEL).await.unwrap().unwrap();
        assert_eq!(s.state.store.vault_size(model.id).await.unwrap(), 3);

        // Roles: the auditor and the data scientist see tokens; the analyst sees no rows.
        for (name, role) in [("ada", "auditor"), ("dan", "data-scientist")] {
            let cookie = person(&s, name, role).await;
            let (status, body) = get_as(&s, &events, &cookie).await;
            assert_eq!(status, 200, "{role}: {body:?}");
            assert_eq!(emails_of(&body), stored, "{role} sees what is stored");
            let text = body.to_string();
            assert!(!text.contains("canary"), "{role}: {text}");
        }
        let analyst = person(&s, "ann", "analyst").await;
        let (status, _) = get_as(&s, &events, &analyst).await;
        assert_eq!(status, 403, "the analyst sees no rows");

        // Reveal: its own permission, which no role has; a justification; a budget.
        let reader = s.token(&[("rows:read", MODEL)]).await;
        let (status, _) = reveal(&s, &reader, &[alice], JUSTIFICATION).await;
        assert_eq!(status, 403, "rows:read does not reveal");
        let revealer = s.token(&[("pii:reveal", MODEL)]).await;
        let (status, body) = reveal(&s, &revealer, &[alice], "because").await;
        assert_eq!(status, 400, "{body:?}");
        assert!(body["message"].as_str().unwrap().contains("justification"));
        let (status, body) = reveal(&s, &revealer, &[alice, bob, alice], JUSTIFICATION).await;
        assert_eq!(status, 200, "{body:?}");
        let results = body["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "repeated tokens are answered once");
        assert_eq!(results[0]["token"], alice);
        assert_eq!(results[0]["status"], "revealed");
        assert_eq!(results[0]["value"], ALICE);
        assert_eq!(results[1]["value"], BOB);

        // Erasure of one subject: the vault row goes, the token stays in rows as a string.
        let r = s
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/models/{MODEL}/vault/{alice}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        let r = s
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/models/{MODEL}/vault/{alice}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(r.status, 404, "erased once");
        assert_eq!(s.state.store.vault_size(model.id).await.unwrap(), 2);
        let left = s
            .state
            .store
            .vault_entries(model.id, &[alice.to_owned(), bob.to_owned()])
            .await
            .unwrap();
        assert_eq!(left.get(alice), Some(&VaultEntry::Erased));
        assert!(matches!(left.get(bob), Some(VaultEntry::Sealed(_))));
        let (status, body) = reveal(&s, &revealer, &[alice], JUSTIFICATION).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(body["results"][0]["status"], "erased");
        assert!(body["results"][0].get("value").is_none());
        let r = s.get(&events, Some(&s.admin)).await;
        assert_eq!(emails_of(&r.body)["a-0"], alice, "the token stays, opaque");
        // The budget (three at once) is spent: the fourth reveal is refused.
        let (status, _) = reveal(&s, &revealer, &[bob], JUSTIFICATION).await;
        assert_eq!(status, 429);
        // The same value arriving after erasure is a new subject entry with a new token.
        ingest(&s, "e", 4, &[ALICE]).await;
        let r = s.get(&events, Some(&s.admin)).await;
        let again = emails_of(&r.body)["e-0"].clone();
        assert!(again.starts_with("tok_") && again != alice, "{again}");

        // The audit log: reveals with justification and token ids, never values.
        let audit = s.get("/api/v1/audit?limit=1000", Some(&s.admin)).await;
        assert_eq!(audit.status, 200);
        let records: Vec<&Value> = audit.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["record"])
            .collect();
        let reveals: Vec<&&Value> = records
            .iter()
            .filter(|r| r["action"] == "pii.reveal")
            .collect();
        assert_eq!(
            reveals.len(),
            2,
            "the refused ones never reached the handler"
        );
        assert_eq!(reveals[0]["detail"]["justification"], JUSTIFICATION);
        assert_eq!(reveals[0]["detail"]["count"], 2);
        assert_eq!(reveals[0]["detail"]["tokens"][0], alice);
        assert_eq!(reveals[1]["detail"]["erased"], 1);
        assert!(
            records
                .iter()
                .any(|r| r["action"] == "vault.erase" && r["detail"]["token"] == alice)
        );
        let reads = records
            .iter()
            .filter(|r| r["action"] == "rows.read")
            .count();
        assert!(reads >= 5, "{reads} rows.read records");
        let audit_text = audit.body.to_string();
        for canary in [ALICE, BOB, CAROL, "canary@"] {
            assert!(!audit_text.contains(canary), "{canary} in the audit log");
        }
        s.stop().await;
        common::assert_absent_from_store(&site, &[ALICE, BOB, CAROL, "canary@example"]);
    }
}
