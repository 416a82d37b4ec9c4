//! The key hierarchy: key-encryption keys (KEKs) wrap data keys and stored secrets.
//!
//! Owns: [`DataKey`], [`Kek`], [`KekRing`] (current KEK plus older versions for rotation),
//! [`KeyContext`] and the wrapped-key format; the KEK directory provider lives in the private
//! `dir` submodule — the only file IO of this crate — and the PKCS#11 (hardware security module)
//! provider in [`pkcs11`]. Must not: hand out raw key bytes, print them (every `Debug` here
//! redacts), or unwrap a key for a context other than the one it was wrapped for.
//!
//! A ring version is either *local* (32 key bytes in this process, from a key file or the
//! environment) or *held* by a key provider that does the AES-256-GCM itself and never lets the
//! key out (an HSM through PKCS#11). Both produce and accept exactly the same wrapped-key bytes:
//! this module builds the nonce, the associated data and the header, checks the layout before any
//! key is touched, and asks the version's cipher only for "AES-256-GCM with this nonce and this
//! associated data". A wrapped key therefore never says which kind of provider made it (only its
//! version), and every tamper check below holds for both.
//!
//! Wrapped-key format (`WrappedKey::bytes`): `format (u8 = 1) ‖ nonce (12) ‖ ciphertext (32) ‖
//! tag (16)`, AES-256-GCM under the KEK named by `WrappedKey::kek_version`, with associated data
//! `"custos/wrap/v1\0" ‖ format ‖ kek_version (u32 LE) ‖ canonical(KeyContext)`. Binding the
//! context means a wrapped key copied onto another model's or day's row, or a data key passed off
//! as a stored secret, fails to unwrap; binding the version means relabelling `kek_version` fails
//! too.

mod dir;
pub mod pkcs11;

pub use dir::{
    RetiringKek, begin_retire_kek, load_kek_dir, load_or_create_kek_dir, rotate_kek_dir,
};

use crate::error::CryptoError;
use crate::gcm::{self, NONCE_LEN, TAG_LEN};
use crate::sealed::WrappedKey;
use crate::secret::{SECRET_LEN, SecretBytes, decode_key_base64, random_key};
use custos_core::Partition;
use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Version of the wrapped-key byte layout.
const WRAP_FORMAT_V1: u8 = 1;
/// Domain prefix of the wrap AAD, so it can never equal another AAD in the system.
const WRAP_DOMAIN: &[u8] = b"custos/wrap/v1\0";
/// Total length of a v1 wrapped key.
const WRAPPED_LEN: usize = 1 + NONCE_LEN + SECRET_LEN + TAG_LEN;

/// A 256-bit AES-GCM data key: one per (model, day partition). Wiped on drop; `Debug` redacts.
/// Only ever stored wrapped ([`KekRing::wrap`]).
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; SECRET_LEN]>);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Result<Self, CryptoError> {
        random_key().map(Self)
    }

    /// The raw key, for this crate's AEAD calls only.
    pub(crate) fn bytes(&self) -> &[u8; SECRET_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([redacted])")
    }
}

/// A KEK version whose key a key provider holds and uses itself (an HSM): this process only ever
/// asks it for AES-256-GCM over one 32-byte key with a given nonce and associated data.
pub(crate) trait HeldKek: Send + Sync {
    /// Encrypts `plaintext`; returns `ciphertext (32) ‖ tag (16)`.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8; SECRET_LEN],
    ) -> Result<Vec<u8>, CryptoError>;

    /// Decrypts `ciphertext (32) ‖ tag (16)`; [`CryptoError::Decrypt`] when it does not
    /// authenticate.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<[u8; SECRET_LEN]>, CryptoError>;
}

/// Where a KEK version's key is.
#[derive(Clone)]
enum KekMaterial {
    /// The key bytes, in this process (key file, environment).
    Local(Zeroizing<[u8; SECRET_LEN]>),
    /// A handle to a key that never leaves its provider.
    Held(Arc<dyn HeldKek>),
}

/// A versioned key-encryption key. Wiped on drop; `Debug` shows only the version.
#[derive(Clone)]
pub struct Kek {
    version: u32,
    material: KekMaterial,
}

impl Kek {
    /// A fresh random KEK. Version 0 is refused: versions start at 1 so that 0 can never be
    /// mistaken for "unset" in a stored row.
    pub fn generate(version: u32) -> Result<Self, CryptoError> {
        Self::from_key(version, random_key()?)
    }

