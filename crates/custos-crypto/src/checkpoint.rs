//! Signed tree heads for the audit log in the C2SP formats: the `tlog-checkpoint` body
//! (origin, size, root) and the `signed-note` envelope with Ed25519 signature lines and
//! `<name>+<key id>+<key>` verifier keys, so stock Go/transparency-dev tooling and witnesses can
//! check Custos checkpoints.
//!
//! Owns: the exact text layout, key-id derivation, and the strict parse of notes that may come
//! from an attacker. Must not: do IO, expose the signing seed (Debug shows only the public half),
//! accept a note whose body was not signed byte for byte by the expected key, or panic on any
//! input. Checkpoint extension lines are not accepted: Custos does not emit them, and a strict
//! body means there is exactly one text for each (origin, size, root).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Largest note [`NoteVerifier::verify`] will look at; a checkpoint is a few hundred bytes, so
/// this only bounds the work an attacker can make a verifier do.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// Signature lines parsed per note at most (the Go reference uses the same bound).
pub const MAX_SIGNATURES: usize = 100;

/// The C2SP signed-note signature type byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// Every signature line starts with an em dash (U+2014) and a space.
const SIG_PREFIX: &str = "\u{2014} ";

const KEY_ID_LEN: usize = 4;
const ED25519_SIG_LEN: usize = 64;

/// Why a checkpoint, note or key failed to parse or verify. Static reasons only: messages end
/// up in logs and API responses and never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint body is not exactly origin, size and root lines.
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(&'static str),
    /// The origin line is empty or contains control characters.
    #[error("invalid checkpoint origin")]
    InvalidOrigin,
    /// The size line is not a canonical decimal `u64`.
    #[error("invalid checkpoint tree size")]
    InvalidSize,
    /// The root line is not canonical standard base64 of 32 bytes.
    #[error("invalid checkpoint root hash")]
    InvalidRoot,
    /// The note is larger than [`MAX_NOTE_SIZE`].
    #[error("note is {0} bytes, larger than the {MAX_NOTE_SIZE}-byte limit")]
    NoteTooLarge(usize),
    /// The note's envelope (blank line, signature lines, characters) is malformed.
    #[error("malformed signed note: {0}")]
    MalformedNote(&'static str),
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("signed note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// No signature line carries this verifier's name and key id.
    #[error("note has no signature from the expected key")]
    MissingSignature,
    /// A signature line from this verifier's key does not verify over the note text.
    #[error("signature from the expected key is invalid")]
    InvalidSignature,
    /// A key name is empty, contains whitespace or `+`.
    #[error("invalid key name")]
    InvalidKeyName,
    /// A verifier key string is malformed or its key id does not match its key.
    #[error("invalid verifier key: {0}")]
    InvalidVerifierKey(&'static str),
    /// Text to sign is empty, lacks the final newline, contains control characters, or would
    /// make a note over [`MAX_NOTE_SIZE`].
    #[error("invalid note text: {0}")]
    InvalidNoteText(&'static str),
    /// The signing operation failed.
    #[error("signing failed")]
    Signing,
}

/// A C2SP `tlog-checkpoint`: the log's origin, its tree size and the root hash at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log (conventionally a schema-less URL); one line, no control characters.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// `MTH` of the first `size` leaves.
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `<origin>\n<size>\n<base64 root>\n`. Not validated here; [`NoteSigner::sign`]
    /// refuses a checkpoint whose text would not parse back to itself.
    pub fn to_body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Parses a body strictly: exactly three newline-terminated lines, non-empty origin without
    /// control characters, canonical decimal size, canonical standard base64 of 32 bytes.
    pub fn parse_body(text: &str) -> Result<Self, CheckpointError> {
        let Some(inner) = text.strip_suffix('\n') else {
            return Err(CheckpointError::MalformedBody("must end with a newline"));
        };
        let mut lines = inner.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::MalformedBody(
                "needs origin, size and root lines",
            ));
        };
        if lines.next().is_some() {
            return Err(CheckpointError::MalformedBody(
                "unexpected lines after the root hash",
            ));
        }
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(CheckpointError::InvalidOrigin);
        }
        Ok(Self {
            origin: origin.to_owned(),
            size: parse_canonical_u64(size).ok_or(CheckpointError::InvalidSize)?,
            root: parse_root(root).ok_or(CheckpointError::InvalidRoot)?,
        })
    }
}

