//! The one error type of this crate.
//!
//! Owns: the variants and their messages. Must not: carry key bytes, plaintext, token text or
//! key-file contents in any variant — these errors end up in logs and HTTP responses. Every
//! authentication failure is the single [`CryptoError::Decrypt`], so an attacker probing with
//! forged ciphertexts learns nothing about which part was wrong.

use std::path::PathBuf;

/// Why a cryptographic operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system's random number generator failed. Nothing is sealed or generated
    /// without fresh randomness.
    #[error("the operating system's random number generator failed")]
    Random,
    /// Authentication failed: wrong key, wrong context (model, partition, kind, label, KEK
    /// version) or tampered bytes. Deliberately does not say which.
    #[error("decryption failed: wrong key, wrong context, or tampered data")]
    Decrypt,
    /// A wrapped key names a KEK version the ring does not hold.
    #[error("no key-encryption key with version {0} is loaded")]
    UnknownKekVersion(u32),
    /// A key file could not be read, created or parsed. `reason` never quotes the content.
    #[error("key file {path}: {reason}")]
    BadKeyFile {
        /// The offending file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file or key directory is readable or writable by group or others.
    #[error(
        "{path} is accessible by group or others (mode {mode:o}); \
         restrict it to the owner (0600 for files, 0700 for directories)"
    )]
    InsecurePermissions {
        /// The offending file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key provider (a hardware security module through PKCS#11) cannot be reached now: its
    /// module does not load, the token is absent, the PIN is not provided yet, or the token holds
    /// no KEK. Retrying may succeed (a server starts sealed and retries). Never carries the PIN.
    #[error("the key provider is unavailable: {0}")]
    ProviderUnavailable(String),
    /// The key provider refused in a way retrying will not fix: wrong or locked PIN, a KEK object
    /// that could leave the token (extractable or not sensitive), two objects claiming one
    /// version. Never carries the PIN.
    #[error("key provider: {0}")]
    Provider(String),
    /// Input that is not in the expected format (before any authentication is involved).
    #[error("malformed input: {0}")]
    Format(String),
    /// A token failed its format or checksum check.
    #[error("malformed API token")]
    InvalidToken,
    /// A payload exceeds a size limit.
    #[error("payload exceeds the size limit")]
    TooLarge,
    /// Serialising or deserialising a payload failed.
    #[error("payload encoding failed")]
    Encoding,
}