    pub(crate) fn from_key(
        version: u32,
        key: Zeroizing<[u8; SECRET_LEN]>,
    ) -> Result<Self, CryptoError> {
        Self::with_material(version, KekMaterial::Local(key))
    }

    pub(crate) fn held(version: u32, held: Arc<dyn HeldKek>) -> Result<Self, CryptoError> {
        Self::with_material(version, KekMaterial::Held(held))
    }

    fn with_material(version: u32, material: KekMaterial) -> Result<Self, CryptoError> {
        if version == 0 {
            return Err(CryptoError::Format("KEK versions start at 1".to_owned()));
        }
        Ok(Self { version, material })
    }

    /// The version stored beside every key this KEK wraps.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Whether the key is held by a key provider (an HSM) rather than present in this process.
    pub fn is_held(&self) -> bool {
        matches!(self.material, KekMaterial::Held(_))
    }

    /// AES-256-GCM over a 32-byte key: `ciphertext ‖ tag`.
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8; SECRET_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let sealed = match &self.material {
            KekMaterial::Local(key) => {
                let mut body = Zeroizing::new(*plaintext);
                let tag = gcm::encrypt_in_place(key, nonce, aad, body.as_mut_slice())?;
                let mut sealed = Vec::with_capacity(SECRET_LEN + TAG_LEN);
                sealed.extend_from_slice(body.as_slice());
                sealed.extend_from_slice(&tag);
                sealed
            }
            KekMaterial::Held(held) => held.seal(nonce, aad, plaintext)?,
        };
        // A provider answering with anything but ciphertext and a full tag is not trusted.
        if sealed.len() != SECRET_LEN + TAG_LEN {
            return Err(CryptoError::Format(
                "the key provider returned a wrap of the wrong length".to_owned(),
            ));
        }
        Ok(sealed)
    }

    /// The inverse of [`Self::seal`]; `sealed` is `ciphertext (32) ‖ tag (16)`.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<[u8; SECRET_LEN]>, CryptoError> {
        if sealed.len() != SECRET_LEN + TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        match &self.material {
            KekMaterial::Local(key) => {
                let (body, tag) = sealed.split_at(SECRET_LEN);
                let mut out = Zeroizing::new([0u8; SECRET_LEN]);
                out.copy_from_slice(body);
                gcm::decrypt_in_place(key, nonce, aad, out.as_mut_slice(), tag)?;
                Ok(out)
            }
            KekMaterial::Held(held) => held.open(nonce, aad, sealed),
        }
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("version", &self.version)
            .field(
                "key",
                &if self.is_held() {
                    "[held by the key provider]"
                } else {
                    "[redacted]"
                },
            )
            .finish()
    }
}

/// Builds a KEK from 32 bytes of standard base64, for the environment / secret-file provider
/// (`CUSTOS_KEK`, a mounted secret). Errors never quote the text.
pub fn kek_from_base64(version: u32, text: &str) -> Result<Kek, CryptoError> {
    let key =
        decode_key_base64(text).map_err(|reason| CryptoError::Format(format!("KEK: {reason}")))?;
    Kek::from_key(version, key)
}

/// What a wrapped key protects. Part of the wrap's associated data, so a wrapped key only
/// unwraps for the row it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyContext {
    /// The data key of one model's one day partition, for one purpose.
    Data {
        /// The model's database id.
        model_id: i64,
        /// The day partition.
        partition: Partition,
        /// What the key seals ([`KeyPurpose::Shared`] for keys made before purposes existed).
        purpose: KeyPurpose,
    },
    /// A named server secret (PII HMAC key, event-key HMAC key, token pepper, …).
    Secret {
        /// The secret's stable name, e.g. `"pii-hmac"`.
        name: String,
    },
}

/// What a data key seals. Raw rows and the aggregates derived from them have separate keys per
/// (model, day), so that retention can destroy one day's raw events while its hourly profiles
/// stay readable (crypto-shredding of one purpose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyPurpose {
    /// A key made before purposes existed (schema before migration 0009): it seals everything
    /// of its day. No new shared key is ever made.
    Shared,
    /// Raw event batches and ground-truth labels.
    Events,
    /// Hourly profile deltas and reference profiles (aggregates).
    Profiles,
}

impl KeyPurpose {
    /// The stored name (`data_keys.purpose`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Events => "events",
            Self::Profiles => "profiles",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Shared, Self::Events, Self::Profiles]
            .into_iter()
            .find(|p| p.as_str() == name)
    }

    fn tag(self) -> u8 {
        match self {
            Self::Shared => 0,
            Self::Events => 1,
            Self::Profiles => 2,
        }
    }
}

