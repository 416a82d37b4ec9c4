//! The server's key service: loads the key-encryption keys, unwraps the stored secrets, and hands
//! out per-(model, day) data keys, creating and wrapping them on first use.
//!
//! Unwrapped data keys are cached in memory (bounded) because ingest needs one per batch; the
//! cache holds keys, never payloads. Nothing here logs key material.
//!
//! KEK rotation while running: with a KEK directory, the ring is re-read before every new wrap
//! (new data keys and secrets are rare: one per model and day) and whenever a stored key names a
//! version the ring does not hold, so a `custos keys rotate` + `rewrap` done while the server
//! runs neither breaks it nor leaves it wrapping under the old version. A fixed key
//! (`keys.kek`) has nothing to re-read. With a hardware security module (`[keys.pkcs11]`) the
//! same re-read is a fresh PKCS#11 session that lists the token's KEK objects; the keys never
//! leave the token, every wrap and unwrap is a `CKM_AES_GCM` call into it (see
//! `custos_crypto::keys::pkcs11`).
//!
//! Which provider failures seal and which refuse: a key directory that is missing or unreadable,
//! a PKCS#11 module that does not load, a token that is absent, a PIN file not there yet, or a
//! provider without the KEK versions the store names are [`KeyError::Unavailable`] (start sealed,
//! retry). Loose permissions on key files or the PIN file, a PIN the token refuses (retrying
//! would lock it), and a key object that could leave the token refuse to start.
//!
//! PKCS#11 calls are synchronous and made on the calling task; with a local token (SoftHSM, a
//! PCIe HSM) they take microseconds, and they only happen for a new or uncached key.

use crate::config::{Config, Pkcs11Config, Secret};
use custos_core::{Clock, Partition, TenantName};
use custos_crypto::CryptoError;
use custos_crypto::WrappedKey;
use custos_crypto::auditlog::AuditHasher;
use custos_crypto::checkpoint::NoteSigner;
use custos_crypto::keys::pkcs11::{Hsm, Pkcs11Settings};
use custos_crypto::keys::{DataKey, Kek, KekRing, KeyContext, KeyPurpose};
use custos_crypto::pseudonym::{HmacPseudonymizer, SecretBytes};
use custos_crypto::token::TokenHasher;
use custos_crypto::vault::VaultLookup;
use custos_store::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

const DATA_KEY_CACHE_LIMIT: usize = 4_096;
/// Most tenant pseudonymizers kept derived at once.
const TENANT_CACHE_LIMIT: usize = 1_024;
/// How long an unwrapped data key (or vault key) is used from memory before the store is asked
/// again. A key shredded by this replica leaves its cache at once; one shredded by another
/// replica (the retention job runs on one) is dropped here within this time.
const DATA_KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
const SECRET_PII_HMAC: &str = "pii-hmac-key";
const SECRET_EVENT_HMAC: &str = "event-hmac-key";
const SECRET_TOKEN_PEPPER: &str = "token-pepper";
const SECRET_AUDIT_HMAC: &str = "audit-hmac-key";
const SECRET_OAUTH_SIGNING: &str = "oauth-signing-key";
const SECRET_FF1: &str = "ff1-masking-key";
const SECRET_VAULT_LOOKUP: &str = "token-vault-lookup-key";

/// The stored-secret name of a model's token-vault key (a data key wrapped by the KEK).
pub fn vault_key_name(model_id: i64) -> String {
    format!("token-vault/{model_id}")
}

/// Why keys could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A cryptographic operation or key file failed.
    #[error(transparent)]
    Crypto(#[from] custos_crypto::CryptoError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] custos_store::StoreError),
    /// A checkpoint signing key could not be made.
    #[error("audit signing key: {0}")]
    Signing(#[from] custos_crypto::checkpoint::CheckpointError),
    /// Stored key material disagrees with itself.
    #[error("{0}")]
    Inconsistent(String),
    /// The store holds wrapped keys but the key provider has no KEK that unwraps them (key
    /// directory missing or unreadable, version absent). The server starts sealed and retries.
    #[error("the key-encryption keys are unavailable: {0}")]
    Unavailable(custos_crypto::CryptoError),
}

impl KeyError {
    /// Whether this is the provider being unreachable (seal and retry) rather than a
    /// misconfiguration or damage (refuse to start).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Crypto(custos_crypto::CryptoError::ProviderUnavailable(_))
        )
    }
}

