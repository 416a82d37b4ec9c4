//! Custos cryptography: the key hierarchy, envelope encryption of everything sensitive the store
//! keeps, keyed pseudonyms, API-token secrets and audit-chain hashing.
//!
//! What this crate must not do: talk to a database or the network, log key material, or offer a
//! way to persist anything unencrypted. The store accepts only [`sealed::SealedBatch`] and
//! [`sealed::SealedBlob`], and only this crate can make them. The only file IO is the KEK
//! directory provider in [`keys`]; the only foreign code it loads is a PKCS#11 module
//! ([`keys::pkcs11`]), whose token holds KEKs that never enter this process.
//!
//! Key hierarchy: a key-encryption key ([`keys::Kek`], versioned, from a 0600 file, the
//! environment, or held by an HSM) wraps one random [`keys::DataKey`] per (model, day partition) and the server's
//! stored secrets ([`SecretBytes`]); data keys seal event batches and blobs ([`seal`]). Deleting a
//! wrapped data key erases its day (crypto-shredding); rotating the KEK re-wraps only the small
//! wrapped keys, never the data.

pub mod audit;
pub mod auditexport;
pub mod auditlog;
pub mod checkpoint;
mod error;
pub mod ff1;
mod gcm;
pub mod keys;
mod mac;
pub mod merkle;
pub mod pseudonym;
pub mod seal;
pub mod sealed;
mod secret;
pub mod token;
pub mod vault;
pub mod webhook;

#[cfg(test)]
mod test_support;

pub use error::CryptoError;
pub use keys::{DataKey, Kek, KekRing, KeyContext, KeyPurpose};
pub use pseudonym::HmacPseudonymizer;
pub use seal::{BlobKind, open_batch, open_blob, seal_batch, seal_blob};
pub use sealed::{SealedBatch, SealedBlob, WrappedKey};
pub use secret::{SECRET_LEN, SecretBytes};
pub use token::{TokenHasher, TokenPrefix, TokenSecret};
