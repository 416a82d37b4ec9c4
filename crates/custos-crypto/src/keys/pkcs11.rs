//! The PKCS#11 KEK provider: key-encryption keys that live in a hardware security module and
//! never leave it.
//!
//! Owns: loading the vendor's PKCS#11 module (one `C_Initialize` per module per process, shared
//! by every connection), finding the token by its label, logging in as the user, finding the KEK
//! objects, creating a new version (first start, rotation) and retiring one (relabel, then
//! destroy). Must not: read a key value out of the token, put the PIN into an error or a log, or
//! retry a login the token refused for its PIN (tokens lock the PIN after a few wrong tries).
//!
//! Key objects: AES-256 secret keys on the token whose `CKA_LABEL` (and `CKA_ID`) is
//! `<key_label>-v<N>` (`custos-kek-v1`, `custos-kek-v2`, …); the highest version is current.
//! Custos creates them `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE`, not `CKA_EXTRACTABLE`, usable
//! for encrypt/decrypt only. A key object found under such a label that is extractable, not
//! sensitive, not AES or not 256 bits is refused (an operator may create the versions, but not
//! weaker ones). Wrapping is `CKM_AES_GCM` inside the token with the 96-bit nonce and the
//! associated data the [`super`] module builds, so a wrapped key has the same bytes, header and
//! tamper checks as one made by a local KEK.
//!
//! Reaching the token: a module that does not load or initialise, a token that is absent, a
//! session that cannot be opened, a device error or a token without any KEK are
//! [`CryptoError::ProviderUnavailable`] (a server starts sealed and retries). A wrong, locked or
//! expired PIN and a refused key object are [`CryptoError::Provider`] (retrying cannot help, and
//! for a PIN it would lock the token). A module initialised before its token appeared may not see
//! it (SoftHSM, and many network HSM clients, read their slots at `C_Initialize`): when the token
//! is not found and no connection of this process uses the module, the module is finalised and
//! initialised again before giving up, so a sealed server sees the token once it is back.

use super::{HeldKek, Kek, KekRing};
use crate::error::CryptoError;
use crate::gcm::{NONCE_LEN, TAG_LEN};
use crate::secret::SECRET_LEN;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use zeroize::Zeroizing;

/// Where the KEKs are: which module, which token, which object labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Settings {
    /// The vendor's PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label (`CKA_LABEL` of the token, as `softhsm2-util --init-token --label`).
    pub token_label: String,
    /// Label prefix of the key objects: version N is `<key_label>-v<N>`.
    pub key_label: String,
}

/// One loaded and initialised PKCS#11 module.
struct Module {
    ctx: Pkcs11,
    path: PathBuf,
    /// Whether this process's `C_Initialize` was ours (then ours to finalise).
    owned: bool,
}

impl Module {
    fn load(path: &Path) -> Result<Self, CryptoError> {
        let ctx = Pkcs11::new(path).map_err(|e| {
            CryptoError::ProviderUnavailable(format!(
                "PKCS#11 module {} does not load: {e}",
                path.display()
            ))
        })?;
        let owned = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            // Initialised by someone else in this process (another name of the same library):
            // usable, but not ours to finalise.
            Err(P11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => {
                return Err(CryptoError::ProviderUnavailable(format!(
                    "PKCS#11 module {} does not initialise: {e}",
                    path.display()
                )));
            }
        };
        Ok(Self {
            ctx,
            path: path.to_path_buf(),
            owned,
        })
    }

    fn finalize(self) {
        if self.owned {
            // A failed finalise leaves nothing to clean up here; the next `C_Initialize`
            // reports whatever is wrong with the module.
            let _ = self.ctx.finalize();
        }
    }
}

/// Every module this process has initialised, by canonical path. A module is cloned out only
/// under this lock, so a strong count of one (the registry's) seen under it means that no
/// connection uses the module and it may be finalised.
static MODULES: Mutex<Vec<Arc<Module>>> = Mutex::new(Vec::new());