/// The stored-secret name of checkpoint signing key `version`.
fn signing_secret_name(version: i64) -> String {
    format!("audit-signing-key-v{version}")
}

/// Where the key-encryption keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekSource {
    /// `keys.kek` (environment or secret file): one key, version 1. Rotating it means
    /// configuring a new key directory (see docs/OPERATIONS.md).
    Fixed,
    /// A directory of `kek-v<N>.key` files, the highest version current.
    Dir(PathBuf),
    /// KEKs held by a hardware security module (`[keys.pkcs11]`).
    Pkcs11(Pkcs11Source),
}

/// `[keys.pkcs11]` and the PIN from the environment, if that is where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Source {
    /// Module, token, key labels, PIN file.
    pub config: Pkcs11Config,
    pin: Option<Secret>,
}

impl Pkcs11Source {
    fn settings(&self) -> Pkcs11Settings {
        Pkcs11Settings {
            module: self.config.module.clone(),
            token_label: self.config.token_label.clone(),
            key_label: self.config.key_label.clone(),
        }
    }

    /// The user PIN: from the environment, or re-read from the PIN file. A PIN file that is not
    /// there (yet) is the provider being unavailable; one others can read refuses.
    fn pin(&self) -> Result<Zeroizing<String>, KeyError> {
        if let Some(pin) = &self.pin {
            return Ok(Zeroizing::new(pin.expose().to_owned()));
        }
        let path = self
            .config
            .pin_file
            .as_deref()
            .ok_or_else(|| KeyError::Inconsistent("no PKCS#11 PIN is configured".into()))?;
        let unavailable = |reason: String| {
            KeyError::Unavailable(CryptoError::ProviderUnavailable(format!(
                "PKCS#11 PIN file {}: {reason}",
                path.display()
            )))
        };
        let file = std::fs::File::open(path).map_err(|e| unavailable(e.to_string()))?;
        let meta = file.metadata().map_err(|e| unavailable(e.to_string()))?;
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777;
        if !meta.is_file() {
            return Err(unavailable("not a regular file".into()));
        }
        if mode & 0o077 != 0 {
            return Err(KeyError::Crypto(CryptoError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            }));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(256));
        std::io::Read::read_to_end(&mut std::io::Read::take(file, 4096), &mut bytes)
            .map_err(|e| unavailable(e.to_string()))?;
        match crate::config::secret_from_bytes(&bytes) {
            Some(pin) if !pin.is_empty() => Ok(pin),
            _ => Err(KeyError::Inconsistent(format!(
                "PKCS#11 PIN file {} is empty or not UTF-8",
                path.display()
            ))),
        }
    }

    /// A logged-in connection to the token.
    pub(crate) fn connect(&self) -> Result<Hsm, KeyError> {
        let pin = self.pin()?;
        Hsm::connect(&self.settings(), &pin).map_err(provider_error)
    }
}

/// A provider failure: unreachable → [`KeyError::Unavailable`], anything else as it is.
fn provider_error(e: CryptoError) -> KeyError {
    match e {
        e @ CryptoError::ProviderUnavailable(_) => KeyError::Unavailable(e),
        e => KeyError::Crypto(e),
    }
}

/// The provider the configuration names.
pub fn kek_source(config: &Config) -> KekSource {
    if let Some(pkcs11) = &config.keys.pkcs11 {
        return KekSource::Pkcs11(Pkcs11Source {
            config: pkcs11.clone(),
            pin: config.keys.pkcs11_pin.clone(),
        });
    }
    if config.keys.kek.is_some() {
        return KekSource::Fixed;
    }
    KekSource::Dir(
        config
            .keys
            .kek_dir
            .clone()
            .unwrap_or_else(|| config.server.data_dir.join("keys")),
    )
}

