//! Secret byte strings and the random source.
//!
//! Owns: [`SecretBytes`] (a 32-byte secret such as the PII HMAC key, the event-key HMAC key or
//! the token pepper) and the crate's single call into the OS random number generator. Must not:
//! print, serialise or compare secrets in variable time; every holder wipes its bytes on drop and
//! its `Debug` says only that it is redacted.

use crate::error::CryptoError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fmt;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

/// Length of every symmetric secret in this crate (256 bits).
pub const SECRET_LEN: usize = 32;

/// Fills `buf` from the OS CSPRNG. The only randomness source of the crate, so that a failing
/// RNG surfaces as [`CryptoError::Random`] everywhere instead of silently weak keys.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}

/// Fresh random 32 bytes, wiped on drop.
pub(crate) fn random_key() -> Result<Zeroizing<[u8; SECRET_LEN]>, CryptoError> {
    let mut key = Zeroizing::new([0u8; SECRET_LEN]);
    fill_random(key.as_mut_slice())?;
    Ok(key)
}

/// Decodes standard base64 (surrounding whitespace ignored) into exactly 32 bytes without
/// leaving undecoded copies around. The error never quotes the text.
pub(crate) fn decode_key_base64(text: &str) -> Result<Zeroizing<[u8; SECRET_LEN]>, String> {
    // Room for a few extra bytes so that an over-long key is reported as a wrong length rather
    // than as a decoding error; longer inputs are refused before decoding.
    let mut buf = Zeroizing::new([0u8; SECRET_LEN + 16]);
    let text = text.trim();
    if text.len() > 64 {
        return Err("expected 32 bytes of base64, found far more".to_owned());
    }
    let len = STANDARD
        .decode_slice(text.as_bytes(), buf.as_mut_slice())
        .map_err(|_| "not valid standard base64".to_owned())?;
    if len != SECRET_LEN {
        return Err(format!("expected 32 bytes of base64, found {len}"));
    }
    let mut key = Zeroizing::new([0u8; SECRET_LEN]);
    for (dst, src) in key.iter_mut().zip(buf.iter()) {
        *dst = *src;
    }
    Ok(key)
}

/// A 256-bit secret (HMAC key, token pepper, stored secret). Wiped on drop; `Debug` redacts.
/// Equality is constant-time.
#[derive(Clone)]
pub struct SecretBytes(Zeroizing<[u8; SECRET_LEN]>);

impl SecretBytes {
    /// A fresh random secret.
    pub fn generate() -> Result<Self, CryptoError> {
        random_key().map(Self)
    }

    /// Copies a secret from exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        if bytes.len() != SECRET_LEN {
            return Err(CryptoError::Format(format!(
                "a secret must be {SECRET_LEN} bytes, got {}",
                bytes.len()
            )));
        }
        let mut key = Zeroizing::new([0u8; SECRET_LEN]);
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// Parses 32 bytes of standard base64 (for secrets supplied by file or environment).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        decode_key_base64(text)
            .map(Self)
            .map_err(CryptoError::Format)
    }

    /// The raw bytes. Call sites should be few and obvious: keying a MAC or wrapping.
    pub fn expose(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&*other.0).into()
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_lengths_are_checked() {
        let secret = SecretBytes::from_slice(&[0xAB; 32]).unwrap();
        let shown = format!("{secret:?}");
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
        assert!(SecretBytes::from_slice(&[0; 31]).is_err());
        assert!(SecretBytes::from_slice(&[0; 33]).is_err());
        assert_ne!(
            SecretBytes::generate().unwrap(),
            SecretBytes::generate().unwrap()
        );
    }

    #[test]
    fn base64_secrets() {
        let text = STANDARD.encode([7u8; 32]);
        let secret = SecretBytes::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(secret.expose(), &[7u8; 32]);
        assert!(SecretBytes::from_base64(&STANDARD.encode([7u8; 31])).is_err());
        assert!(SecretBytes::from_base64(&STANDARD.encode([7u8; 33])).is_err());
        assert!(SecretBytes::from_base64("not base64!").is_err());
        let err = SecretBytes::from_base64(&STANDARD.encode([7u8; 40])).unwrap_err();
        assert!(!err.to_string().contains(&STANDARD.encode([7u8; 40])));
    }
}