/// Decimal without sign, whitespace or leading zeros (other than "0" itself), within `u64`.
fn parse_canonical_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_root(s: &str) -> Option<Hash> {
    let bytes = STANDARD.decode(s).ok()?;
    let root = Hash::try_from(bytes.as_slice()).ok()?;
    // The engine already rejects non-zero trailing bits; re-encoding makes "one text per root"
    // independent of that configuration detail.
    (STANDARD.encode(root) == s).then_some(root)
}

/// C2SP key names: non-empty, no Unicode whitespace (it separates fields in signature lines),
/// no `+` (it separates fields in verifier keys).
fn validate_key_name(name: &str) -> Result<(), CheckpointError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(CheckpointError::InvalidKeyName);
    }
    Ok(())
}

/// `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[..4]`, per C2SP signed-note.
fn key_id(name: &str, public_key: &[u8; 32]) -> [u8; KEY_ID_LEN] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

/// Note text rules shared by signing and verification: the Go reference rejects ASCII control
/// characters other than newline anywhere in a note.
fn has_forbidden_control(s: &str) -> bool {
    s.chars().any(|c| c < ' ' && c != '\n')
}

/// Signs checkpoints as C2SP signed notes with Ed25519.
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    key_id: [u8; KEY_ID_LEN],
}

impl NoteSigner {
    /// A signer named `name` whose Ed25519 key is derived from the 32-byte `seed` (RFC 8032
    /// secret key). The caller keeps and wipes its copy of the seed.
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, CheckpointError> {
        validate_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id,
        })
    }

    /// The key name that appears in signature lines.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id that prefixes every signature.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The public half, for publishing (see [`NoteVerifier::verifier_key`]).
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    /// The full signed note for `checkpoint`: body, blank line, one signature line. Refuses a
    /// checkpoint whose body would not parse back to the same checkpoint (e.g. an origin with a
    /// newline), so nothing is ever signed that verifiers would read differently.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        let body = checkpoint.to_body();
        if Checkpoint::parse_body(&body)? != *checkpoint {
            return Err(CheckpointError::InvalidOrigin);
        }
        self.sign_text(&body)
    }

    /// Signs arbitrary note text (non-empty, newline-terminated, no control characters other
    /// than newline). Used for checkpoints and kept general for cosignature-style notes.
    pub fn sign_text(&self, text: &str) -> Result<String, CheckpointError> {
        if text.is_empty() || !text.ends_with('\n') {
            return Err(CheckpointError::InvalidNoteText(
                "must be non-empty and end with a newline",
            ));
        }
        if has_forbidden_control(text) {
            return Err(CheckpointError::InvalidNoteText(
                "contains control characters",
            ));
        }
        let sig: Signature = self
            .key
            .try_sign(text.as_bytes())
            .map_err(|_| CheckpointError::Signing)?;
        let mut blob = Vec::with_capacity(KEY_ID_LEN + ED25519_SIG_LEN);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        );
        if note.len() > MAX_NOTE_SIZE {
            return Err(CheckpointError::InvalidNoteText(
                "note would exceed the size limit",
            ));
        }
        Ok(note)
    }
}

impl fmt::Debug for NoteSigner {
    // Hand-written so the secret half can never reach logs, whatever SigningKey's Debug does.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

/// Verifies signed notes from one named Ed25519 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key: VerifyingKey,
    key_id: [u8; KEY_ID_LEN],
}

