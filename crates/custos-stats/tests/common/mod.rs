//! Test helpers shared by the integration tests: a deterministic generator whose output
//! `tests/golden/drift_golden.py` reproduces bit for bit (up to libm rounding), so golden numbers
//! derived in Python refer to the very same samples.
#![allow(dead_code)]

use custos_stats::{FeatureProfile, NumericProfile};

/// xorshift64 (13, 7, 17).
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` draws from normal(shift, 1) via Box–Muller, both outputs of each pair used.
pub fn normals(seed: u64, n: usize, shift: f64) -> Vec<f64> {
    let mut g = XorShift(seed);
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - g.next_f64();
        let u2 = g.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push(r * theta.cos() + shift);
        out.push(r * theta.sin() + shift);
    }
    out.truncate(n);
    out
}

pub fn numeric(values: &[f64]) -> FeatureProfile {
    let mut p = NumericProfile::new();
    for v in values {
        p.observe(*v);
    }
    FeatureProfile::Numeric(p)
}

pub fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tol,
        "{what}: got {actual}, expected {expected} ± {tol}"
    );
}

/// JSON round trip. The workspace's serde_json is built without `float_roundtrip`, so parsed
/// floats may be off by one ULP; compare as JSON values (both sides parsed the same way) after
/// checking that deserialization into `T` works at all.
pub fn assert_json_round_trip<T>(value: &T) -> String
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).unwrap();
    let back: T = serde_json::from_str(&json).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), expected);
    json
}