/// Loads the key-encryption keys named by the configuration. On a store that holds no wrapped
/// key yet (first start) a missing key directory is created with a fresh `kek-v1.key`; once the
/// store holds wrapped keys nothing is ever created, and a directory that cannot be read is
/// [`KeyError::Unavailable`] (loose permissions stay a hard refusal).
pub async fn load_kek_ring(config: &Config, store: &Store) -> Result<KekRing, KeyError> {
    match kek_source(config) {
        KekSource::Fixed => {
            let kek = config
                .keys
                .kek
                .as_ref()
                .ok_or_else(|| KeyError::Inconsistent("keys.kek vanished".into()))?;
            let kek: Kek = custos_crypto::keys::kek_from_base64(1, kek.expose())?;
            Ok(KekRing::new(kek, Vec::new()))
        }
        KekSource::Dir(dir) => {
            if store.kek_usage().await?.is_empty() {
                return Ok(custos_crypto::keys::load_or_create_kek_dir(&dir)?);
            }
            load_existing(&dir)
        }
        KekSource::Pkcs11(source) => {
            let hsm = source.connect()?;
            if store.kek_usage().await?.is_empty() {
                return hsm.ring_or_create().map_err(provider_error);
            }
            hsm.ring().map_err(provider_error)
        }
    }
}

/// The provider's ring as it is now: re-read, never created.
pub(crate) fn provider_ring(config: &Config) -> Result<KekRing, KeyError> {
    match kek_source(config) {
        KekSource::Dir(dir) => load_existing(&dir),
        KekSource::Pkcs11(source) => source.connect()?.ring().map_err(provider_error),
        KekSource::Fixed => {
            let kek = config
                .keys
                .kek
                .as_ref()
                .ok_or_else(|| KeyError::Inconsistent("keys.kek is not configured".into()))?;
            Ok(KekRing::new(
                custos_crypto::keys::kek_from_base64(1, kek.expose())?,
                Vec::new(),
            ))
        }
    }
}

fn load_existing(dir: &std::path::Path) -> Result<KekRing, KeyError> {
    custos_crypto::keys::load_kek_dir(dir).map_err(|e| match e {
        e @ CryptoError::InsecurePermissions { .. } => KeyError::Crypto(e),
        e => KeyError::Unavailable(e),
    })
}

/// The loaded ring and where to re-read it from.
struct Ring {
    ring: RwLock<KekRing>,
    source: KekSource,
}

impl Ring {
    fn current(&self) -> Result<KekRing, KeyError> {
        self.ring
            .read()
            .map(|r| r.clone())
            .map_err(|_| KeyError::Inconsistent("key ring lock poisoned".into()))
    }

    /// Re-reads the directory or the token; a fixed key is returned as is.
    fn reload(&self) -> Result<KekRing, KeyError> {
        let fresh = match &self.source {
            KekSource::Fixed => return self.current(),
            KekSource::Dir(dir) => load_existing(dir)?,
            KekSource::Pkcs11(source) => source.connect()?.ring().map_err(provider_error)?,
        };
        let mut ring = self
            .ring
            .write()
            .map_err(|_| KeyError::Inconsistent("key ring lock poisoned".into()))?;
        if ring.versions() != fresh.versions() {
            tracing::info!(
                current = fresh.current_version(),
                versions = ?fresh.versions(),
                "re-read the key-encryption keys"
            );
        }
        *ring = fresh.clone();
        Ok(fresh)
    }

    /// The ring to wrap a new key with: re-read first, so that nothing new is wrapped under a
    /// version an operator has rotated away from. Fails closed if the directory cannot be read.
    fn for_wrap(&self) -> Result<KekRing, KeyError> {
        self.reload()
    }

    /// Runs an unwrap; if the stored key names a version this ring does not hold (a rewrap
    /// done by `custos keys rewrap` after a rotation), re-reads the ring once and retries. With
    /// an HSM, a session that stopped answering is also reopened once.
    fn unwrap<T>(&self, f: impl Fn(&KekRing) -> Result<T, CryptoError>) -> Result<T, KeyError> {
        match f(&self.current()?) {
            Err(CryptoError::UnknownKekVersion(_)) if !matches!(self.source, KekSource::Fixed) => {
                Ok(f(&self.reload()?)?)
            }
            Err(CryptoError::ProviderUnavailable(_))
                if matches!(self.source, KekSource::Pkcs11(_)) =>
            {
                f(&self.reload()?).map_err(provider_error)
            }
            other => Ok(other?),
        }
    }
}

