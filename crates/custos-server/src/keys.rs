//! The server's key service: loads the key-encryption keys, unwraps the stored secrets, and hands
//! out per-(model, day) data keys, creating and wrapping them on first use.
//!
//! Unwrapped data keys are cached in memory (bounded) because ingest needs one per batch; the
//! cache holds keys, never payloads. Nothing here logs key material.

use crate::config::Config;
use custos_core::{Clock, Partition};
use custos_crypto::WrappedKey;
use custos_crypto::auditlog::AuditHasher;
use custos_crypto::checkpoint::NoteSigner;
use custos_crypto::keys::{DataKey, Kek, KekRing, KeyContext};
use custos_crypto::pseudonym::{HmacPseudonymizer, SecretBytes};
use custos_crypto::token::TokenHasher;
use custos_crypto::vault::VaultLookup;
use custos_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

const DATA_KEY_CACHE_LIMIT: usize = 4_096;
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
}

/// The stored-secret name of checkpoint signing key `version`.
fn signing_secret_name(version: i64) -> String {
    format!("audit-signing-key-v{version}")
}

/// Keys the running server holds.
pub struct KeyService {
    ring: KekRing,
    store: Store,
    pseudonymizer: HmacPseudonymizer,
    token_hasher: TokenHasher,
    audit_hasher: AuditHasher,
    oauth_seed: SecretBytes,
    vault_lookup: VaultLookup,
    clock: Arc<dyn Clock>,
    data_keys: Mutex<HashMap<(i64, Partition), Arc<DataKey>>>,
    vault_keys: Mutex<HashMap<i64, Arc<DataKey>>>,
}

impl std::fmt::Debug for KeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyService")
            .field("kek_version", &self.ring.current_version())
            .finish_non_exhaustive()
    }
}

/// Loads the key-encryption keys named by the configuration.
pub fn load_kek_ring(config: &Config) -> Result<KekRing, KeyError> {
    if let Some(kek) = &config.keys.kek {
        let kek: Kek = custos_crypto::keys::kek_from_base64(1, kek.expose())?;
        return Ok(KekRing::new(kek, Vec::new()));
    }
    let dir = config
        .keys
        .kek_dir
        .clone()
        .unwrap_or_else(|| config.server.data_dir.join("keys"));
    Ok(custos_crypto::keys::load_or_create_kek_dir(&dir)?)
}

async fn stored_secret(store: &Store, ring: &KekRing, name: &str) -> Result<SecretBytes, KeyError> {
    if let Some(wrapped) = store.get_secret(name).await? {
        return Ok(custos_crypto::keys::unwrap_secret(ring, name, &wrapped)?);
    }
    let fresh = SecretBytes::generate()?;
    let wrapped = custos_crypto::keys::wrap_secret(ring, name, &fresh)?;
    // Another replica may have won the race; whichever row is stored is the one every replica uses.
    let winner = store.insert_secret_if_absent(name, &wrapped).await?;
    Ok(custos_crypto::keys::unwrap_secret(ring, name, &winner)?)
}

impl KeyService {
    /// Unwraps (or creates) the instance secrets.
    pub async fn open(
        ring: KekRing,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KeyError> {
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
        })
    }

    /// The keyed pseudonym functions masking uses.
    pub fn pseudonymizer(&self) -> &HmacPseudonymizer {
        &self.pseudonymizer
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

    /// The data key of one model's day, created on first use.
    pub async fn data_key(
        &self,
        model_id: i64,
        partition: Partition,
    ) -> Result<Arc<DataKey>, KeyError> {
        if let Some(key) = self.cached(model_id, partition) {
            return Ok(key);
        }
        let context = KeyContext::Data {
            model_id,
            partition,
        };
        let key = match self.store.get_data_key(model_id, partition).await? {
            Some(wrapped) => self.ring.unwrap(&context, &wrapped)?,
            None => {
                let fresh = DataKey::generate()?;
                let wrapped = self.ring.wrap(&context, &fresh)?;
                let now = self.clock.now();
                let winner = self
                    .store
                    .insert_data_key_if_absent(model_id, partition, &wrapped, now)
                    .await?;
                self.ring.unwrap(&context, &winner)?
            }
        };
        let key = Arc::new(key);
        if let Ok(mut cache) = self.data_keys.lock() {
            if cache.len() >= DATA_KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert((model_id, partition), Arc::clone(&key));
        }
        Ok(key)
    }

    /// The keyed hash the token vault finds a value's entry by.
    pub fn vault_lookup(&self) -> &VaultLookup {
        &self.vault_lookup
    }

    /// The model's token-vault key, created on first use: a data key wrapped by the KEK and
    /// stored as the secret `token-vault/<model id>` (so KEK rotation re-wraps it like any other
    /// stored secret).
    pub async fn vault_key(&self, model_id: i64) -> Result<Arc<DataKey>, KeyError> {
        if let Some(key) = self
            .vault_keys
            .lock()
            .ok()
            .and_then(|cache| cache.get(&model_id).cloned())
        {
            return Ok(key);
        }
        let name = vault_key_name(model_id);
        let context = KeyContext::Secret { name: name.clone() };
        let wrapped = match self.store.get_secret(&name).await? {
            Some(wrapped) => wrapped,
            None => {
                let fresh = DataKey::generate()?;
                let wrapped = self.ring.wrap(&context, &fresh)?;
                // Another replica may have won the race; every replica uses the stored one.
                self.store.insert_secret_if_absent(&name, &wrapped).await?
            }
        };
        let key = Arc::new(self.ring.unwrap(&context, &wrapped)?);
        if let Ok(mut cache) = self.vault_keys.lock() {
            if cache.len() >= DATA_KEY_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(model_id, Arc::clone(&key));
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
            .unwrap(&KeyContext::Secret { name: name.clone() }, &wrapped)?;
        Ok(Zeroizing::new(custos_crypto::open_blob(
            &key,
            0,
            Partition(0),
            custos_crypto::BlobKind::Secret,
            &name,
            sealed,
        )?))
    }

    fn cached(&self, model_id: i64, partition: Partition) -> Option<Arc<DataKey>> {
        self.data_keys
            .lock()
            .ok()
            .and_then(|cache| cache.get(&(model_id, partition)).cloned())
    }
}