fn find_slot(module: &Module, label: &str) -> Result<Option<Slot>, CryptoError> {
    let slots = module
        .ctx
        .get_slots_with_token()
        .map_err(|e| CryptoError::ProviderUnavailable(format!("PKCS#11 slot list failed: {e}")))?;
    Ok(slots.into_iter().find(|slot| {
        module
            .ctx
            .get_token_info(*slot)
            .is_ok_and(|info| info.label().trim_end() == label)
    }))
}

fn module_and_slot(settings: &Pkcs11Settings) -> Result<(Arc<Module>, Slot), CryptoError> {
    let path = std::fs::canonicalize(&settings.module).map_err(|e| {
        CryptoError::ProviderUnavailable(format!(
            "PKCS#11 module {}: {e}",
            settings.module.display()
        ))
    })?;
    let not_found = || {
        CryptoError::ProviderUnavailable(format!(
            "no token labelled {:?} is present in PKCS#11 module {}",
            settings.token_label,
            path.display()
        ))
    };
    let mut modules = MODULES
        .lock()
        .map_err(|_| CryptoError::ProviderUnavailable("PKCS#11 registry lock poisoned".into()))?;
    if let Some(index) = modules.iter().position(|m| m.path == path) {
        let module = modules.get(index).cloned().ok_or_else(not_found)?;
        if let Some(slot) = find_slot(&module, &settings.token_label)? {
            return Ok((module, slot));
        }
        drop(module);
        if modules.get(index).is_some_and(|m| Arc::strong_count(m) > 1) {
            // In use by a live connection: finalising would break it.
            return Err(not_found());
        }
        let stale = modules.swap_remove(index);
        if let Ok(stale) = Arc::try_unwrap(stale) {
            stale.finalize();
        }
    }
    let module = Arc::new(Module::load(&path)?);
    modules.push(Arc::clone(&module));
    match find_slot(&module, &settings.token_label)? {
        Some(slot) => Ok((module, slot)),
        None => Err(not_found()),
    }
}

fn unavailable(what: &str) -> impl Fn(P11Error) -> CryptoError + '_ {
    move |e| CryptoError::ProviderUnavailable(format!("PKCS#11 {what}: {e}"))
}

/// A logged-in session on the token. The session field is declared first so that it is closed
/// before the module reference goes.
struct Conn {
    session: Mutex<Session>,
    _module: Arc<Module>,
}

impl Conn {
    fn session(&self) -> Result<MutexGuard<'_, Session>, CryptoError> {
        self.session
            .lock()
            .map_err(|_| CryptoError::ProviderUnavailable("PKCS#11 session lock poisoned".into()))
    }
}