async fn stored_secret(store: &Store, ring: &Ring, name: &str) -> Result<SecretBytes, KeyError> {
    if let Some(wrapped) = store.get_secret(name).await? {
        return ring
            .unwrap(|r| custos_crypto::keys::unwrap_secret(r, name, &wrapped))
            .map_err(unavailable_if_unknown);
    }
    let fresh = SecretBytes::generate()?;
    let wrapped = custos_crypto::keys::wrap_secret(&ring.for_wrap()?, name, &fresh)?;
    // Another replica may have won the race; whichever row is stored is the one every replica uses.
    let winner = store.insert_secret_if_absent(name, &wrapped).await?;
    ring.unwrap(|r| custos_crypto::keys::unwrap_secret(r, name, &winner))
}

/// A stored key naming a version the provider does not have is the provider being
/// unavailable (the server seals), not damage.
fn unavailable_if_unknown(e: KeyError) -> KeyError {
    match e {
        KeyError::Crypto(e @ CryptoError::UnknownKekVersion(_)) => KeyError::Unavailable(e),
        other => other,
    }
}

/// An unwrapped data key in memory, and when it was read.
struct CachedKey {
    key: Arc<DataKey>,
    read_at: std::time::Instant,
}

/// Keys the running server holds.
pub struct KeyService {
    ring: Ring,
    store: Store,
    pseudonymizer: HmacPseudonymizer,
    token_hasher: TokenHasher,
    audit_hasher: AuditHasher,
    oauth_seed: SecretBytes,
    vault_lookup: VaultLookup,
    clock: Arc<dyn Clock>,
    data_keys: Mutex<HashMap<(i64, Partition, KeyPurpose), CachedKey>>,
    vault_keys: Mutex<HashMap<i64, CachedKey>>,
    tenant_pseudonymizers: Mutex<HashMap<TenantName, Arc<HmacPseudonymizer>>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("kek_source", &self.ring.source)
            .finish_non_exhaustive()
    }
}

impl KeyService {
    /// Unwraps (or creates) the instance secrets.
    pub async fn open(
        ring: KekRing,
        source: KekSource,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
        let ring = Ring {
            ring: RwLock::new(ring),
            source,
        };
        let pii = stored_secret(&store, &ring, SECRET_PII_HMAC).await?;
        let event = stored_secret(&store, &ring, SECRET_EVENT_HMAC).await?;
        let ff1 = stored_secret(&store, &ring, SECRET_FF1).await?;
        let pepper = stored_secret(&store, &ring, SECRET_TOKEN_PEPPER).await?;
        let audit = stored_secret(&store, &ring, SECRET_AUDIT_HMAC).await?;
        let oauth_seed = stored_secret(&store, &ring, SECRET_OAUTH_SIGNING).await?;
        let vault_lookup = stored_secret(&store, &ring, SECRET_VAULT_LOOKUP).await?;
        Ok(Self {
            vault_lookup: VaultLookup::new(vault_lookup),
            vault_keys: Mutex::new(HashMap::new()),
            oauth_seed,
            audit_hasher: AuditHasher::new(&audit),
            pseudonymizer: HmacPseudonymizer::new(pii, event).with_format_preserving_key(
                custos_crypto::ff1::Ff1Key::from_slice(ff1.expose())
                    .map_err(|e| KeyError::Inconsistent(e.to_string()))?,
            ),
            token_hasher: TokenHasher::new(pepper),
            ring,
            store,
            clock,
            data_keys: Mutex::new(HashMap::new()),
            tenant_pseudonymizers: Mutex::new(HashMap::new()),
        })
    }

    /// The KEK versions loaded now, current first (no key material).
    pub fn kek_versions(&self) -> Vec<u32> {
        self.ring
            .current()
            .map(|r| r.versions())
            .unwrap_or_default()
    }

    /// The instance's keyed functions: event keys (which do not depend on the tenant) come
    /// from here. Masking a model's values uses [`Self::pseudonymizer_for`] its tenant.
    pub fn pseudonymizer(&self) -> &HmacPseudonymizer {
        &self.pseudonymizer
    }