impl KeyContext {
    /// Unambiguous bytes: a tag byte per variant, fixed-width integers, length-prefixed name.
    fn canonical_bytes(&self, out: &mut Vec<u8>) {
        match self {
            Self::Data {
                model_id,
                partition,
                purpose,
            } => {
                // Shared keys keep the original (purpose-less) encoding, so keys wrapped before
                // purposes existed still unwrap; purpose keys bind the purpose under tag 3.
                match purpose {
                    KeyPurpose::Shared => out.push(1),
                    KeyPurpose::Events | KeyPurpose::Profiles => out.push(3),
                }
                out.extend_from_slice(&model_id.to_le_bytes());
                out.extend_from_slice(&partition.0.to_le_bytes());
                if *purpose != KeyPurpose::Shared {
                    out.push(purpose.tag());
                }
            }
            Self::Secret { name } => {
                out.push(2);
                out.extend_from_slice(&(name.len() as u64).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
            }
        }
    }
}

fn wrap_aad(kek_version: u32, context: &KeyContext) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    aad.extend_from_slice(WRAP_DOMAIN);
    aad.push(WRAP_FORMAT_V1);
    aad.extend_from_slice(&kek_version.to_le_bytes());
    context.canonical_bytes(&mut aad);
    aad
}

/// The current KEK and the older ones still needed to unwrap keys not yet re-wrapped.
#[derive(Clone)]
pub struct KekRing {
    current: Kek,
    older: Vec<Kek>,
}

impl KekRing {
    /// A ring that wraps with `current` and unwraps with any of `current` and `older`. If a
    /// version appears twice, the first match (current, then `older` in order) is used; the
    /// directory provider never produces duplicates.
    pub fn new(current: Kek, older: Vec<Kek>) -> Self {
        Self { current, older }
    }

    /// The version new wraps use.
    pub fn current_version(&self) -> u32 {
        self.current.version
    }

    /// Every loaded version, current first.
    pub fn versions(&self) -> Vec<u32> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .map(Kek::version)
            .collect()
    }

    fn find(&self, version: u32) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.older)
            .find(|kek| kek.version == version)
    }

    /// Wraps a data key for `context` under the current KEK.
    pub fn wrap(&self, context: &KeyContext, key: &DataKey) -> Result<WrappedKey, CryptoError> {
        self.wrap_bytes(context, key.bytes())
    }

    /// Unwraps a data key, using the KEK version recorded in `wrapped`. Fails if that version is
    /// not loaded, or (as `Decrypt`) if the context, version or bytes do not match.
    pub fn unwrap(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, CryptoError> {
        self.unwrap_bytes(context, wrapped).map(DataKey)
    }

    /// Re-wraps a wrapped key under the current KEK (KEK rotation: the data it protects is
    /// untouched). Callers skip keys whose `kek_version` already equals [`Self::current_version`].
    pub fn rewrap(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, CryptoError> {
        let key = self.unwrap_bytes(context, wrapped)?;
        self.wrap_bytes(context, &key)
    }

    fn wrap_bytes(
        &self,
        context: &KeyContext,
        key: &[u8; SECRET_LEN],
    ) -> Result<WrappedKey, CryptoError> {
        let version = self.current.version;
        let nonce = gcm::random_nonce()?;
        let aad = wrap_aad(version, context);
        let sealed = self.current.seal(&nonce, &aad, key)?;
        let mut bytes = Vec::with_capacity(WRAPPED_LEN);
        bytes.push(WRAP_FORMAT_V1);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Ok(WrappedKey {
            kek_version: version,
            bytes,
        })
    }

    fn unwrap_bytes(
        &self,
        context: &KeyContext,
        wrapped: &WrappedKey,
    ) -> Result<Zeroizing<[u8; SECRET_LEN]>, CryptoError> {
        let kek = self
            .find(wrapped.kek_version)
            .ok_or(CryptoError::UnknownKekVersion(wrapped.kek_version))?;
        if wrapped.bytes.len() != WRAPPED_LEN {
            return Err(CryptoError::Decrypt);
        }
        let gcm::Parts { header, body, tag } = gcm::split_sealed(&wrapped.bytes, 1 + NONCE_LEN)?;
        let (format, nonce) = header.split_first().ok_or(CryptoError::Decrypt)?;
        if *format != WRAP_FORMAT_V1 {
            return Err(CryptoError::Decrypt);
        }
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::Decrypt)?;
        if body.len() != SECRET_LEN || tag.len() != TAG_LEN {
            return Err(CryptoError::Decrypt);
        }
        let aad = wrap_aad(wrapped.kek_version, context);
        let sealed = wrapped
            .bytes
            .get(1 + NONCE_LEN..)
            .ok_or(CryptoError::Decrypt)?;
        kek.open(nonce, &aad, sealed)
    }
}

