//! 10,000 random bit flips in what the store keeps encrypted — sealed event batches, sealed
//! profile deltas, sealed reference profiles, sealed labels, wrapped data keys and wrapped secrets (their KEK-version
//! column included) — each rejected by the same open / unwrap functions the server's read path
//! and key service call.
//!
//! Data is ingested through the real HTTP API; the stored ciphertexts are then read from the
//! store, and each flip is applied to a copy of one of them (the store is never changed). Runs
//! on SQLite, and on PostgreSQL when `CUSTOS_TEST_POSTGRES_URL` is set. The per-kind counts are
//! printed (`--nocapture`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{Backend, Site, fraud_rows};
use custos_core::{HourBucket, ModelName, Pseudonymizer as _};
use custos_crypto::KeyPurpose;
use custos_crypto::keys::{KekRing, KeyContext, load_kek_dir, unwrap_secret};
use custos_crypto::seal::{BlobKind, open_batch, open_blob};
use custos_crypto::{DataKey, WrappedKey};
use custos_server::drift::reference_label;
use custos_server::ingest::{label_label, profile_label};
use custos_store::WrappedKeyRef;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const FLIPS: usize = 10_000;

/// One stored ciphertext and how the server opens it.
enum Sealed {
    Batch {
        key: Arc<DataKey>,
        model_id: i64,
        partition: custos_core::Partition,
        bytes: Vec<u8>,
    },
    Blob {
        kind: BlobKind,
        /// A reference set's profile rather than a live profile delta.
        reference: bool,
        key: Arc<DataKey>,
        model_id: i64,
        partition: custos_core::Partition,
        label: String,
        bytes: Vec<u8>,
    },
    /// `kek_version` (u32 LE, the stored column) followed by the wrapped bytes.
    Wrapped { at: WrappedKeyRef, bytes: Vec<u8> },
}