    /// The pseudonym and FF1 keys of one tenant, derived once and kept.
    pub fn pseudonymizer_for(
        &self,
        tenant: &TenantName,
    ) -> Result<Arc<HmacPseudonymizer>, KeyError> {
        let mut cache = self
            .tenant_pseudonymizers
            .lock()
            .map_err(|_| KeyError::Inconsistent("tenant key cache lock poisoned".into()))?;
        if let Some(found) = cache.get(tenant) {
            return Ok(Arc::clone(found));
        }
        let derived = Arc::new(
            self.pseudonymizer
                .for_tenant(tenant)
                .map_err(|e| KeyError::Inconsistent(e.to_string()))?,
        );
        // Tenants are few (one per registered model at most); the bound only guards memory.
        if cache.len() >= TENANT_CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(tenant.clone(), Arc::clone(&derived));
        Ok(derived)
    }

    /// The keyed hash tokens are stored as.
    pub fn token_hasher(&self) -> &TokenHasher {
        &self.token_hasher
    }

    /// The seed of the Ed25519 key Custos signs OAuth access tokens with.
    pub fn oauth_seed(&self) -> &[u8; 32] {
        self.oauth_seed.expose()
    }

    /// The keyed hash audit records use for values they must not hold.
    pub fn audit_hasher(&self) -> &AuditHasher {
        &self.audit_hasher
    }

    /// The checkpoint signer of `version`, from its wrapped seed.
    pub async fn audit_signer(&self, origin: &str, version: i64) -> Result<NoteSigner, KeyError> {
        let seed = stored_secret(&self.store, &self.ring, &signing_secret_name(version)).await?;
        Ok(NoteSigner::from_seed(origin, seed.expose())?)
    }

    /// The data key that seals `purpose` rows ([`KeyPurpose::Events`]: event batches and
    /// labels; [`KeyPurpose::Profiles`]: profile deltas and reference profiles) of one model's
    /// day, created on first use. A day stored before purposes existed answers with its
    /// `shared` key for either purpose (until retention splits or destroys it).
    pub async fn data_key(
        &self,
        model_id: i64,
        partition: Partition,
        purpose: KeyPurpose,
    ) -> Result<Arc<DataKey>, KeyError> {
        if let Some(key) = self.cached(model_id, partition, purpose) {
            return Ok(key);
        }
        let context = |purpose| KeyContext::Data {
            model_id,
            partition,
            purpose,
        };
        let key = match self
            .store
            .get_data_key(model_id, partition, purpose)
            .await?
        {
            Some((found, wrapped)) => self.ring.unwrap(|r| r.unwrap(&context(found), &wrapped))?,
            None => {
                let fresh = DataKey::generate()?;
                let wrapped = self.ring.for_wrap()?.wrap(&context(purpose), &fresh)?;
                let now = self.clock.now();
                let (found, winner) = self
                    .store
                    .insert_data_key_if_absent(model_id, partition, purpose, &wrapped, now)
                    .await?;
                self.ring.unwrap(|r| r.unwrap(&context(found), &winner))?
            }
        };
        let key = Arc::new(key);
        if let Ok(mut cache) = self.data_keys.lock() {
            if cache.len() >= DATA_KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(
                (model_id, partition, purpose),
                CachedKey {
                    key: Arc::clone(&key),
                    read_at: std::time::Instant::now(),
                },
            );
        }
        Ok(key)
    }

    /// A fresh data key wrapped for (model, partition, purpose), not stored: the retention job
    /// re-seals a legacy day's profiles under it and stores it in the shred's transaction.
    pub fn new_data_key(
        &self,
        model_id: i64,
        partition: Partition,
        purpose: KeyPurpose,
    ) -> Result<(DataKey, custos_crypto::WrappedKey), KeyError> {
        let fresh = DataKey::generate()?;
        let wrapped = self.ring.for_wrap()?.wrap(
            &KeyContext::Data {
                model_id,
                partition,
                purpose,
            },
            &fresh,
        )?;
        Ok((fresh, wrapped))
    }

    /// Drops every cached key of one model's day (after a shred of that day).
    pub fn forget_partition(&self, model_id: i64, partition: Partition) {
        if let Ok(mut cache) = self.data_keys.lock() {
            cache.retain(|(m, p, _), _| !(*m == model_id && *p == partition));
        }
    }

