//! Keyed pseudonyms for masking: the `custos_core::Pseudonymizer` implementation.
//!
//! Owns: [`HmacPseudonymizer`] — HMAC-SHA256 under two separate server secrets, one for PII field
//! values and one for event-id index keys, each with its own domain prefix — and, with a third
//! secret, FF1 format-preserving encryption of the alphabet characters of a value (separators
//! stay in place, one fixed tweak so equal values encrypt equally across models and fields). Must not: use a plain
//! (unkeyed) hash — an SSN's SHA-256 is reversible by enumeration — or share one key between the
//! two purposes, so that a pseudonym and an event key of the same string are unrelated. The keys
//! come from the KEK-wrapped secrets store ([`crate::keys::unwrap_secret`]); this module never
//! persists them.
//!
//! Tenants: [`HmacPseudonymizer::for_tenant`] derives a tenant's own PII and FF1 keys from the
//! instance secrets, `HMAC-SHA256(secret, "custos/tenant/v1\0" ‖ purpose ‖ 0x00 ‖ tenant)`, so
//! models of one tenant join on pseudonyms and two tenants never do. The default tenant uses
//! the instance keys themselves, so pseudonyms stored before tenants existed stay valid.

use crate::ff1::{Alphabet, Ff1Key};
use crate::mac::MacKey;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_core::{EventKey, Ff1Alphabet, ModelName, Pseudonymizer, TenantName};
use std::fmt;
use zeroize::Zeroizing;

pub use crate::secret::SecretBytes;

const PII_DOMAIN: &[u8] = b"custos/pii/v1\0";
const EVENT_DOMAIN: &[u8] = b"custos/event/v1\0";
/// Marks a stored value as a pseudonym, so readers never mistake it for data.
const PSEUDONYM_PREFIX: &str = "hm_";
/// 128 bits: collisions among even 2^40 distinct values are negligible (birthday bound 2^64),
/// and the stored string stays short (22 characters after the prefix).
const PSEUDONYM_BYTES: usize = 16;
/// The FF1 tweak of every masked value: one per instance (the key is), not per field, so a card
/// number encrypts the same in every model and still joins.
const FF1_TWEAK: &[u8] = b"custos/ff1/v1";
/// Domain of the per-tenant key derivation; never a prefix of the pseudonym or event domains.
const TENANT_DOMAIN: &[u8] = b"custos/tenant/v1\0";

/// HMAC-SHA256 pseudonyms and event keys. Cheap to share (`Send + Sync`); each call clones a
/// pre-keyed HMAC state instead of re-keying (LIMITS.md §7).
#[derive(Clone)]
pub struct HmacPseudonymizer {
    pii: MacKey,
    event: MacKey,
    ff1: Option<FormatPreserving>,
    /// The instance keys tenant keys are derived from; `None` in a tenant's own pseudonymizer,
    /// which cannot derive further.
    roots: Option<Roots>,
}

#[derive(Clone)]
struct FormatPreserving {
    key: std::sync::Arc<Ff1Key>,
    digits: Alphabet,
    alphanumeric: Alphabet,
}

#[derive(Clone)]
struct Roots {
    pii: MacKey,
    ff1: Option<MacKey>,
}

/// Why a tenant's pseudonymizer could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantKeyError {
    /// Asked of a tenant's pseudonymizer instead of the instance one.
    #[error("tenant keys derive from the instance keys only")]
    NotInstanceKeys,
}

impl HmacPseudonymizer {
    /// Keys the two functions. The secrets are consumed: only their HMAC states are kept.
    pub fn new(pii_key: SecretBytes, event_key: SecretBytes) -> Self {
        let pii = MacKey::new(pii_key.expose());
        Self {
            roots: Some(Roots {
                pii: pii.clone(),
                ff1: None,
            }),
            pii,
            event: MacKey::new(event_key.expose()),
            ff1: None,
        }
    }

    /// Adds the FF1 key; without it `format_preserving` answers `None` (and masking redacts).
    pub fn with_format_preserving_key(mut self, key: Ff1Key) -> Self {
        if let Some(roots) = self.roots.as_mut() {
            roots.ff1 = Some(MacKey::new(key.expose()));
        }
        self.ff1 = FormatPreserving::new(key);
        self
    }

    /// The pseudonymizer of one tenant: its PII and FF1 keys are derived from the instance
    /// keys (see the module documentation); event keys stay the instance's, because they index
    /// events per model and never leave the store. The default tenant gets the instance keys.
    pub fn for_tenant(&self, tenant: &TenantName) -> Result<Self, TenantKeyError> {
        let roots = self.roots.as_ref().ok_or(TenantKeyError::NotInstanceKeys)?;
        if tenant.is_default() {
            return Ok(self.clone());
        }
        let derive = |root: &MacKey, purpose: &[u8]| {
            Zeroizing::new(root.tag(&[TENANT_DOMAIN, purpose, b"\0", tenant.as_str().as_bytes()]))
        };
        let ff1 = roots
            .ff1
            .as_ref()
            .and_then(|root| Ff1Key::from_slice(derive(root, b"ff1").as_slice()).ok())
            .and_then(FormatPreserving::new);
        Ok(Self {
            pii: MacKey::new(derive(&roots.pii, b"pii").as_slice()),
            event: self.event.clone(),
            ff1,
            roots: None,
        })
    }
}

