//! The token vault's cryptography: the keyed lookup hash of a value, fresh tokens, and the
//! sealing of an original under a model's vault key.
//!
//! Owns: [`VaultLookup`] — HMAC-SHA256 under its own server secret with its own domain prefix,
//! bound to the model, so the vault finds a value's token without an unkeyed hash of the value
//! (a plain SHA-256 of an e-mail is reversible by enumeration) and without reusing the `hmac`
//! masking key (a lookup hash is never equal to a stored pseudonym); [`new_token`] — 128 random
//! bits, URL-safe, prefixed `tok_`, with nothing derived from the value; and [`seal_entry`] /
//! [`open_entry`] — AES-256-GCM through [`crate::seal`] with kind `VaultEntry` and the token in
//! the associated data, so an entry copied under another token, model or kind does not open.
//! Must not: log or return a value, a lookup hash or a key in an error.

use crate::CryptoError;
use crate::keys::DataKey;
use crate::mac::MacKey;
use crate::seal::{BlobKind, open_blob, seal_blob};
use crate::secret::{SecretBytes, fill_random};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use custos_core::Partition;
use zeroize::Zeroizing;

const LOOKUP_DOMAIN: &[u8] = b"custos/vault-lookup/v1\0";
/// What every vault token starts with.
pub const TOKEN_PREFIX: &str = "tok_";
/// 128 random bits per token.
const TOKEN_BYTES: usize = 16;

/// The keyed hash the vault finds a value's entry by.
#[derive(Clone)]
pub struct VaultLookup {
    key: MacKey,
}

impl std::fmt::Debug for VaultLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultLookup(..)")
    }
}

impl VaultLookup {
    /// Keys the lookup hash; the secret is consumed.
    pub fn new(key: SecretBytes) -> Self {
        Self {
            key: MacKey::new(key.expose()),
        }
    }

    /// `HMAC-SHA256(key, "custos/vault-lookup/v1\0" ‖ model_id (8 bytes LE) ‖ value)`.
    pub fn lookup(&self, model_id: i64, value: &str) -> [u8; 32] {
        self.key
            .tag(&[LOOKUP_DOMAIN, &model_id.to_le_bytes(), value.as_bytes()])
    }
}

/// A fresh token: `tok_` and 22 URL-safe characters of 128 random bits.
pub fn new_token() -> Result<String, CryptoError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    fill_random(&mut bytes)?;
    let mut out = String::with_capacity(TOKEN_PREFIX.len() + 22);
    out.push_str(TOKEN_PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes, &mut out);
    Ok(out)
}

/// Whether `text` has the shape of a vault token (checked before any look-up).
pub fn is_token(text: &str) -> bool {
    text.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 22
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn label(token: &str) -> String {
    format!("vault:{token}")
}

/// Seals an original under the model's vault key, bound to model, token and kind.
pub fn seal_entry(
    key: &DataKey,
    model_id: i64,
    token: &str,
    value: &str,
) -> Result<Vec<u8>, CryptoError> {
    let sealed = seal_blob(
        key,
        model_id,
        Partition(0),
        BlobKind::VaultEntry,
        &label(token),
        value.as_bytes(),
    )?;
    Ok(sealed.ciphertext().to_vec())
}

/// Opens an entry sealed by [`seal_entry`] for exactly this model and token.
pub fn open_entry(
    key: &DataKey,
    model_id: i64,
    token: &str,
    sealed: &[u8],
) -> Result<Zeroizing<String>, CryptoError> {
    let bytes = Zeroizing::new(open_blob(
        key,
        model_id,
        Partition(0),
        BlobKind::VaultEntry,
        &label(token),
        sealed,
    )?);
    std::str::from_utf8(&bytes)
        .map(|s| Zeroizing::new(s.to_owned()))
        .map_err(|_| CryptoError::Encoding)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert!(is_token(&a) && is_token(&b), "{a}");
        assert!(!is_token("tok_short"));
        assert!(!is_token("hm_AAAAAAAAAAAAAAAAAAAAAA"));
    }

    #[test]
    fn lookups_are_keyed_and_per_model() {
        let k1 = VaultLookup::new(SecretBytes::generate().unwrap());
        let k2 = VaultLookup::new(SecretBytes::generate().unwrap());
        assert_eq!(k1.lookup(1, "a@b.c"), k1.lookup(1, "a@b.c"));
        assert_ne!(k1.lookup(1, "a@b.c"), k1.lookup(2, "a@b.c"));
        assert_ne!(k1.lookup(1, "a@b.c"), k2.lookup(1, "a@b.c"));
    }

    #[test]
    fn an_entry_opens_only_under_its_model_and_token() {
        let key = DataKey::generate().unwrap();
        let token = new_token().unwrap();
        let sealed = seal_entry(&key, 7, &token, "ada@example.org").unwrap();
        assert_eq!(
            open_entry(&key, 7, &token, &sealed).unwrap().as_str(),
            "ada@example.org"
        );
        assert!(open_entry(&key, 8, &token, &sealed).is_err());
        assert!(open_entry(&key, 7, &new_token().unwrap(), &sealed).is_err());
        let mut flipped = sealed.clone();
        if let Some(last) = flipped.last_mut() {
            *last ^= 1;
        }
        assert!(open_entry(&key, 7, &token, &flipped).is_err());
    }
}