    /// Drops every cached key of a model, its vault key included (after its data's erasure).
    pub fn forget_model(&self, model_id: i64) {
        if let Ok(mut cache) = self.data_keys.lock() {
            cache.retain(|(m, _, _), _| *m != model_id);
        }
        if let Ok(mut cache) = self.vault_keys.lock() {
            cache.remove(&model_id);
        }
    }

    /// The keyed hash the token vault finds a value's entry by.
    pub fn vault_lookup(&self) -> &VaultLookup {
        &self.vault_lookup
    }

    /// The model's token-vault key, created on first use: a data key wrapped by the KEK and
    /// stored as the secret `token-vault/<model id>` (so KEK rotation re-wraps it like any other
    /// stored secret).
    pub async fn vault_key(&self, model_id: i64) -> Result<Arc<DataKey>, KeyError> {
        if let Some(key) = self.vault_keys.lock().ok().and_then(|cache| {
            cache
                .get(&model_id)
                .filter(|c| c.read_at.elapsed() < DATA_KEY_CACHE_TTL)
                .map(|c| Arc::clone(&c.key))
        }) {
            return Ok(key);
        }
        let name = vault_key_name(model_id);
        let context = KeyContext::Secret { name: name.clone() };
        let wrapped = match self.store.get_secret(&name).await? {
            Some(wrapped) => wrapped,
            None => {
                let fresh = DataKey::generate()?;
                let wrapped = self.ring.for_wrap()?.wrap(&context, &fresh)?;
                // Another replica may have won the race; every replica uses the stored one.
                self.store.insert_secret_if_absent(&name, &wrapped).await?
            }
        };
        let key = Arc::new(self.ring.unwrap(|r| r.unwrap(&context, &wrapped))?);
        if let Ok(mut cache) = self.vault_keys.lock() {
            if cache.len() >= DATA_KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(
                model_id,
                CachedKey {
                    key: Arc::clone(&key),
                    read_at: std::time::Instant::now(),
                },
            );
        }
        Ok(key)
    }

    /// Seals a notification channel's secret under a fresh key of its own; returns that key
    /// wrapped by the KEK (stored as the secret `alert-channel/<name>`) and the sealed secret.
    pub fn seal_channel_secret(
        &self,
        channel: &str,
        secret: &[u8],
    ) -> Result<(WrappedKey, Vec<u8>), KeyError> {
        let name = custos_store::channel_secret_name(channel);
        let key = DataKey::generate()?;
        let wrapped = self
            .ring
            .for_wrap()?
            .wrap(&KeyContext::Secret { name: name.clone() }, &key)?;
        let sealed = custos_crypto::seal_blob(
            &key,
            0,
            Partition(0),
            custos_crypto::BlobKind::Secret,
            &name,
            secret,
        )?;
        Ok((wrapped, sealed.ciphertext().to_vec()))
    }

    /// Opens a channel's sealed secret. Fails closed on any mismatch (a secret copied to
    /// another channel's row does not open: the channel name is bound in both layers).
    pub async fn open_channel_secret(
        &self,
        channel: &custos_store::ChannelRow,
    ) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let name = custos_store::channel_secret_name(&channel.name);
        let sealed = channel
            .secret_sealed
            .as_deref()
            .ok_or_else(|| KeyError::Inconsistent("the channel has no secret".into()))?;
        let wrapped = self
            .store
            .get_secret(&name)
            .await?
            .ok_or_else(|| KeyError::Inconsistent("the channel's key is missing".into()))?;
        let key = self
            .ring
            .unwrap(|r| r.unwrap(&KeyContext::Secret { name: name.clone() }, &wrapped))?;
        Ok(Zeroizing::new(custos_crypto::open_blob(
            &key,
            0,
            Partition(0),
            custos_crypto::BlobKind::Secret,
            &name,
            sealed,
        )?))
    }

    fn cached(
        &self,
        model_id: i64,
        partition: Partition,
        purpose: KeyPurpose,
    ) -> Option<Arc<DataKey>> {
        let mut cache = self.data_keys.lock().ok()?;
        let at = (model_id, partition, purpose);
        match cache.get(&at) {
            Some(c) if c.read_at.elapsed() < DATA_KEY_CACHE_TTL => Some(Arc::clone(&c.key)),
            Some(_) => {
                cache.remove(&at);
                None
            }
            None => None,
        }
    }
}