/// A connection to the token that holds the KEKs.
#[derive(Clone)]
pub struct Hsm {
    conn: Arc<Conn>,
    settings: Pkcs11Settings,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hsm")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Parses `<prefix>-v<N>`: `Some(Ok(n))` for a canonical label, `Some(Err)` for one that looks
/// like a version but is malformed, `None` for other objects (ignored).
fn parse_version(prefix: &str, label: &str) -> Option<Result<u32, String>> {
    let digits = label.strip_prefix(prefix)?.strip_prefix("-v")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(match digits.parse::<u32>() {
        Ok(0) => Err("KEK versions start at 1".to_owned()),
        Ok(n) if n.to_string() == digits => Ok(n),
        Ok(_) => Err("version number has leading zeros".to_owned()),
        Err(_) => Err("version number out of range".to_owned()),
    })
}

fn label_of(version: u32, prefix: &str) -> String {
    format!("{prefix}-v{version}")
}

fn retiring_label_of(version: u32, prefix: &str) -> String {
    format!(".{prefix}-v{version}.retiring")
}

impl Hsm {
    /// Loads the module (once per process), finds the token by label, opens a read-write
    /// session and logs in as the user with `pin`.
    pub fn connect(settings: &Pkcs11Settings, pin: &str) -> Result<Self, CryptoError> {
        let (module, slot) = module_and_slot(settings)?;
        let session = module
            .ctx
            .open_rw_session(slot)
            .map_err(unavailable("open session"))?;
        let auth = AuthPin::new(pin.into());
        match session.login(UserType::User, Some(&auth)) {
            // Another session of this process is logged in: the login state is per token.
            Ok(()) | Err(P11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(P11Error::Pkcs11(
                rv @ (RvError::PinIncorrect
                | RvError::PinLocked
                | RvError::PinExpired
                | RvError::PinInvalid
                | RvError::PinLenRange
                | RvError::UserPinNotInitialized),
                _,
            )) => {
                return Err(CryptoError::Provider(format!(
                    "the token {:?} refused the user PIN ({rv:?}); not retried, so that the \
                     token does not lock it",
                    settings.token_label
                )));
            }
            Err(e) => return Err(unavailable("login")(e)),
        }
        Ok(Self {
            conn: Arc::new(Conn {
                session: Mutex::new(session),
                _module: module,
            }),
            settings: settings.clone(),
        })
    }

    /// The settings this connection was made with.
    pub fn settings(&self) -> &Pkcs11Settings {
        &self.settings
    }

    /// Every KEK version on the token with its object handle, checked.
    fn keys(&self) -> Result<Vec<(u32, ObjectHandle)>, CryptoError> {
        let prefix = &self.settings.key_label;
        let session = self.conn.session()?;
        let handles = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Token(true),
            ])
            .map_err(unavailable("find objects"))?;
        let mut found: Vec<(u32, ObjectHandle)> = Vec::new();
        for handle in handles {
            let attrs = session
                .get_attributes(handle, &[AttributeType::Label])
                .map_err(unavailable("read a label"))?;
            let Some(label) = attrs.into_iter().find_map(|a| match a {
                Attribute::Label(l) => Some(l),
                _ => None,
            }) else {
                continue;
            };
            let Ok(label) = String::from_utf8(label) else {
                continue;
            };
            let Some(version) = parse_version(prefix, &label) else {
                continue;
            };
            let version =
                version.map_err(|reason| CryptoError::Provider(format!("{label}: {reason}")))?;
            check_key(&session, handle, &label)?;
            if found.iter().any(|(v, _)| *v == version) {
                return Err(CryptoError::Provider(format!(
                    "two key objects on the token are labelled {label}; remove one"
                )));
            }
            found.push((version, handle));
        }
        found.sort_by_key(|(v, _)| std::cmp::Reverse(*v));
        Ok(found)
    }

    /// The ring of every KEK version on the token, the highest current. A token without any is
    /// [`CryptoError::ProviderUnavailable`]; nothing is created.
    pub fn ring(&self) -> Result<KekRing, CryptoError> {
        let keys = self.keys()?;
        let mut keks = Vec::with_capacity(keys.len());
        for (version, handle) in keys {
            let held: Arc<dyn HeldKek> = Arc::new(HsmKek {
                conn: Arc::clone(&self.conn),
                handle,
            });
            keks.push(Kek::held(version, held)?);
        }
        let mut keks = keks.into_iter();
        let current = keks.next().ok_or_else(|| {
            CryptoError::ProviderUnavailable(format!(
                "the token {:?} holds no key labelled {}-v<N>",
                self.settings.token_label, self.settings.key_label
            ))
        })?;
        Ok(KekRing::new(current, keks.collect()))
    }

    /// The ring; if the token holds no KEK yet, creates version 1 first (a first start).
    pub fn ring_or_create(&self) -> Result<KekRing, CryptoError> {
        if self.keys()?.is_empty() {
            self.create(1)?;
        }
        self.ring()
    }

    /// Creates version N+1 inside the token (non-extractable, sensitive) and returns the ring,
    /// whose current version is the new one.
    pub fn rotate(&self) -> Result<KekRing, CryptoError> {
        let next = self
            .keys()?
            .first()
            .map_or(0, |(v, _)| *v)
            .checked_add(1)
            .ok_or_else(|| CryptoError::Provider("KEK version space exhausted".into()))?;
        self.create(next)?;
        self.ring()
    }

