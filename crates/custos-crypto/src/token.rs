//! API tokens and the one-time bootstrap secret.
//!
//! Owns: the token format `prefix ‖ base64url(32 random bytes) ‖ "_" ‖ checksum`, where the
//! checksum is base64url of the first 4 bytes of SHA-256 of everything before the `_`; the
//! checksum check; and the keyed at-rest hash `HMAC-SHA256(pepper, "custos/token/v1\0" ‖ token)`.
//! Must not: store, log or print a token (only its hash and [`display_prefix`] may be kept), or
//! use a slow password hash per request — 256 random bits need only a keyed hash, and a database
//! leak without the pepper gives nothing to brute-force.
//!
//! The checksum is not a security control: it lets clients, secret scanners and the server
//! reject typos and truncations before any lookup, and it makes tokens recognisable in leaks.

use crate::error::CryptoError;
use crate::mac::MacKey;
use crate::secret::{SECRET_LEN, SecretBytes, fill_random};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use std::fmt;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

const TOKEN_DOMAIN: &[u8] = b"custos/token/v1\0";
const PREFIX_LEN: usize = 4;
/// base64url without padding of 32 bytes.
const RANDOM_CHARS: usize = 43;
/// base64url without padding of 4 bytes.
const CHECKSUM_CHARS: usize = 6;
const CHECKSUM_BYTES: usize = 4;
/// Total token length: `cst_` + 43 + `_` + 6.
pub const TOKEN_LEN: usize = PREFIX_LEN + RANDOM_CHARS + 1 + CHECKSUM_CHARS;
/// How many leading characters [`display_prefix`] keeps.
pub const DISPLAY_PREFIX_CHARS: usize = 12;

/// What a token is for, visible in its first four characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenPrefix {
    /// An API token (`cst_`).
    Api,
    /// The one-time bootstrap secret written at first start (`csb_`).
    Bootstrap,
}

impl TokenPrefix {
    /// The literal prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "cst_",
            Self::Bootstrap => "csb_",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "cst_" => Some(Self::Api),
            "csb_" => Some(Self::Bootstrap),
            _ => None,
        }
    }
}

/// A whole token as shown once to its owner. Wiped on drop; `Debug` shows only the prefix.
pub struct TokenSecret(Zeroizing<String>);

impl TokenSecret {
    /// The token text, to show once or to write to the 0600 bootstrap file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.0.get(..PREFIX_LEN).unwrap_or("");
        write!(f, "TokenSecret({kind}[redacted])")
    }
}

fn checksum(body: &str) -> [u8; CHECKSUM_BYTES] {
    let digest: [u8; 32] = Sha256::digest(body.as_bytes()).into();
    let mut out = [0u8; CHECKSUM_BYTES];
    for (dst, src) in out.iter_mut().zip(digest) {
        *dst = src;
    }
    out
}

/// A fresh token with 256 random bits.
pub fn generate_token(prefix: TokenPrefix) -> Result<TokenSecret, CryptoError> {
    let mut random = Zeroizing::new([0u8; SECRET_LEN]);
    fill_random(random.as_mut_slice())?;
    // Exact capacity: the string never reallocates, so no unwiped copy is left behind.
    let mut text = Zeroizing::new(String::with_capacity(TOKEN_LEN));
    text.push_str(prefix.as_str());
    URL_SAFE_NO_PAD.encode_string(random.as_slice(), &mut text);
    let sum = checksum(&text);
    text.push('_');
    URL_SAFE_NO_PAD.encode_string(sum, &mut text);
    Ok(TokenSecret(text))
}

/// Checks a presented token's shape and checksum, returning its kind. Cheap, and done before
/// any hashing or lookup so garbage never reaches the database.
pub fn parse_token(text: &str) -> Result<TokenPrefix, CryptoError> {
    if text.len() != TOKEN_LEN || !text.is_ascii() {
        return Err(CryptoError::InvalidToken);
    }
    let prefix = text
        .get(..PREFIX_LEN)
        .and_then(TokenPrefix::parse)
        .ok_or(CryptoError::InvalidToken)?;
    let body_end = PREFIX_LEN + RANDOM_CHARS;
    let (body, random, sep, sum) = match (
        text.get(..body_end),
        text.get(PREFIX_LEN..body_end),
        text.get(body_end..=body_end),
        text.get(body_end + 1..),
    ) {
        (Some(body), Some(random), Some(sep), Some(sum)) => (body, random, sep, sum),
        _ => return Err(CryptoError::InvalidToken),
    };
    if sep != "_" {
        return Err(CryptoError::InvalidToken);
    }
    // Decoding (not just an alphabet check) also rejects non-canonical final characters.
    let mut random_bytes = Zeroizing::new([0u8; SECRET_LEN + 3]);
    match URL_SAFE_NO_PAD.decode_slice(random, random_bytes.as_mut_slice()) {
        Ok(SECRET_LEN) => {}
        _ => return Err(CryptoError::InvalidToken),
    }
    let mut sum_bytes = [0u8; CHECKSUM_BYTES + 2];
    match URL_SAFE_NO_PAD.decode_slice(sum, &mut sum_bytes) {
        Ok(CHECKSUM_BYTES) => {}
        _ => return Err(CryptoError::InvalidToken),
    }
    if sum_bytes.get(..CHECKSUM_BYTES) != Some(checksum(body).as_slice()) {
        return Err(CryptoError::InvalidToken);
    }
    Ok(prefix)
}

/// The at-rest form of tokens: a keyed hash under a server pepper. Tokens are stored and looked
/// up only by this hash.
#[derive(Clone)]
pub struct TokenHasher(MacKey);

