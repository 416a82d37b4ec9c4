//! The crate's one HMAC-SHA256 helper, shared by pseudonyms and token hashing.
//!
//! Owns: keying HMAC-SHA256 once and computing tags over length-unambiguous parts by cloning
//! the pre-keyed state (LIMITS.md §7: ~25% cheaper than re-keying per call). Must not: expose
//! the key or the keyed state; callers get only 32-byte tags. Domain separation (the
//! `custos/…/v1\0` prefixes) is the caller's job.

use hmac::digest::KeyInit as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use std::fmt;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// SHA-256 block size: HMAC zero-pads shorter keys to it and hashes longer ones (RFC 2104).
const BLOCK: usize = 64;

/// An HMAC-SHA256 key, pre-processed into its inner and outer hash states.
#[derive(Clone)]
pub(crate) struct MacKey(HmacSha256);

impl MacKey {
    /// Keys HMAC-SHA256 with a key of any length. Infallible: we do the RFC 2104 key
    /// derivation (hash if longer than a block, zero-pad to a block) ourselves and hand the
    /// block to the infallible `KeyInit::new`, so no `Result` leaks into callers whose keys
    /// cannot be wrong. RFC 4231 vectors below cover both the short and the long-key path.
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut block = Zeroizing::new([0u8; BLOCK]);
        if key.len() > BLOCK {
            let digest = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(key)));
            for (dst, src) in block.iter_mut().zip(digest.iter()) {
                *dst = *src;
            }
        } else {
            for (dst, src) in block.iter_mut().zip(key) {
                *dst = *src;
            }
        }
        let block_ref: &hmac::digest::Key<HmacSha256> = (&*block).into();
        Self(HmacSha256::new(block_ref))
    }

    /// HMAC over the concatenation of `parts`.
    pub(crate) fn tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.0.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(key: &[u8], data: &[u8], expected_hex: &str) {
        let tag = MacKey::new(key).tag(&[data]);
        assert_eq!(hex::encode(tag), expected_hex);
        // Splitting the message must not change the tag (parts are concatenated).
        let (a, b) = data.split_at(data.len() / 2);
        assert_eq!(MacKey::new(key).tag(&[a, b]), tag);
        // And the reference implementation's own keying agrees.
        let mut reference = <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(key).unwrap();
        reference.update(data);
        assert_eq!(<[u8; 32]>::from(reference.finalize().into_bytes()), tag);
    }

    #[test]
    fn rfc4231_case_1() {
        check(
            &[0x0b; 20],
            b"Hi There",
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        );
    }

    #[test]
    fn rfc4231_case_2() {
        check(
            b"Jefe",
            b"what do ya want for nothing?",
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        );
    }

    #[test]
    fn rfc4231_case_3() {
        check(
            &[0xaa; 20],
            &[0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
        );
    }

    #[test]
    fn rfc4231_case_4() {
        let key: Vec<u8> = (0x01..=0x19).collect();
        check(
            &key,
            &[0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
        );
    }

    #[test]
    fn rfc4231_case_6_long_key() {
        check(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        );
    }

    #[test]
    fn rfc4231_case_7_long_key_and_data() {
        check(
            &[0xaa; 131],
            b"This is a test using a larger than block-size key and a larger than block-size \
              data. The key needs to be hashed before being used by the HMAC algorithm.",
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
        );
    }

    #[test]
    fn exactly_one_block_key_is_not_hashed() {
        // 64-byte keys take the padding path; compare with the reference keying.
        check(
            &[0x42; 64],
            b"x",
            &hex::encode({
                let mut m =
                    <HmacSha256 as hmac::digest::KeyInit>::new_from_slice(&[0x42; 64]).unwrap();
                m.update(b"x");
                <[u8; 32]>::from(m.finalize().into_bytes())
            }),
        );
        assert_ne!(
            MacKey::new(&[0x42; 64]).tag(&[b"x"]),
            MacKey::new(&[0x42; 65]).tag(&[b"x"])
        );
    }
}