impl Sealed {
    fn kind(&self) -> &'static str {
        match self {
            Sealed::Batch { .. } => "sealed event batch",
            Sealed::Blob {
                kind: BlobKind::Profile,
                reference: true,
                ..
            } => "sealed reference profile",
            Sealed::Blob {
                kind: BlobKind::Profile,
                ..
            } => "sealed profile delta",
            Sealed::Blob {
                kind: BlobKind::Label,
                ..
            } => "sealed label",
            Sealed::Blob { .. } => "sealed blob",
            Sealed::Wrapped {
                at: WrappedKeyRef::Data { .. },
                ..
            } => "wrapped data key",
            Sealed::Wrapped { .. } => "wrapped secret",
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Sealed::Batch { bytes, .. }
            | Sealed::Blob { bytes, .. }
            | Sealed::Wrapped { bytes, .. } => bytes,
        }
    }

    /// Opens `bytes` in place of the stored ones; `true` if accepted.
    fn opens(&self, ring: &KekRing, bytes: &[u8]) -> bool {
        match self {
            Sealed::Batch {
                key,
                model_id,
                partition,
                ..
            } => open_batch(key, *model_id, *partition, bytes).is_ok(),
            Sealed::Blob {
                kind,
                key,
                model_id,
                partition,
                label,
                ..
            } => open_blob(key, *model_id, *partition, *kind, label, bytes).is_ok(),
            Sealed::Wrapped { at, .. } => {
                let (version, wrapped) = bytes.split_at(4);
                let wrapped = WrappedKey {
                    kek_version: u32::from_le_bytes(version.try_into().unwrap()),
                    bytes: wrapped.to_vec(),
                };
                match at {
                    WrappedKeyRef::Data {
                        model_id,
                        partition,
                        purpose,
                    } => ring
                        .unwrap(
                            &KeyContext::Data {
                                model_id: *model_id,
                                partition: *partition,
                                purpose: *purpose,
                            },
                            &wrapped,
                        )
                        .is_ok(),
                    WrappedKeyRef::Secret { name } => unwrap_secret(ring, name, &wrapped).is_ok(),
                }
            }
        }
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn collect(site: &Site, s: &common::Server) -> (KekRing, Vec<Sealed>) {
    let store = &s.state.store;
    let model = store.get_model("fraud-v3").await.unwrap().unwrap();
    let name = ModelName::parse("fraud-v3").unwrap();
    let mut out = Vec::new();
    let far = chrono::Utc::now() - chrono::Duration::days(10)..chrono::Utc::now();
    for batch in store.batches(model.id, far.clone()).await.unwrap() {
        let key = s
            .state
            .keys
            .data_key(model.id, batch.partition, KeyPurpose::Events)
            .await
            .unwrap();
        out.push(Sealed::Batch {
            key,
            model_id: model.id,
            partition: batch.partition,
            bytes: batch.ciphertext,
        });
    }
    let hours = HourBucket::of(far.start)..HourBucket::of(far.end + chrono::Duration::hours(1));
    for column in ["amount", "country", "email", "score"] {
        for delta in store
            .profile_deltas(model.id, column, hours.clone())
            .await
            .unwrap()
        {
            let key = s
                .state
                .keys
                .data_key(model.id, delta.partition, KeyPurpose::Profiles)
                .await
                .unwrap();
            out.push(Sealed::Blob {
                kind: BlobKind::Profile,
                reference: false,
                key,
                model_id: model.id,
                partition: delta.partition,
                label: profile_label(column, delta.hour),
                bytes: delta.ciphertext,
            });
        }
    }
    let event_keys: Vec<_> = (0..200)
        .flat_map(|i| [format!("a-{i}"), format!("b-{i}")])
        .map(|id| s.state.keys.pseudonymizer().event_key(&name, &id))
        .collect();
    for label in store.labels_for(model.id, &event_keys).await.unwrap() {
        let key = s
            .state
            .keys
            .data_key(model.id, label.partition, KeyPurpose::Events)
            .await
            .unwrap();
        out.push(Sealed::Blob {
            kind: BlobKind::Label,
            reference: false,
            key,
            model_id: model.id,
            partition: label.partition,
            label: label_label(&label.event_key),
            bytes: label.ciphertext,
        });
    }
    for reference in store.references(model.id).await.unwrap() {
        let key = s
            .state
            .keys
            .data_key(model.id, reference.partition, KeyPurpose::Profiles)
            .await
            .unwrap();
        for (column, bytes) in store.reference_profiles(reference.id).await.unwrap() {
            out.push(Sealed::Blob {
                kind: BlobKind::Profile,
                reference: true,
                key: Arc::clone(&key),
                model_id: model.id,
                partition: reference.partition,
                label: reference_label(&reference.uid, &column),
                bytes,
            });
        }
    }
    for stored in store.wrapped_keys_not_under(0, 100_000).await.unwrap() {
        let mut bytes = stored.key.kek_version.to_le_bytes().to_vec();
        bytes.extend_from_slice(&stored.key.bytes);
        out.push(Sealed::Wrapped {
            at: stored.at,
            bytes,
        });
    }
    let ring = load_kek_dir(&site.data_dir().join("keys")).unwrap();
    (ring, out)
}

async fn flips_are_rejected(backend: Backend) {
    let site = Site::new(backend);
    let s = site.start().await;
    s.register_fraud_model().await;
    let now = chrono::Utc::now();
    // Two day partitions, so two data keys, several hours of profile deltas.
    for (prefix, start) in [
        ("a", now - chrono::Duration::hours(30)),
        ("b", now - chrono::Duration::hours(3)),
    ] {
        for chunk in fraud_rows(prefix, start, 200, prefix == "b").chunks(50) {
            let r = s
                .post_ndjson("/api/v1/models/fraud-v3/predictions", Some(&s.admin), chunk)
                .await;
            assert!(r.status < 300, "{:?}", r.body);
        }
        let labels: Vec<_> = (0..200)
            .map(|i| json!({"event_id": format!("{prefix}-{i}"), "label": i % 2}))
            .collect();
        let r = s
            .post_ndjson("/api/v1/models/fraud-v3/labels", Some(&s.admin), &labels)
            .await;
        assert!(r.status < 300, "{:?}", r.body);
    }

    // A reference set: its profiles are sealed under the model's reference data key.
    let mut csv = String::from("amount,country,email,score\n");
    for row in fraud_rows("ref", now - chrono::Duration::days(5), 300, false) {
        csv.push_str(&format!(
            "{},{},{},{}\n",
            row["amount"],
            row["country"].as_str().unwrap(),
            row["email"].as_str().unwrap(),
            row["score"]
        ));
    }
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/models/fraud-v3/reference?name=train",
            Some(&s.admin),
            Some(("text/csv", csv.into_bytes())),
        )
        .await;
    assert!(r.status < 300, "{:?}", r.body);

    let (ring, sealed) = collect(&site, &s).await;
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for item in &sealed {
        *by_kind.entry(item.kind()).or_default() += 1;
        assert!(
            item.opens(&ring, item.bytes()),
            "{} must open unflipped",
            item.kind()
        );
    }
    for kind in [
        "sealed event batch",
        "sealed profile delta",
        "sealed reference profile",
        "sealed label",
        "wrapped data key",
        "wrapped secret",
    ] {
        assert!(by_kind.contains_key(kind), "no {kind} stored: {by_kind:?}");
    }
    // Kinds in turn, a random object of the kind, a random bit of it.
    let kinds: Vec<&str> = by_kind.keys().copied().collect();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ u64::from(backend == Backend::Postgres));
    let mut tried: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rejected: BTreeMap<&str, usize> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..FLIPS {
        let kind = kinds[i % kinds.len()];
        let of_kind: Vec<&Sealed> = sealed.iter().filter(|x| x.kind() == kind).collect();
        let item = of_kind[rng.below(of_kind.len())];
        let mut copy = item.bytes().to_vec();
        let bit = rng.below(copy.len() * 8);
        copy[bit / 8] ^= 1 << (bit % 8);
        *tried.entry(kind).or_default() += 1;
        if !item.opens(&ring, &copy) {
            *rejected.entry(kind).or_default() += 1;
        } else {
            panic!("a flip of bit {bit} in a {kind} was accepted");
        }
    }
    let total: usize = rejected.values().sum();
    println!(
        "{backend:?}: {total}/{FLIPS} bit flips rejected in {:.2} s; stored objects per kind {by_kind:?}",
        started.elapsed().as_secs_f64()
    );
    for (kind, n) in &tried {
        println!(
            "  {kind:<24} {}/{n} rejected",
            rejected.get(kind).copied().unwrap_or(0)
        );
    }
    assert_eq!(total, FLIPS);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bit_flips_are_rejected_sqlite() {
    flips_are_rejected(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_bit_flips_are_rejected_postgres() {
    if std::env::var_os("CUSTOS_TEST_POSTGRES_URL").is_none() {
        eprintln!("CUSTOS_TEST_POSTGRES_URL is not set: PostgreSQL run skipped");
        return;
    }
    flips_are_rejected(Backend::Postgres).await;
}