impl FormatPreserving {
    fn new(key: Ff1Key) -> Option<Self> {
        Some(Self {
            key: std::sync::Arc::new(key),
            digits: Alphabet::new(Ff1Alphabet::Digits.chars()).ok()?,
            alphanumeric: Alphabet::new(Ff1Alphabet::Alphanumeric.chars()).ok()?,
        })
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

    /// FF1 (AES-256) of the alphabet characters, re-inserted where they were.
    fn format_preserving(&self, alphabet: Ff1Alphabet, value: &str) -> Option<String> {
        let fp = self.ff1.as_ref()?;
        let table = match alphabet {
            Ff1Alphabet::Digits => &fp.digits,
            Ff1Alphabet::Alphanumeric => &fp.alphanumeric,
        };
        let numerals: String = value.chars().filter(|c| alphabet.contains(*c)).collect();
        let encrypted = crate::ff1::encrypt(&fp.key, FF1_TWEAK, table, &numerals).ok()?;
        let mut replacement = encrypted.chars();
        value
            .chars()
            .map(|c| {
                if alphabet.contains(c) {
                    replacement.next()
                } else {
                    Some(c)
                }
            })
            .collect()
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
    fn tenants_join_within_and_differ_across() {
        let ff1 = || crate::ff1::Ff1Key::from_slice(&[9; 32]).unwrap();
        let instance =
            HmacPseudonymizer::new(secret(1), secret(2)).with_format_preserving_key(ff1());
        let tenant = |name: &str| TenantName::parse(name).unwrap();
        let acme = instance.for_tenant(&tenant("acme")).unwrap();
        let acme_again = HmacPseudonymizer::new(secret(1), secret(2))
            .with_format_preserving_key(ff1())
            .for_tenant(&tenant("acme"))
            .unwrap();
        let globex = instance.for_tenant(&tenant("globex")).unwrap();
        let default = instance.for_tenant(&TenantName::default_tenant()).unwrap();
        let email = "alice@example.com";
        let card = "4111 1111 1111 1111";
        // One tenant: deterministic, across restarts (same instance secrets).
        assert_eq!(acme.pseudonym(email), acme_again.pseudonym(email));
        let fp = |p: &HmacPseudonymizer| p.format_preserving(Ff1Alphabet::Digits, card).unwrap();
        assert_eq!(fp(&acme), fp(&acme_again));
        // Two tenants, and a tenant against the instance keys: unrelated.
        assert_ne!(acme.pseudonym(email), globex.pseudonym(email));
        assert_ne!(acme.pseudonym(email), instance.pseudonym(email));
        assert_ne!(fp(&acme), fp(&globex));
        assert_ne!(fp(&acme), fp(&instance));
        // The default tenant keeps the instance keys (pseudonyms stored before tenants hold).
        assert_eq!(default.pseudonym(email), instance.pseudonym(email));
        assert_eq!(fp(&default), fp(&instance));
        // Event keys do not depend on the tenant.
        assert_eq!(
            acme.event_key(&model("m"), "e1"),
            instance.event_key(&model("m"), "e1")
        );
        // The documented derivation.
        let key = MacKey::new(&[1; 32]).tag(&[b"custos/tenant/v1\0pii\0acme"]);
        let expected = MacKey::new(&key).tag(&[b"custos/pii/v1\0alice@example.com"]);
        assert_eq!(
            acme.pseudonym(email),
            format!("hm_{}", URL_SAFE_NO_PAD.encode(&expected[..16]))
        );
        // A tenant's pseudonymizer cannot derive another tenant's keys.
        assert!(acme.for_tenant(&tenant("globex")).is_err());
    }

    #[test]
    fn debug_redacts() {
        let a = HmacPseudonymizer::new(secret(0x61), secret(0x62));
        let shown = format!("{a:?}");
        assert!(!shown.contains("aaaa") && !shown.contains("97"), "{shown}");
    }

    #[test]
    fn format_preserving_keeps_the_shape_and_reverses_with_the_key() {
        let key = || crate::ff1::Ff1Key::from_slice(&[9; 32]).unwrap();
        let p = HmacPseudonymizer::new(secret(1), secret(2)).with_format_preserving_key(key());
        let card = "4111-1111-1111-1111";
        let out = p.format_preserving(Ff1Alphabet::Digits, card).unwrap();
        assert_eq!(out.len(), card.len());
        assert_ne!(out, card);
        for (a, b) in out.chars().zip(card.chars()) {
            assert_eq!(a == '-', b == '-', "separators stay: {out}");
            assert!(a == '-' || a.is_ascii_digit());
        }
        assert_eq!(
            p.format_preserving(Ff1Alphabet::Digits, card).unwrap(),
            out,
            "deterministic"
        );
        let digits: String = out.chars().filter(char::is_ascii_digit).collect();
        let alphabet = crate::ff1::Alphabet::digits();
        let back = crate::ff1::decrypt(&key(), FF1_TWEAK, &alphabet, &digits).unwrap();
        assert_eq!(back, "4111111111111111");
        let other = HmacPseudonymizer::new(secret(1), secret(2))
            .with_format_preserving_key(crate::ff1::Ff1Key::from_slice(&[8; 32]).unwrap());
        assert_ne!(
            other.format_preserving(Ff1Alphabet::Digits, card).unwrap(),
            out
        );
        let id = p
            .format_preserving(Ff1Alphabet::Alphanumeric, "AB12cd34")
            .unwrap();
        assert!(id.len() == 8 && id.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(
            HmacPseudonymizer::new(secret(1), secret(2))
                .format_preserving(Ff1Alphabet::Digits, card),
            None,
            "no key, no output (masking then redacts)"
        );
    }
}