impl fmt::Debug for KekRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KekRing")
            .field("current_version", &self.current.version)
            .field("versions", &self.versions())
            .finish()
    }
}

/// Wraps a stored server secret under the current KEK, bound to its `name`.
pub fn wrap_secret(
    ring: &KekRing,
    name: &str,
    secret: &SecretBytes,
) -> Result<WrappedKey, CryptoError> {
    let context = KeyContext::Secret {
        name: name.to_owned(),
    };
    ring.wrap_bytes(&context, secret.expose())
}

/// Unwraps a stored server secret; fails unless `name` is the one it was wrapped with.
pub fn unwrap_secret(
    ring: &KekRing,
    name: &str,
    wrapped: &WrappedKey,
) -> Result<SecretBytes, CryptoError> {
    let context = KeyContext::Secret {
        name: name.to_owned(),
    };
    let key = ring.unwrap_bytes(&context, wrapped)?;
    SecretBytes::from_slice(key.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(model_id: i64, day: i64) -> KeyContext {
        KeyContext::Data {
            model_id,
            partition: Partition(day),
            purpose: KeyPurpose::Shared,
        }
    }

    fn ring(version: u32) -> KekRing {
        KekRing::new(Kek::generate(version).unwrap(), Vec::new())
    }

    #[test]
    fn purposes_do_not_unwrap_for_each_other() {
        let ring = ring(1);
        let key = DataKey::generate().unwrap();
        let at = |purpose| KeyContext::Data {
            model_id: 7,
            partition: Partition(20_000),
            purpose,
        };
        let wrapped = ring.wrap(&at(KeyPurpose::Events), &key).unwrap();
        assert!(ring.unwrap(&at(KeyPurpose::Events), &wrapped).is_ok());
        assert!(ring.unwrap(&at(KeyPurpose::Profiles), &wrapped).is_err());
        assert!(ring.unwrap(&at(KeyPurpose::Shared), &wrapped).is_err());
        let shared = ring.wrap(&at(KeyPurpose::Shared), &key).unwrap();
        assert!(ring.unwrap(&at(KeyPurpose::Events), &shared).is_err());
        for p in [KeyPurpose::Shared, KeyPurpose::Events, KeyPurpose::Profiles] {
            assert_eq!(KeyPurpose::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn wrap_unwrap_round_trip() {
        let ring = ring(1);
        let key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(&data(7, 20_000), &key).unwrap();
        assert_eq!(wrapped.kek_version, 1);
        assert_eq!(wrapped.bytes.len(), WRAPPED_LEN);
        assert!(!wrapped.bytes.windows(32).any(|w| w == key.bytes()));
        let back = ring.unwrap(&data(7, 20_000), &wrapped).unwrap();
        assert_eq!(back.bytes(), key.bytes());
        // Random nonces: wrapping twice gives different bytes.
        assert_ne!(ring.wrap(&data(7, 20_000), &key).unwrap(), wrapped);
    }

    #[test]
    fn wrong_context_version_key_or_bytes_fail() {
        let ring = ring(1);
        let key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(&data(7, 20_000), &key).unwrap();
        for other in [
            data(8, 20_000),
            data(7, 20_001),
            KeyContext::Secret { name: "x".into() },
        ] {
            assert!(matches!(
                ring.unwrap(&other, &wrapped),
                Err(CryptoError::Decrypt)
            ));
        }
        // Another KEK with the same version number.
        let impostor = self::ring(1);
        assert!(matches!(
            impostor.unwrap(&data(7, 20_000), &wrapped),
            Err(CryptoError::Decrypt)
        ));
        // Unknown version.
        let mut relabelled = wrapped.clone();
        relabelled.kek_version = 2;
        assert!(matches!(
            ring.unwrap(&data(7, 20_000), &relabelled),
            Err(CryptoError::UnknownKekVersion(2))
        ));
        // Every single-byte flip, and truncation/extension.
        for i in 0..wrapped.bytes.len() {
            let mut bad = wrapped.clone();
            bad.bytes[i] ^= 0x01;
            assert!(
                matches!(
                    ring.unwrap(&data(7, 20_000), &bad),
                    Err(CryptoError::Decrypt)
                ),
                "byte {i}"
            );
        }
        let mut short = wrapped.clone();
        short.bytes.pop();
        assert!(ring.unwrap(&data(7, 20_000), &short).is_err());
        let mut long = wrapped;
        long.bytes.push(0);
        assert!(ring.unwrap(&data(7, 20_000), &long).is_err());
    }

    #[test]
    fn version_is_bound_into_the_wrap() {
        // Same key bytes loaded under two version numbers: relabelling still fails.
        let key = Zeroizing::new([5u8; 32]);
        let ring = KekRing::new(
            Kek::from_key(2, key.clone()).unwrap(),
            vec![Kek::from_key(1, key).unwrap()],
        );
        let dk = DataKey::generate().unwrap();
        let mut wrapped = ring.wrap(&data(1, 1), &dk).unwrap();
        wrapped.kek_version = 1;
        assert!(matches!(
            ring.unwrap(&data(1, 1), &wrapped),
            Err(CryptoError::Decrypt)
        ));
    }

    #[test]
    fn rotation_unwraps_old_versions_and_rewraps() {
        let v1 = Kek::generate(1).unwrap();
        let old_ring = KekRing::new(v1.clone(), Vec::new());
        let key = DataKey::generate().unwrap();
        let wrapped_v1 = old_ring.wrap(&data(3, 9), &key).unwrap();

        let rotated = KekRing::new(Kek::generate(2).unwrap(), vec![v1]);
        assert_eq!(rotated.current_version(), 2);
        assert_eq!(rotated.versions(), vec![2, 1]);
        let back = rotated.unwrap(&data(3, 9), &wrapped_v1).unwrap();
        assert_eq!(back.bytes(), key.bytes());

        let wrapped_v2 = rotated.rewrap(&data(3, 9), &wrapped_v1).unwrap();
        assert_eq!(wrapped_v2.kek_version, 2);
        assert_eq!(
            rotated.unwrap(&data(3, 9), &wrapped_v2).unwrap().bytes(),
            key.bytes()
        );
        // The old ring cannot read keys wrapped under v2.
        assert!(matches!(
            old_ring.unwrap(&data(3, 9), &wrapped_v2),
            Err(CryptoError::UnknownKekVersion(2))
        ));
    }

    #[test]
    fn secrets_are_bound_to_their_name() {
        let ring = ring(1);
        let secret = SecretBytes::generate().unwrap();
        let wrapped = wrap_secret(&ring, "pii-hmac", &secret).unwrap();
        assert_eq!(unwrap_secret(&ring, "pii-hmac", &wrapped).unwrap(), secret);
        assert!(unwrap_secret(&ring, "token-pepper", &wrapped).is_err());
        // A wrapped secret is not a data key of any row, nor the other way round.
        assert!(ring.unwrap(&data(0, 0), &wrapped).is_err());
        let dk = DataKey::generate().unwrap();
        let wrapped_dk = ring.wrap(&data(0, 0), &dk).unwrap();
        assert!(unwrap_secret(&ring, "pii-hmac", &wrapped_dk).is_err());
    }

    #[test]
    fn kek_from_base64_checks_length_and_version() {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        let kek = kek_from_base64(3, &format!("{text}\n")).unwrap();
        assert_eq!(kek.version(), 3);
        assert!(kek_from_base64(0, &text).is_err());
        let short = base64::engine::general_purpose::STANDARD.encode([1u8; 16]);
        let err = kek_from_base64(1, &short).unwrap_err();
        assert!(!err.to_string().contains(&short));
        assert!(kek_from_base64(1, "%%%").is_err());
    }

    #[test]
    fn debug_output_redacts_keys() {
        let key = DataKey(Zeroizing::new([0x5a; 32]));
        let kek = Kek::from_key(4, Zeroizing::new([0x5a; 32])).unwrap();
        let ring = KekRing::new(kek.clone(), Vec::new());
        for shown in [format!("{key:?}"), format!("{kek:?}"), format!("{ring:?}")] {
            assert!(!shown.contains("90"), "{shown}"); // 0x5a = 90
            assert!(!shown.to_lowercase().contains("5a"), "{shown}");
            assert!(
                shown.contains("redacted") || shown.contains("versions"),
                "{shown}"
            );
        }
        assert!(format!("{kek:?}").contains('4'));
    }
}
