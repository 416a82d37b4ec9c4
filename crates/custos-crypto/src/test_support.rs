//! Test fixtures shared by this crate's unit tests: a schema and masked records built through
//! the real `validate_row` → `mask` pipeline with the real [`HmacPseudonymizer`].
//!
//! Owns: fixtures only. Must not: be compiled outside tests.

use crate::pseudonym::HmacPseudonymizer;
use crate::secret::SecretBytes;
use custos_core::{IngestLimits, MaskedRecord, ModelSchema, ModelSpec, mask, validate_row};
use serde_json::json;

/// A value stored in the clear in the plain categorical `merchant` field of every 7th row.
pub(crate) const CANARY: &str = "CANARY-merchant-7f3a9c";

pub(crate) fn pseudonymizer() -> HmacPseudonymizer {
    HmacPseudonymizer::new(
        SecretBytes::from_slice(&[0x11; 32]).unwrap(),
        SecretBytes::from_slice(&[0x22; 32]).unwrap(),
    )
}

pub(crate) fn schema() -> ModelSchema {
    let spec: ModelSpec = serde_json::from_value(json!({"name": "fraud-v3",
        "id_field": "event_id", "timestamp_field": "ts",
        "features": [
            {"name": "amount",   "type": "numeric"},
            {"name": "merchant", "type": "categorical"},
            {"name": "country",  "type": "categorical"},
            {"name": "email",    "type": "categorical", "pii": true, "masking": "hmac"},
            {"name": "note",     "type": "text", "pii": true, "masking": "drop"},
            {"name": "vip",      "type": "boolean"}],
        "prediction": {"name": "score", "type": "binary_score"}}))
    .unwrap();
    ModelSchema::new(spec).unwrap()
}

/// `n` validated-then-masked rows spread over one day.
pub(crate) fn masked_records(n: usize, keys: &HmacPseudonymizer) -> Vec<MaskedRecord> {
    let schema = schema();
    let limits = IngestLimits::default();
    let base = 1_764_115_200_i64; // 2025-11-26T00:00:00Z
    const COUNTRIES: [&str; 4] = ["DE", "FR", "US", "JP"];
    (0..n)
        .map(|i| {
            let merchant = if i % 7 == 0 {
                CANARY.to_owned()
            } else {
                format!("shop-{}", i % 40)
            };
            let row = json!({
                "event_id": format!("evt-{i:06}"),
                "ts": base + (i as i64 * 37) % 86_400,
                "amount": (i as f64) * 1.25,
                "merchant": merchant,
                "country": COUNTRIES[i % 4],
                "email": format!("user{}@example.com", i % 100),
                "note": "please call me back",
                "vip": i % 3 == 0,
                "score": (i % 100) as f64 / 100.0,
            });
            let valid = validate_row(&schema, i, &row, &limits).unwrap();
            mask(&schema, valid, keys)
        })
        .collect()
}
