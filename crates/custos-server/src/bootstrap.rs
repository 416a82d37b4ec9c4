//! First start: the data directory and the one-time bootstrap secret.
//!
//! There are no default credentials. On the first start against an empty store a random secret
//! is written to `<data-dir>/bootstrap-token` (mode 0600, created exclusively) and only its keyed
//! hash is stored. Later starts find the hash and create nothing, so restarting never mints a new
//! administrator secret. The secret is never logged; the log names the file.

use crate::StartError;
use crate::auth::BOOTSTRAP_HASH_META;
use crate::keys::KeyService;
use custos_crypto::token::{TokenPrefix, generate_token};
use custos_store::Store;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// File name of the bootstrap secret inside the data directory.
pub const BOOTSTRAP_FILE: &str = "bootstrap-token";

/// Creates the data directory (0700) or checks an existing one is not open to other users.
pub fn prepare_data_dir(dir: &Path) -> Result<(), StartError> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StartError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mode = std::fs::metadata(dir)
        .map_err(|e| StartError::Io(format!("cannot read {}: {e}", dir.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(StartError::Io(format!(
            "{} is accessible to other users (mode {:o}); run chmod 700 on it",
            dir.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

/// Makes the embedded database files readable by the owner only. SQLite creates them with the
/// process umask, and gives its `-wal` and `-shm` files the database file's mode; the data
/// directory is already 0700, this is the second lock.
pub fn restrict_database_files(data_dir: &Path) -> Result<(), StartError> {
    for name in ["custos.db", "custos.db-wal", "custos.db-shm"] {
        let path = data_dir.join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| StartError::Io(format!("cannot restrict {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

/// Writes the bootstrap secret on first start. Returns the file's path when it was created now.
pub async fn ensure_bootstrap_secret(
    store: &Store,
    keys: &KeyService,
    data_dir: &Path,
) -> Result<Option<PathBuf>, StartError> {
    if store.get_meta(BOOTSTRAP_HASH_META).await?.is_some() {
        return Ok(None);
    }
    let secret = generate_token(TokenPrefix::Bootstrap)
        .map_err(|e| StartError::Io(format!("cannot generate the bootstrap secret: {e}")))?;
    let path = data_dir.join(BOOTSTRAP_FILE);
    let staging = data_dir.join(format!("{BOOTSTRAP_FILE}.new"));
    // Stage the file first so that a stored hash always has a secret someone can read.
    let _ = std::fs::remove_file(&staging);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&staging)
        .map_err(|e| StartError::Io(format!("cannot create {}: {e}", staging.display())))?;
    writeln!(file, "{}", secret.expose())
        .and_then(|()| file.sync_all())
        .map_err(|e| StartError::Io(format!("cannot write {}: {e}", staging.display())))?;
    let hash = hex::encode(keys.token_hasher().hash(secret.expose()));
    if !store
        .insert_meta_if_absent(BOOTSTRAP_HASH_META, &hash)
        .await?
    {
        // Another replica bootstrapped first; its secret is the one.
        let _ = std::fs::remove_file(&staging);
        return Ok(None);
    }
    std::fs::rename(&staging, &path)
        .map_err(|e| StartError::Io(format!("cannot create {}: {e}", path.display())))?;
    tracing::warn!(
        file = %path.display(),
        "first start: a one-time bootstrap secret was written; use it to sign in as administrator"
    );
    Ok(Some(path))
}