impl NoteVerifier {
    /// A verifier for key `name` with the 32-byte Ed25519 public key. Rejects keys that are not
    /// valid curve points or have small order (they would make forgeries easy).
    pub fn new(name: &str, public_key: &[u8; 32]) -> Result<Self, CheckpointError> {
        validate_key_name(name)?;
        let key = VerifyingKey::from_bytes(public_key)
            .map_err(|_| CheckpointError::InvalidVerifierKey("not an Ed25519 public key"))?;
        if key.is_weak() {
            return Err(CheckpointError::InvalidVerifierKey(
                "small-order public key",
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            key,
            key_id: key_id(name, public_key),
        })
    }

    /// The key name signature lines must carry.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key id signature blobs must start with.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The C2SP verifier key: `<name>+<8 hex digits key id>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let mut material = Vec::with_capacity(33);
        material.push(ALG_ED25519);
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            STANDARD.encode(material)
        )
    }

    /// Parses a verifier key string, checking that the key id matches the name and key.
    pub fn from_verifier_key(vkey: &str) -> Result<Self, CheckpointError> {
        // Split at the first two '+' only: base64 key material may itself contain '+'.
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(CheckpointError::InvalidVerifierKey("expected name+id+key"))?;
        let (id_hex, key_b64) = rest
            .split_once('+')
            .ok_or(CheckpointError::InvalidVerifierKey("expected name+id+key"))?;
        if id_hex.len() != 2 * KEY_ID_LEN
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(CheckpointError::InvalidVerifierKey(
                "key id must be 8 lowercase hex digits",
            ));
        }
        let id = hex::decode(id_hex)
            .ok()
            .and_then(|v| <[u8; KEY_ID_LEN]>::try_from(v).ok())
            .ok_or(CheckpointError::InvalidVerifierKey(
                "key id must be 8 lowercase hex digits",
            ))?;
        let material = STANDARD
            .decode(key_b64)
            .ok()
            .filter(|m| STANDARD.encode(m) == key_b64)
            .ok_or(CheckpointError::InvalidVerifierKey(
                "key is not canonical base64",
            ))?;
        let Some((&alg, public)) = material.split_first() else {
            return Err(CheckpointError::InvalidVerifierKey("empty key"));
        };
        if alg != ALG_ED25519 {
            return Err(CheckpointError::InvalidVerifierKey(
                "unsupported signature algorithm",
            ));
        }
        let public = <[u8; 32]>::try_from(public)
            .map_err(|_| CheckpointError::InvalidVerifierKey("Ed25519 key must be 32 bytes"))?;
        let verifier = Self::new(name, &public)?;
        if verifier.key_id != id {
            return Err(CheckpointError::InvalidVerifierKey(
                "key id does not match name and key",
            ));
        }
        Ok(verifier)
    }

    /// Verifies a signed checkpoint and returns it. See [`NoteVerifier::verify_text`] for the
    /// envelope rules; the body must then be a strict checkpoint.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(self.verify_text(note)?)
    }

    /// Verifies a signed note and returns its text (the signed bytes, ending in a newline).
    ///
    /// The text is everything up to the last blank line; every line after it must be a
    /// well-formed signature line. Lines from other keys (another name, or the same name with
    /// another key id) are ignored, as the signed-note spec requires for witnesses'
    /// cosignatures; every line from this key must verify (`verify_strict`), and at least one
    /// must be present.
    pub fn verify_text<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(CheckpointError::NoteTooLarge(note.len()));
        }
        if has_forbidden_control(note) {
            return Err(CheckpointError::MalformedNote(
                "contains control characters",
            ));
        }
        let split = note.rfind("\n\n").ok_or(CheckpointError::MalformedNote(
            "missing blank line before signatures",
        ))?;
        // '\n' is ASCII, so split and split + 1/2 are char boundaries.
        let (Some(text), Some(sigs)) = (note.get(..split + 1), note.get(split + 2..)) else {
            return Err(CheckpointError::MalformedNote(
                "missing blank line before signatures",
            ));
        };
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(CheckpointError::MalformedNote(
                "signature block must be non-empty and end with a newline",
            ));
        }

        let mut found = false;
        for (count, line) in sigs.split_terminator('\n').enumerate() {
            if count >= MAX_SIGNATURES {
                return Err(CheckpointError::TooManySignatures);
            }
            let (name, id, sig) = parse_signature_line(line)?;
            if name != self.name || id != self.key_id {
                continue;
            }
            let sig = <[u8; ED25519_SIG_LEN]>::try_from(sig)
                .map_err(|_| CheckpointError::InvalidSignature)?;
            self.key
                .verify_strict(text.as_bytes(), &Signature::from_bytes(&sig))
                .map_err(|_| CheckpointError::InvalidSignature)?;
            found = true;
        }
        if found {
            Ok(text)
        } else {
            Err(CheckpointError::MissingSignature)
        }
    }
}

