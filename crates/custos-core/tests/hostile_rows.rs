//! Hostile input: validation and masking must answer every JSON value with a record or with
//! row errors — never a panic — and errors must never carry the submitted values.

// Test code: a failed unwrap is a failed test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use custos_core::{
    EventKey, IngestLimits, ModelName, ModelSchema, ModelSpec, Pseudonymizer, mask, validate_label,
    validate_row,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

struct Keys;
impl Pseudonymizer for Keys {
    fn pseudonym(&self, value: &str) -> String {
        format!("hm_{}", value.len())
    }
    fn event_key(&self, _: &ModelName, id: &str) -> EventKey {
        EventKey([u8::try_from(id.len() % 256).unwrap(); 32])
    }
    fn format_preserving(
        &self,
        _alphabet: custos_core::Ff1Alphabet,
        _value: &str,
    ) -> Option<String> {
        None
    }
}

fn schema() -> ModelSchema {
    let spec: ModelSpec = serde_json::from_value(json!({
        "name": "m", "id_field": "id", "timestamp_field": "ts",
        "features": [
            {"name": "n", "type": "numeric"}, {"name": "c", "type": "categorical"},
            {"name": "b", "type": "boolean"}, {"name": "t", "type": "text", "pii": true, "masking": "redact"},
            {"name": "d", "type": "timestamp"}, {"name": "e", "type": "categorical", "pii": true, "masking": "hmac"}],
        "prediction": {"name": "p", "type": "multiclass"}}))
    .unwrap();
    ModelSchema::new(spec).unwrap()
}

const MARKER: &str = "zz-secret-marker";

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9:.+-]{0,30}".prop_map(|s| Value::String(format!("{MARKER}{s}"))),
        Just(Value::String("2026-11-26T10:00:00Z".into())),
        Just(Value::String("x".repeat(70_000))),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,2}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn row() -> impl Strategy<Value = Value> {
    let field = prop_oneof![
        Just("id"),
        Just("ts"),
        Just("n"),
        Just("c"),
        Just("b"),
        Just("t"),
        Just("d"),
        Just("e"),
        Just("p"),
        Just("zz")
    ];
    prop::collection::vec((field, value()), 0..10).prop_map(|pairs| {
        let mut m = Map::new();
        for (k, v) in pairs {
            m.insert(k.to_owned(), v);
        }
        Value::Object(m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn validation_never_panics_and_never_echoes_values(input in prop_oneof![row(), value()]) {
        let schema = schema();
        let limits = IngestLimits::default();
        match validate_row(&schema, 7, &input, &limits) {
            Ok(record) => {
                let masked = mask(&schema, record, &Keys);
                prop_assert_eq!(masked.values().len(), schema.columns().len());
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert_eq!(e.row, 7);
                    prop_assert!(!e.reason.contains(MARKER), "reason echoes a value: {}", e.reason);
                }
            }
        }
        let _ = validate_label(&schema, 0, &input, &limits, &Keys);
    }
}