    fn create(&self, version: u32) -> Result<(), CryptoError> {
        let label = label_of(version, &self.settings.key_label);
        let session = self.conn.session()?;
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen((SECRET_LEN as u64).into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                    Attribute::Label(label.clone().into_bytes()),
                    Attribute::Id(label.into_bytes()),
                ],
            )
            .map_err(|e| CryptoError::Provider(format!("PKCS#11 key generation failed: {e}")))?;
        Ok(())
    }

    /// Starts retiring KEK `version`: refuses the current version and one the token does not
    /// hold, then relabels the object so that no load finds it. Nothing is destroyed yet.
    pub fn begin_retire(&self, version: u32) -> Result<RetiringHsmKek, CryptoError> {
        let keys = self.keys()?;
        if keys.first().map(|(v, _)| *v) == Some(version) {
            return Err(CryptoError::Provider(format!(
                "version {version} is the current KEK: rotate first, then rewrap, then retire"
            )));
        }
        let handle = keys
            .iter()
            .find(|(v, _)| *v == version)
            .map(|(_, h)| *h)
            .ok_or_else(|| {
                CryptoError::Provider(format!("there is no KEK version {version} to retire"))
            })?;
        self.relabel(handle, retiring_label_of(version, &self.settings.key_label))?;
        Ok(RetiringHsmKek {
            hsm: self.clone(),
            version,
            handle,
        })
    }

    fn relabel(&self, handle: ObjectHandle, label: String) -> Result<(), CryptoError> {
        self.conn
            .session()?
            .update_attributes(handle, &[Attribute::Label(label.into_bytes())])
            .map_err(|e| CryptoError::Provider(format!("PKCS#11 relabel failed: {e}")))
    }
}

/// Refuses a key object that is not an AES-256 key kept inside the token.
fn check_key(session: &Session, handle: ObjectHandle, label: &str) -> Result<(), CryptoError> {
    let attrs = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sensitive,
                AttributeType::Extractable,
            ],
        )
        .map_err(unavailable("read key attributes"))?;
    let mut aes = false;
    let mut len_ok = false;
    let mut sensitive = false;
    let mut extractable = true;
    for attr in attrs {
        match attr {
            Attribute::KeyType(t) => aes = t == KeyType::AES,
            Attribute::ValueLen(len) => len_ok = u64::from(len) == SECRET_LEN as u64,
            Attribute::Sensitive(s) => sensitive = s,
            Attribute::Extractable(x) => extractable = x,
            _ => {}
        }
    }
    if !aes || !len_ok {
        return Err(CryptoError::Provider(format!(
            "key object {label} is not an AES-256 key"
        )));
    }
    if !sensitive || extractable {
        return Err(CryptoError::Provider(format!(
            "key object {label} can leave the token (it must be CKA_SENSITIVE and not \
             CKA_EXTRACTABLE); create KEKs with `custos keys rotate` or with those attributes"
        )));
    }
    Ok(())
}

/// A KEK version taken out of the ring (relabelled) but not yet destroyed; see
/// [`Hsm::begin_retire`].
#[must_use = "a retiring key is either destroyed or restored"]
pub struct RetiringHsmKek {
    hsm: Hsm,
    version: u32,
    handle: ObjectHandle,
}

impl fmt::Debug for RetiringHsmKek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetiringHsmKek")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl RetiringHsmKek {
    /// The version being retired.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Destroys the key object (`C_DestroyObject`): nothing can unwrap with it any more.
    pub fn destroy(self) -> Result<(), CryptoError> {
        self.hsm
            .conn
            .session()?
            .destroy_object(self.handle)
            .map_err(|e| CryptoError::Provider(format!("PKCS#11 destroy failed: {e}")))
    }

    /// Puts the label back: the version is in the ring again.
    pub fn restore(self) -> Result<(), CryptoError> {
        self.hsm.relabel(
            self.handle,
            label_of(self.version, &self.hsm.settings.key_label),
        )
    }
}