impl FromStr for NoteVerifier {
    type Err = CheckpointError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_verifier_key(s)
    }
}

/// `— <name> <base64(key id ‖ signature)>` → (name, key id, signature bytes).
fn parse_signature_line(line: &str) -> Result<(&str, [u8; KEY_ID_LEN], Vec<u8>), CheckpointError> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(CheckpointError::MalformedNote(
            "line in signature block is not a signature",
        ))?;
    let (name, b64) = rest.split_once(' ').ok_or(CheckpointError::MalformedNote(
        "signature line needs a name and a signature",
    ))?;
    validate_key_name(name).map_err(|_| CheckpointError::MalformedNote("bad key name"))?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| CheckpointError::MalformedNote("signature is not base64"))?;
    match blob.split_first_chunk::<KEY_ID_LEN>() {
        Some((id, sig)) if !sig.is_empty() => Ok((name, *id, sig.to_vec())),
        _ => Err(CheckpointError::MalformedNote("signature too short")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{EMPTY_ROOT, leaf_hash};

    const SEED: [u8; 32] = [7u8; 32];

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("audit.custos.example", &SEED).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "audit.custos.example/log".into(),
            size: 42,
            root: leaf_hash(b"x"),
        }
    }

    /// golang.org/x/mod/sumdb/note note_test.go (not in SECURITY.md): the PeterNeumann key,
    /// its verifier key, and the published note. Ed25519 is deterministic, so a byte-identical
    /// note shows interoperability with the Go reference.
    const GO_SKEY_MATERIAL: &str = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_NOTE: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n\
                           \n\
                           \u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    #[test]
    fn go_reference_note_known_answer() {
        let material = STANDARD.decode(GO_SKEY_MATERIAL).unwrap();
        assert_eq!(material[0], ALG_ED25519);
        let seed: [u8; 32] = material[1..].try_into().unwrap();
        let s = NoteSigner::from_seed("PeterNeumann", &seed).unwrap();
        assert_eq!(hex::encode(s.key_id()), "c74f20a3");
        assert_eq!(s.verifier().verifier_key(), GO_VKEY);
        assert_eq!(s.sign_text(GO_TEXT).unwrap(), GO_NOTE);
        let v = NoteVerifier::from_verifier_key(GO_VKEY).unwrap();
        assert_eq!(v.verify_text(GO_NOTE).unwrap(), GO_TEXT);
        let tampered = GO_NOTE.replace("cryptography", "cryptographY");
        assert_eq!(
            v.verify_text(&tampered),
            Err(CheckpointError::InvalidSignature)
        );
        // Not a checkpoint body, so the checkpoint-level verify refuses it.
        assert!(v.verify(GO_NOTE).is_err());
    }

    #[test]
    fn round_trip() {
        let s = signer();
        let cp = checkpoint();
        let note = s.sign(&cp).unwrap();
        assert!(note.starts_with(&cp.to_body()));
        assert_eq!(s.verifier().verify(&note).unwrap(), cp);
        let empty = Checkpoint {
            origin: "o".into(),
            size: 0,
            root: EMPTY_ROOT,
        };
        assert_eq!(
            empty.to_body(),
            "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(
            s.verifier().verify(&s.sign(&empty).unwrap()).unwrap(),
            empty
        );
        let max = Checkpoint {
            size: u64::MAX,
            ..checkpoint()
        };
        assert_eq!(s.verifier().verify(&s.sign(&max).unwrap()).unwrap(), max);
    }

    /// Self-generated regression vector (not external): freezes the persisted note format.
    #[test]
    fn note_layout_is_stable() {
        let note = signer().sign(&checkpoint()).unwrap();
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], "audit.custos.example/log");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[2], STANDARD.encode(leaf_hash(b"x")));
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("\u{2014} audit.custos.example "));
        assert_eq!(lines[5], "");
        let blob = STANDARD
            .decode(lines[4].rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(blob.len(), 68);
        assert_eq!(blob[..4], signer().key_id());
        assert_eq!(note, FROZEN_NOTE);
        assert_eq!(
            signer().verifier().verify(FROZEN_NOTE).unwrap(),
            checkpoint()
        );
    }

    /// Produced once by this module for seed [7; 32]; Ed25519 is deterministic, so any change
    /// here is a change of the persisted/published format.
    const FROZEN_NOTE: &str = "audit.custos.example/log\n42\nPH6byTDck/AfppmF7yQtn56GHzxTVaokzl70tLinDMs=\n\n\u{2014} audit.custos.example JK82ARZgiyZdbU21bMu51IMw7eP99RHVa+KmlTulzHcx6rrVkOfYyWTGSfadsa6/PBH2UUsuEjitSoG0JFpBh+p2SwY=\n";

    #[test]
    fn key_id_follows_the_spec() {
        let s = signer();
        let pk = s.verifier().public_key();
        let mut h = Sha256::new();
        h.update(b"audit.custos.example\n\x01");
        h.update(pk);
        let d = h.finalize();
        assert_eq!(s.key_id(), d[..4]);
    }

    #[test]
    fn verifier_key_round_trips_and_rejects_manglings() {
        let v = signer().verifier();
        let vkey = v.verifier_key();
        assert_eq!(NoteVerifier::from_verifier_key(&vkey).unwrap(), v);
        assert_eq!(vkey.parse::<NoteVerifier>().unwrap(), v);
        // As note_test.go does: every strict substring and every single-byte change fails.
        let b = vkey.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len())
                    && let Ok(s) = std::str::from_utf8(&b[i..j])
                {
                    assert!(NoteVerifier::from_verifier_key(s).is_err(), "{s}");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] = m[i].wrapping_add(1);
            if let Ok(s) = std::str::from_utf8(&m) {
                assert!(NoteVerifier::from_verifier_key(s).is_err(), "{s}");
            }
        }
        assert!(NoteVerifier::from_verifier_key(&vkey.to_uppercase()).is_err());
        assert!(NoteVerifier::from_verifier_key("").is_err());
        assert!(NoteVerifier::from_verifier_key("a+b+c").is_err());
        // Small-order key (the identity point) is refused.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert!(NoteVerifier::new("x", &ident).is_err());
    }

    #[test]
    fn key_names_are_validated() {
        for bad in ["", "a b", "a+b", "a\tb", "a\u{2003}b"] {
            assert_eq!(
                NoteSigner::from_seed(bad, &SEED).map(|_| ()),
                Err(CheckpointError::InvalidKeyName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let s = signer();
        let dbg = format!("{s:?}");
        assert!(dbg.contains("audit.custos.example"));
        let secret_hex = hex::encode(SEED);
        assert!(!dbg.contains(&secret_hex));
        assert!(!dbg.contains("7, 7, 7, 7"));
        assert!(!dbg.contains(&STANDARD.encode(SEED)));
    }

    #[test]
    fn parse_body_is_strict() {
        let good = checkpoint().to_body();
        assert_eq!(Checkpoint::parse_body(&good).unwrap(), checkpoint());
        let root = STANDARD.encode(checkpoint().root);
        let bad = [
            String::new(),
            "o\n42\n".to_string(),
            format!("o\n42\n{root}"),
            format!("o\n42\n{root}\n\n"),
            format!("o\n42\n{root}\next\n"),
            format!("\n42\n{root}\n"),
            format!("o\u{7f}\n42\n{root}\n"),
            format!("o\u{85}x\n42\n{root}\n"),
            format!("o\r\n42\n{root}\n"),
            format!("o\n042\n{root}\n"),
            format!("o\n+42\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 42\n{root}\n"),
            format!("o\n42 \n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n4_2\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            format!("o\n42\n{}\n", root.trim_end_matches('=')),
            format!("o\n42\n{}\n", STANDARD.encode([1u8; 31])),
            format!("o\n42\n{}\n", STANDARD.encode([1u8; 33])),
            format!("o\n42\n{}\n", root.replace('+', "-").replace('/', "_")),
            format!("o\n42\n {root}\n"),
            // Non-canonical trailing bits: last data char changed so the unused bits are set.
            "o\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV=\n".to_string(),
        ];
        for b in &bad {
            assert!(Checkpoint::parse_body(b).is_err(), "{b:?}");
        }
        assert_eq!(
            Checkpoint::parse_body("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
                .unwrap()
                .size,
            0
        );
    }

    #[test]
    fn sign_refuses_checkpoints_that_would_not_round_trip() {
        let s = signer();
        for origin in ["", "a\nb", "a\u{0}b", "a\u{85}"] {
            let cp = Checkpoint {
                origin: origin.into(),
                ..checkpoint()
            };
            assert!(s.sign(&cp).is_err(), "{origin:?}");
        }
        assert!(s.sign_text("").is_err());
        assert!(s.sign_text("no newline").is_err());
        assert!(s.sign_text("tab\there\n").is_err());
        assert!(s.sign_text(&"a".repeat(MAX_NOTE_SIZE)).is_err());
    }

    #[test]
    fn any_changed_body_byte_fails() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign(&checkpoint()).unwrap();
        let body_len = checkpoint().to_body().len();
        let bytes = note.as_bytes();
        for i in 0..body_len {
            for delta in [1u8, 0x20, 0x80] {
                let mut m = bytes.to_vec();
                m[i] ^= delta;
                if let Ok(t) = std::str::from_utf8(&m) {
                    assert!(v.verify(t).is_err(), "byte {i} ^ {delta:#x} accepted");
                }
            }
        }
        // And every byte of the signature line (skipping the multi-byte dash).
        for i in body_len..bytes.len() {
            let mut m = bytes.to_vec();
            m[i] ^= 1;
            if let Ok(t) = std::str::from_utf8(&m) {
                assert!(v.verify(t).is_err(), "sig byte {i} accepted");
            }
        }
    }

    #[test]
    fn envelope_negative_cases() {
        let s = signer();
        let v = s.verifier();
        let note = s.sign(&checkpoint()).unwrap();
        let body = checkpoint().to_body();
        let sig_line = note
            .strip_prefix(&body)
            .unwrap()
            .strip_prefix('\n')
            .unwrap();

        let too_big = format!("{}{note}", "x".repeat(MAX_NOTE_SIZE));
        assert_eq!(
            v.verify(&too_big),
            Err(CheckpointError::NoteTooLarge(too_big.len()))
        );

        let cases: Vec<(&str, String)> = vec![
            ("missing blank line", format!("{body}{sig_line}")),
            ("trailing garbage", format!("{note}garbage")),
            ("trailing garbage line", format!("{note}garbage\n")),
            ("trailing blank line", format!("{note}\n")),
            ("no final newline", note.trim_end_matches('\n').to_string()),
            ("no signatures", format!("{body}\n")),
            ("unknown line", format!("{body}\nhello\n{sig_line}")),
            (
                "ascii dash",
                format!("{body}\n{}", sig_line.replacen('\u{2014}', "-", 1)),
            ),
            (
                "double space",
                format!("{body}\n{}", sig_line.replacen(' ', "  ", 1)),
            ),
            ("no name", format!("{body}\n\u{2014}  AAAAAAA=\n")),
            (
                "short sig",
                format!("{body}\n\u{2014} other AAAA\n{sig_line}"),
            ),
            (
                "bad base64",
                format!("{body}\n\u{2014} other !!!!\n{sig_line}"),
            ),
            (
                "control char",
                format!("{body}\n{sig_line}").replace("42", "4\t2"),
            ),
            ("extension line", format!("{body}ext\n\n{sig_line}")),
            ("extra blank in body", format!("{body}\n\n{sig_line}")),
            ("leading blank", format!("\n{note}")),
            ("empty", String::new()),
        ];
        for (name, n) in cases {
            assert!(v.verify(&n).is_err(), "{name} accepted");
        }
        let many = format!(
            "{body}\n{}{sig_line}",
            "\u{2014} other AAAAAAA=\n".repeat(MAX_SIGNATURES)
        );
        assert_eq!(v.verify(&many), Err(CheckpointError::TooManySignatures));
    }

    #[test]
    fn other_keys_are_ignored_but_not_trusted() {
        let s = signer();
        let v = s.verifier();
        let cp = checkpoint();
        let note = s.sign(&cp).unwrap();

        // A different key with the same name: different key id, so its line is ignored and
        // the note has no signature from our key.
        let impostor = NoteSigner::from_seed("audit.custos.example", &[9u8; 32]).unwrap();
        assert_ne!(impostor.key_id(), s.key_id());
        let forged = impostor.sign(&cp).unwrap();
        assert_eq!(v.verify(&forged), Err(CheckpointError::MissingSignature));

        // A witness cosignature alongside ours is fine, in either order.
        let witness = NoteSigner::from_seed("witness.example", &[3u8; 32]).unwrap();
        let wnote = witness.sign(&cp).unwrap();
        let wline = wnote.rsplit_once("\n\n").unwrap().1;
        let sline = note.rsplit_once("\n\n").unwrap().1;
        let body = cp.to_body();
        assert_eq!(v.verify(&format!("{body}\n{wline}{sline}")).unwrap(), cp);
        assert_eq!(v.verify(&format!("{body}\n{sline}{wline}")).unwrap(), cp);
        assert_eq!(
            witness
                .verifier()
                .verify(&format!("{body}\n{sline}{wline}"))
                .unwrap(),
            cp
        );
        // Only the witness: not enough for our verifier.
        assert_eq!(v.verify(&wnote), Err(CheckpointError::MissingSignature));

        // Our name and key id, but a signature made by another key: rejected outright.
        let (_, blob) = wline.trim_end().rsplit_once(' ').unwrap();
        let mut raw = STANDARD.decode(blob).unwrap();
        raw[..4].copy_from_slice(&s.key_id());
        let spoof = format!(
            "{body}\n\u{2014} audit.custos.example {}\n",
            STANDARD.encode(&raw)
        );
        assert_eq!(v.verify(&spoof), Err(CheckpointError::InvalidSignature));
        // A valid line from us plus a bad one from us: rejected.
        assert_eq!(
            v.verify(&format!(
                "{body}\n{sline}\u{2014} audit.custos.example {}\n",
                STANDARD.encode(&raw)
            )),
            Err(CheckpointError::InvalidSignature)
        );
        // Our key id with a truncated signature.
        let short = format!(
            "{body}\n\u{2014} audit.custos.example {}\n",
            STANDARD.encode(&raw[..40])
        );
        assert_eq!(v.verify(&short), Err(CheckpointError::InvalidSignature));

        // Signature over a different checkpoint grafted onto this body.
        let other = Checkpoint {
            size: 43,
            ..cp.clone()
        };
        let other_line = s
            .sign(&other)
            .unwrap()
            .rsplit_once("\n\n")
            .unwrap()
            .1
            .to_string();
        assert_eq!(
            v.verify(&format!("{body}\n{other_line}")),
            Err(CheckpointError::InvalidSignature)
        );
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(s in "\\PC*", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let v = signer().verifier();
            let _ = v.verify(&s);
            let _ = Checkpoint::parse_body(&s);
            let _ = NoteVerifier::from_verifier_key(&s);
            let lossy = String::from_utf8_lossy(&bytes);
            let _ = v.verify(&lossy);
            let note = signer().sign(&checkpoint()).unwrap();
            let _ = v.verify(&format!("{note}{s}"));
            let _ = v.verify(&format!("{s}{note}"));
        }
    }
}