impl TokenHasher {
    /// Keys the hasher with the server's token pepper.
    pub fn new(pepper: SecretBytes) -> Self {
        Self(MacKey::new(pepper.expose()))
    }

    /// `HMAC-SHA256(pepper, "custos/token/v1\0" ‖ token)`.
    pub fn hash(&self, token: &str) -> [u8; 32] {
        self.0.tag(&[TOKEN_DOMAIN, token.as_bytes()])
    }

    /// Whether `token` hashes to `stored`, in constant time (for callers that fetched the row
    /// by another key, e.g. the bootstrap secret).
    pub fn verify(&self, token: &str, stored: &[u8]) -> bool {
        constant_time_eq(&self.hash(token), stored)
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher([redacted])")
    }
}

/// The first 12 characters of a token (`cst_` + 8 random characters = 48 of 256 bits): enough
/// for an owner to recognise it in a list, far too little to help guess the rest.
pub fn display_prefix(token: &str) -> String {
    token.chars().take(DISPLAY_PREFIX_CHARS).collect()
}

/// Constant-time equality of two byte strings (the length itself is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_differ() {
        let api = generate_token(TokenPrefix::Api).unwrap();
        let boot = generate_token(TokenPrefix::Bootstrap).unwrap();
        assert_eq!(api.expose().len(), TOKEN_LEN);
        assert!(api.expose().starts_with("cst_"));
        assert!(boot.expose().starts_with("csb_"));
        assert_eq!(parse_token(api.expose()).unwrap(), TokenPrefix::Api);
        assert_eq!(parse_token(boot.expose()).unwrap(), TokenPrefix::Bootstrap);
        let again = generate_token(TokenPrefix::Api).unwrap();
        assert_ne!(api.expose(), again.expose());
        assert_ne!(api.expose().get(4..47), again.expose().get(4..47));
    }

    #[test]
    fn every_single_character_change_is_rejected() {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for _ in 0..8 {
            let token = generate_token(TokenPrefix::Api).unwrap();
            let text = token.expose().as_bytes().to_vec();
            for i in 0..text.len() {
                // Two different replacements per position, from the token alphabet so only the
                // checksum (or the prefix/separator check) can catch it.
                for k in [1usize, 17] {
                    let mut bad = text.clone();
                    let pos = ALPHABET.iter().position(|c| *c == bad[i]).unwrap_or(0);
                    bad[i] = ALPHABET[(pos + k) % ALPHABET.len()];
                    let bad = String::from_utf8(bad).unwrap();
                    assert!(parse_token(&bad).is_err(), "position {i}: {bad}");
                }
            }
        }
    }

    #[test]
    fn truncated_extended_and_foreign_tokens_are_rejected() {
        let token = generate_token(TokenPrefix::Api).unwrap();
        let text = token.expose();
        assert!(parse_token(&text[..TOKEN_LEN - 1]).is_err());
        assert!(parse_token(&format!("{text}A")).is_err());
        assert!(parse_token(&format!(" {}", &text[1..])).is_err());
        assert!(parse_token("").is_err());
        assert!(parse_token(&"é".repeat(TOKEN_LEN / 2)).is_err());
        assert!(parse_token(&text.replacen("cst_", "xyz_", 1)).is_err());
        // Swapping the kind invalidates the checksum: a bootstrap secret cannot pose as an
        // API token and vice versa.
        assert!(parse_token(&text.replacen("cst_", "csb_", 1)).is_err());
    }

    #[test]
    fn hash_is_stable_and_keyed() {
        let pepper = SecretBytes::from_slice(&[1; 32]).unwrap();
        let hasher = TokenHasher::new(pepper.clone());
        let token = generate_token(TokenPrefix::Api).unwrap();
        let h = hasher.hash(token.expose());
        assert_eq!(h, TokenHasher::new(pepper).hash(token.expose()));
        let other = TokenHasher::new(SecretBytes::from_slice(&[2; 32]).unwrap());
        assert_ne!(h, other.hash(token.expose()));
        assert_ne!(
            h,
            hasher.hash(generate_token(TokenPrefix::Api).unwrap().expose())
        );
        let plain: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        assert_ne!(h, plain);
        assert!(hasher.verify(token.expose(), &h));
        assert!(!other.verify(token.expose(), &h));
        let expected =
            MacKey::new(&[1; 32]).tag(&[b"custos/token/v1\0", token.expose().as_bytes()]);
        assert_eq!(h, expected);
    }

    #[test]
    fn display_prefix_and_debug_do_not_reveal_the_secret() {
        let token = generate_token(TokenPrefix::Api).unwrap();
        let text = token.expose().to_owned();
        let prefix = display_prefix(&text);
        assert_eq!(prefix.len(), 12);
        assert!(text.starts_with(&prefix));
        let shown = format!("{token:?}");
        assert_eq!(shown, "TokenSecret(cst_[redacted])");
        assert!(!shown.contains(&text[4..12]));
        assert_eq!(display_prefix("short"), "short");
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics_and_is_rejected(text in ".{0,80}") {
            // A random string passing a 32-bit checksum is a 2^-32 event; treat it as failure.
            proptest::prop_assert!(parse_token(&text).is_err());
        }

        #[test]
        fn arbitrary_token_shaped_text_is_rejected(
            body in "[A-Za-z0-9_-]{43}",
            sum in "[A-Za-z0-9_-]{6}",
        ) {
            let text = format!("cst_{body}_{sum}");
            proptest::prop_assert_eq!(text.len(), TOKEN_LEN);
            proptest::prop_assert!(parse_token(&text).is_err());
        }
    }
}