/// One KEK version inside the token.
struct HsmKek {
    conn: Arc<Conn>,
    handle: ObjectHandle,
}

/// The token's answer to a failed decryption: an authentication failure is
/// [`CryptoError::Decrypt`] like any other; the token being unreachable is not the data being
/// damaged. SoftHSM (through OpenSSL) reports a GCM tag mismatch as `CKR_GENERAL_ERROR` or
/// `CKR_FUNCTION_FAILED`, so those count as an authentication failure when the session still
/// answers afterwards.
fn decrypt_error(session: &Session, e: P11Error) -> CryptoError {
    match e {
        P11Error::Pkcs11(
            RvError::EncryptedDataInvalid
            | RvError::EncryptedDataLenRange
            | RvError::DataInvalid
            | RvError::DataLenRange,
            _,
        ) => CryptoError::Decrypt,
        P11Error::Pkcs11(RvError::GeneralError | RvError::FunctionFailed, _)
            if session.get_session_info().is_ok() =>
        {
            CryptoError::Decrypt
        }
        e => CryptoError::ProviderUnavailable(format!("PKCS#11 decrypt: {e}")),
    }
}

fn gcm_params<'a>(
    iv: &'a mut [u8; NONCE_LEN],
    aad: &'a [u8],
) -> Result<Mechanism<'a>, CryptoError> {
    let params = GcmParams::new(iv, aad, ((TAG_LEN * 8) as u64).into())
        .map_err(|e| CryptoError::Provider(format!("PKCS#11 GCM parameters: {e}")))?;
    Ok(Mechanism::AesGcm(params))
}

impl HeldKek for HsmKek {
    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8; SECRET_LEN],
    ) -> Result<Vec<u8>, CryptoError> {
        let mut iv = *nonce;
        let mechanism = gcm_params(&mut iv, aad)?;
        self.conn
            .session()?
            .encrypt(&mechanism, self.handle, plaintext)
            .map_err(unavailable("encrypt"))
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<[u8; SECRET_LEN]>, CryptoError> {
        let mut iv = *nonce;
        let mechanism = gcm_params(&mut iv, aad)?;
        let session = self.conn.session()?;
        let plain = Zeroizing::new(
            session
                .decrypt(&mechanism, self.handle, sealed)
                .map_err(|e| decrypt_error(&session, e))?,
        );
        drop(session);
        let mut key = Zeroizing::new([0u8; SECRET_LEN]);
        if plain.len() != SECRET_LEN {
            return Err(CryptoError::Decrypt);
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_like_key_file_names() {
        assert_eq!(parse_version("custos-kek", "custos-kek-v1"), Some(Ok(1)));
        assert_eq!(parse_version("custos-kek", "custos-kek-v12"), Some(Ok(12)));
        assert!(matches!(
            parse_version("custos-kek", "custos-kek-v01"),
            Some(Err(_))
        ));
        assert!(matches!(
            parse_version("custos-kek", "custos-kek-v0"),
            Some(Err(_))
        ));
        assert_eq!(parse_version("custos-kek", "other-v1"), None);
        assert_eq!(parse_version("custos-kek", ".custos-kek-v1.retiring"), None);
        assert_eq!(parse_version("custos-kek", "custos-kek-v1x"), None);
        assert_eq!(label_of(3, "custos-kek"), "custos-kek-v3");
    }

    #[test]
    fn a_missing_module_is_unavailable() {
        let settings = Pkcs11Settings {
            module: PathBuf::from("/nonexistent/libpkcs11.so"),
            token_label: "t".into(),
            key_label: "custos-kek".into(),
        };
        assert!(matches!(
            Hsm::connect(&settings, "1234"),
            Err(CryptoError::ProviderUnavailable(_))
        ));
    }
}
