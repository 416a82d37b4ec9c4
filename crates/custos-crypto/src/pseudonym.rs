//! Keyed pseudonyms for masking: the `custos_core::Pseudonymizer` implementation.
//!
//! Owns: [`HmacPseudonymizer`] — HMAC-SHA256 under two separate server secrets, one for PII field
//! values and one for event-id index keys, each with its own domain prefix. Must not: use a plain
//! (unkeyed) hash — an SSN's SHA-256 is reversible by enumeration — or share one key between the
//! two purposes, so that a pseudonym and an event key of the same string are unrelated. The keys
//! come from the KEK-wrapped secrets store ([`crate::keys::unwrap_secret`]); this module never
//! persists them.

use crate::mac::MacKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_core::{EventKey, ModelName, Pseudonymizer};
use std::fmt;

pub use crate::secret::SecretBytes;

const PII_DOMAIN: &[u8] = b"custos/pii/v1\0";
const EVENT_DOMAIN: &[u8] = b"custos/event/v1\0";
/// Marks a stored value as a pseudonym, so readers never mistake it for data.
const PSEUDONYM_PREFIX: &str = "hm_";
/// 128 bits: collisions among even 2^40 distinct values are negligible (birthday bound 2^64),
/// and the stored string stays short (22 characters after the prefix).
const PSEUDONYM_BYTES: usize = 16;

/// HMAC-SHA256 pseudonyms and event keys. Cheap to share (`Send + Sync`); each call clones a
/// pre-keyed HMAC state instead of re-keying (LIMITS.md §7).
#[derive(Clone)]
pub struct HmacPseudonymizer {
    pii: MacKey,
    event: MacKey,
}

impl HmacPseudonymizer {
    /// Keys the two functions. The secrets are consumed: only their HMAC states are kept.
    pub fn new(pii_key: SecretBytes, event_key: SecretBytes) -> Self {
        Self {
            pii: MacKey::new(pii_key.expose()),
            event: MacKey::new(event_key.expose()),
        }
    }
}

impl Pseudonymizer for HmacPseudonymizer {
    /// `"hm_" ‖ base64url(HMAC-SHA256(pii_key, "custos/pii/v1\0" ‖ value)[..16])`.
    fn pseudonym(&self, value: &str) -> String {
        let tag = self.pii.tag(&[PII_DOMAIN, value.as_bytes()]);
        let mut out = String::with_capacity(PSEUDONYM_PREFIX.len() + 22);
        out.push_str(PSEUDONYM_PREFIX);
        URL_SAFE_NO_PAD.encode_string(tag.get(..PSEUDONYM_BYTES).unwrap_or(&tag), &mut out);
        out
    }

    /// `HMAC-SHA256(event_key, "custos/event/v1\0" ‖ model ‖ 0x00 ‖ event_id)`. Model names
    /// cannot contain NUL, so the separator makes (model, id) pairs unambiguous.
    fn event_key(&self, model: &ModelName, event_id: &str) -> EventKey {
        EventKey(self.event.tag(&[
            EVENT_DOMAIN,
            model.as_str().as_bytes(),
            b"\0",
            event_id.as_bytes(),
        ]))
    }
}

impl fmt::Debug for HmacPseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacPseudonymizer([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> SecretBytes {
        SecretBytes::from_slice(&[byte; 32]).unwrap()
    }

    fn model(name: &str) -> ModelName {
        ModelName::parse(name).unwrap()
    }

    #[test]
    fn pseudonyms_are_deterministic_and_keyed() {
        let a = HmacPseudonymizer::new(secret(1), secret(2));
        let a2 = HmacPseudonymizer::new(secret(1), secret(2));
        let b = HmacPseudonymizer::new(secret(3), secret(2));
        let p = a.pseudonym("alice@example.com");
        assert_eq!(p, a2.pseudonym("alice@example.com"));
        assert_eq!(p, a.pseudonym("alice@example.com"));
        assert_ne!(p, b.pseudonym("alice@example.com"));
        assert_ne!(p, a.pseudonym("alice@example.con"));
        assert!(p.starts_with("hm_"));
        assert_eq!(p.len(), 3 + 22);
        assert!(!p.contains("alice"));
        // Matches the documented construction exactly.
        let expected = MacKey::new(&[1; 32]).tag(&[b"custos/pii/v1\0alice@example.com"]);
        assert_eq!(p, format!("hm_{}", URL_SAFE_NO_PAD.encode(&expected[..16])));
    }

    #[test]
    fn event_keys_differ_per_model_key_and_purpose() {
        let a = HmacPseudonymizer::new(secret(1), secret(2));
        let fraud = model("fraud-v3");
        let churn = model("churn");
        let k = a.event_key(&fraud, "e1");
        assert_eq!(
            k,
            HmacPseudonymizer::new(secret(1), secret(2)).event_key(&fraud, "e1")
        );
        assert_ne!(k, a.event_key(&churn, "e1"));
        assert_ne!(k, a.event_key(&fraud, "e2"));
        assert_ne!(
            k,
            HmacPseudonymizer::new(secret(1), secret(9)).event_key(&fraud, "e1")
        );
        // The PII key does not influence event keys, and the separator prevents
        // ("ab", "c") colliding with ("a", "bc").
        assert_eq!(
            k,
            HmacPseudonymizer::new(secret(7), secret(2)).event_key(&fraud, "e1")
        );
        assert_ne!(
            a.event_key(&model("ab"), "c"),
            a.event_key(&model("a"), "bc")
        );
        let expected = MacKey::new(&[2; 32]).tag(&[b"custos/event/v1\0fraud-v3\0e1"]);
        assert_eq!(k.0, expected);
    }

    #[test]
    fn purposes_are_separated_even_with_equal_keys() {
        let same = HmacPseudonymizer::new(secret(5), secret(5));
        let p = same.pseudonym("x");
        let k = same.event_key(&model("m"), "x");
        assert!(!p.contains(&URL_SAFE_NO_PAD.encode(&k.0[..16])));
    }

    #[test]
    fn debug_redacts() {
        let a = HmacPseudonymizer::new(secret(0x61), secret(0x62));
        let shown = format!("{a:?}");
        assert!(!shown.contains("aaaa") && !shown.contains("97"), "{shown}");
    }
}
