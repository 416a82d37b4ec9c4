//! The crate's one wrapper around AES-256-GCM (aes-gcm 0.11, detached-tag in-place API).
//!
//! Owns: nonce generation and the encrypt/decrypt calls, so that the nonce policy (random
//! 96-bit, one per message) and the mapping of every failure to [`CryptoError::Decrypt`] live
//! in one place. Must not: decide formats, headers or associated data — that is the caller's
//! (`seal`, `keys`) business.

use crate::error::CryptoError;
use crate::secret::{SECRET_LEN, fill_random};
use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Tag};

/// AES-GCM nonce length (96 bits: the length GCM is specified and analysed for).
pub(crate) const NONCE_LEN: usize = 12;
/// AES-GCM tag length (full 128 bits; never truncated).
pub(crate) const TAG_LEN: usize = 16;

/// A fresh random nonce. See `seal`'s module docs for why random nonces are safe at our volume.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    Ok(nonce)
}

fn cipher(key: &[u8; SECRET_LEN]) -> Aes256Gcm {
    // The cipher holds the expanded round keys; aes-gcm's `zeroize` feature wipes them on drop.
    Aes256Gcm::new(key.into())
}

/// Encrypts `buf` in place and returns the tag.
pub(crate) fn encrypt_in_place(
    key: &[u8; SECRET_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    let tag = cipher(key)
        .encrypt_inout_detached(nonce.into(), aad, buf.into())
        // The only failure is a message beyond GCM's 64 GiB limit.
        .map_err(|_| CryptoError::TooLarge)?;
    Ok(tag.into())
}

/// Decrypts `buf` in place if `tag` authenticates it with `aad`; otherwise `Decrypt` and `buf`
/// must be discarded.
pub(crate) fn decrypt_in_place(
    key: &[u8; SECRET_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8],
) -> Result<(), CryptoError> {
    let tag = Tag::try_from(tag).map_err(|_| CryptoError::Decrypt)?;
    cipher(key)
        .decrypt_inout_detached(nonce.into(), aad, buf.into(), &tag)
        .map_err(|_| CryptoError::Decrypt)
}

/// The three parts of a sealed message.
pub(crate) struct Parts<'a> {
    pub(crate) header: &'a [u8],
    pub(crate) body: &'a [u8],
    pub(crate) tag: &'a [u8],
}

/// Splits `header ‖ body ‖ tag` (header of `header_len` bytes). Too short → `Decrypt`, like
/// any other damage.
pub(crate) fn split_sealed(sealed: &[u8], header_len: usize) -> Result<Parts<'_>, CryptoError> {
    let body_end = sealed
        .len()
        .checked_sub(TAG_LEN)
        .filter(|end| *end >= header_len)
        .ok_or(CryptoError::Decrypt)?;
    let (rest, tag) = sealed.split_at(body_end);
    let (header, body) = rest.split_at(header_len);
    Ok(Parts { header, body, tag })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let key = [9u8; 32];
        let nonce = random_nonce().unwrap();
        let mut buf = b"hello world".to_vec();
        let tag = encrypt_in_place(&key, &nonce, b"aad", &mut buf).unwrap();
        assert_ne!(buf, b"hello world");
        let ct = buf.clone();
        decrypt_in_place(&key, &nonce, b"aad", &mut buf, &tag).unwrap();
        assert_eq!(buf, b"hello world");
        let mut buf = ct.clone();
        assert!(matches!(
            decrypt_in_place(&key, &nonce, b"aaD", &mut buf, &tag),
            Err(CryptoError::Decrypt)
        ));
        let mut buf = ct;
        assert!(decrypt_in_place(&key, &nonce, b"aad", &mut buf, &tag[..15]).is_err());
    }

    #[test]
    fn known_answer_aes256gcm() {
        // Test case 14 of the GCM specification (McGrew & Viega), as used by NIST:
        // all-zero key, all-zero 96-bit IV, 16 zero bytes of plaintext, no AAD.
        let key = [0u8; 32];
        let nonce = [0u8; 12];
        let mut buf = [0u8; 16];
        let tag = encrypt_in_place(&key, &nonce, b"", &mut buf).unwrap();
        assert_eq!(hex::encode(buf), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
    }

    #[test]
    fn split_rejects_short_input() {
        assert!(split_sealed(&[0u8; 20], 5).is_err());
        let parts = split_sealed(&[0u8; 21], 5).unwrap();
        assert_eq!(
            (parts.header.len(), parts.body.len(), parts.tag.len()),
            (5, 0, 16)
        );
    }
}
