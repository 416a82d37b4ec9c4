//! The KEK directory provider: versioned key files on local disk.
//!
//! Owns: the only file IO of this crate — reading, checking and creating `kek-v{N}.key` files
//! (32 random bytes, standard base64, one line) in an owner-only directory. Must not: accept a
//! key file or directory that group or others can read or write, follow the creation with a
//! `chmod` (files are born 0600, there is no window with looser permissions), overwrite an
//! existing key file, or put file contents into errors or logs.
//!
//! Ownership is not checked (std has no portable effective-uid call and this crate takes no
//! libc dependency); the mode check catches the common mistakes (`0644` from an editor or a
//! `cp`, a world-readable mount).

use super::{Kek, KekRing};
use crate::error::CryptoError;
use crate::secret::{decode_key_base64, fill_random, random_key};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Key files are one line of base64 (44 characters); anything much larger is not a key file,
/// and the cap stops a misconfigured path (e.g. a log file) being read into memory.
const MAX_KEY_FILE_BYTES: u64 = 256;
const FILE_PREFIX: &str = "kek-v";
const FILE_SUFFIX: &str = ".key";

fn bad(path: &Path, reason: impl Into<String>) -> CryptoError {
    CryptoError::BadKeyFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_bad(path: &Path, err: &io::Error) -> CryptoError {
    // io::Error's text names the OS error (e.g. "Permission denied"), never file content.
    bad(path, err.to_string())
}

fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), CryptoError> {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CryptoError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Loads every `kek-v{N}.key` in `dir` into a ring whose current KEK is the highest version.
///
/// If `dir` does not exist it is created with mode 0700 (parents too). If it holds no key file,
/// `kek-v1.key` is created with a fresh random key, mode 0600. Refuses a directory or key file
/// accessible by group or others, a key file that is not 32 bytes of base64, and non-canonical
/// version numbers (`kek-v01.key`), so two files can never claim one version.
pub fn load_or_create_kek_dir(dir: &Path) -> Result<KekRing, CryptoError> {
    ensure_dir(dir)?;
    let keks = read_keks(dir)?;
    if !keks.is_empty() {
        return ring_from(dir, keks);
    }
    create_key_file(dir, 1)?;
    // Read back rather than use the key in hand: this proves the written file loads, and if a
    // concurrent process won the race to create v1 we use its key, not ours.
    ring_from(dir, read_keks(dir)?)
}

/// Adds `kek-v{N+1}.key` (fresh random key, mode 0600) and returns the reloaded ring, whose
/// current KEK is the new one. Wrapped keys are then re-wrapped with [`KekRing::rewrap`]; the
/// old files must stay until no wrapped key names their version.
pub fn rotate_kek_dir(dir: &Path) -> Result<KekRing, CryptoError> {
    ensure_dir(dir)?;
    let keks = read_keks(dir)?;
    let next = keks
        .iter()
        .map(Kek::version)
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| bad(dir, "KEK version space exhausted"))?;
    create_key_file(dir, next)?;
    ring_from(dir, read_keks(dir)?)
}

/// Loads every `kek-v{N}.key` in `dir` without creating anything: a missing directory or one
/// without key files is an error. This is what a start uses once the store already holds wrapped
/// keys (a fresh key there would wrap nothing the store holds), and what the key commands use.
pub fn load_kek_dir(dir: &Path) -> Result<KekRing, CryptoError> {
    let meta = fs::metadata(dir).map_err(|e| io_bad(dir, &e))?;
    if !meta.is_dir() {
        return Err(bad(dir, "not a directory"));
    }
    check_mode(dir, &meta)?;
    ring_from(dir, read_keks(dir)?)
}

/// A KEK version taken out of the ring but not yet destroyed: its file is renamed to a hidden
/// name that no load reads, so that the caller can check once more that nothing still uses the
/// version, then [`RetiringKek::destroy`] it or [`RetiringKek::restore`] it.
#[derive(Debug)]
#[must_use = "a retiring key is either destroyed or restored"]
pub struct RetiringKek {
    dir: PathBuf,
    version: u32,
    hidden: PathBuf,
}

/// Starts retiring KEK `version` of `dir`: refuses the current (highest) version and a version
/// that has no file, then hides its file. Nothing is destroyed yet.
pub fn begin_retire_kek(dir: &Path, version: u32) -> Result<RetiringKek, CryptoError> {
    let ring = load_kek_dir(dir)?;
    if ring.current_version() == version {
        return Err(bad(
            dir,
            format!("version {version} is the current KEK: rotate first, then rewrap, then retire"),
        ));
    }
    if !ring.versions().contains(&version) {
        return Err(bad(
            dir,
            format!("there is no KEK version {version} to retire"),
        ));
    }
    let path = dir.join(format!("{FILE_PREFIX}{version}{FILE_SUFFIX}"));
    let hidden = dir.join(format!(".{FILE_PREFIX}{version}{FILE_SUFFIX}.retiring"));
    fs::rename(&path, &hidden).map_err(|e| io_bad(&path, &e))?;
    sync_dir(dir)?;
    Ok(RetiringKek {
        dir: dir.to_path_buf(),
        version,
        hidden,
    })
}

impl RetiringKek {
    /// The version being retired.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Overwrites the key file with zeros, flushes, and removes it. (On copy-on-write or
    /// journalling file systems and SSDs the old blocks may survive the overwrite; the
    /// operations runbook says so.)
    pub fn destroy(self) -> Result<(), CryptoError> {
        let shredded = OpenOptions::new()
            .write(true)
            .open(&self.hidden)
            .and_then(|mut file| {
                let len = usize::try_from(file.metadata()?.len()).unwrap_or(0);
                file.write_all(&vec![0u8; len.max(64)])?;
                file.sync_all()
            });
        if let Err(err) = shredded {
            return Err(io_bad(&self.hidden, &err));
        }
        fs::remove_file(&self.hidden).map_err(|e| io_bad(&self.hidden, &e))?;
        sync_dir(&self.dir)
    }

    /// Puts the key file back under its name: the version is in the ring again.
    pub fn restore(self) -> Result<(), CryptoError> {
        let path = self
            .dir
            .join(format!("{FILE_PREFIX}{}{FILE_SUFFIX}", self.version));
        fs::rename(&self.hidden, &path).map_err(|e| io_bad(&path, &e))?;
        sync_dir(&self.dir)
    }
}

fn sync_dir(dir: &Path) -> Result<(), CryptoError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_bad(dir, &e))
}

fn ensure_dir(dir: &Path) -> Result<(), CryptoError> {
    let meta = match fs::metadata(dir) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| io_bad(dir, &e))?;
            fs::metadata(dir).map_err(|e| io_bad(dir, &e))?
        }
        Err(err) => return Err(io_bad(dir, &err)),
    };
    if !meta.is_dir() {
        return Err(bad(dir, "not a directory"));
    }
    check_mode(dir, &meta)
}

/// `Some(Ok(n))` for a canonical key-file name, `Some(Err)` for a name that looks like one but
/// is malformed, `None` for unrelated files (ignored).
fn parse_version(name: &str) -> Option<Result<u32, String>> {
    let digits = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Err("key file names must be kek-v<N>.key".to_owned()));
    }
    Some(match digits.parse::<u32>() {
        Ok(0) => Err("KEK versions start at 1".to_owned()),
        Ok(n) if n.to_string() == digits => Ok(n),
        Ok(_) => Err("version number has leading zeros".to_owned()),
        Err(_) => Err("version number out of range".to_owned()),
    })
}

fn read_keks(dir: &Path) -> Result<Vec<Kek>, CryptoError> {
    let mut keks = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io_bad(dir, &e))? {
        let entry = entry.map_err(|e| io_bad(dir, &e))?;
        let name = entry.file_name();
        // Non-UTF-8 names cannot be key files.
        let Some(name) = name.to_str() else { continue };
        let Some(version) = parse_version(name) else {
            continue;
        };
        let path = entry.path();
        let version = version.map_err(|reason| bad(&path, reason))?;
        keks.push(read_key_file(&path, version)?);
    }
    Ok(keks)
}

fn read_key_file(path: &Path, version: u32) -> Result<Kek, CryptoError> {
    // Check the type before opening: opening a FIFO for reading would block.
    let pre = fs::metadata(path).map_err(|e| io_bad(path, &e))?;
    if !pre.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    let file = File::open(path).map_err(|e| io_bad(path, &e))?;
    // Check what was actually opened (fstat), not the name, so a swap between the two checks
    // cannot slip a looser file in.
    let meta = file.metadata().map_err(|e| io_bad(path, &e))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file"));
    }
    check_mode(path, &meta)?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(bad(path, "too large to be a key file"));
    }
    // Capacity well above the cap so reading never reallocates and leaves key copies behind.
    let capacity = usize::try_from(MAX_KEY_FILE_BYTES * 2).unwrap_or(512);
    let mut text = Zeroizing::new(String::with_capacity(capacity));
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|_| bad(path, "not a text file"))?;
    let key = decode_key_base64(&text).map_err(|reason| bad(path, reason))?;
    Kek::from_key(version, key).map_err(|_| bad(path, "KEK versions start at 1"))
}

fn ring_from(dir: &Path, mut keks: Vec<Kek>) -> Result<KekRing, CryptoError> {
    keks.sort_by_key(|kek| std::cmp::Reverse(kek.version()));
    let mut keks = keks.into_iter();
    let current = keks
        .next()
        .ok_or_else(|| bad(dir, "no kek-v<N>.key file"))?;
    Ok(KekRing::new(current, keks.collect()))
}

/// Writes a new key to a private temporary file (born 0600), then publishes it with a hard
/// link, which fails rather than overwrite if the name already exists. A crash can leave only
/// a stray dot-file, never a half-written `kek-v{N}.key` that would stop the next start.
fn create_key_file(dir: &Path, version: u32) -> Result<(), CryptoError> {
    let key = random_key()?;
    let mut text = Zeroizing::new(String::with_capacity(64));
    STANDARD.encode_string(key.as_slice(), &mut text);
    text.push('\n');

    let mut suffix = [0u8; 8];
    fill_random(&mut suffix)?;
    let final_path = dir.join(format!("{FILE_PREFIX}{version}{FILE_SUFFIX}"));
    let tmp_path: PathBuf = dir.join(format!(
        ".{FILE_PREFIX}{version}{FILE_SUFFIX}.tmp-{}",
        hex::encode(suffix)
    ));

    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    if let Err(err) = written {
        let _ = fs::remove_file(&tmp_path);
        return Err(io_bad(&tmp_path, &err));
    }
    let linked = fs::hard_link(&tmp_path, &final_path);
    // Best effort: after a successful link this is only a second name of the published file;
    // after a lost race it holds a key nothing was ever wrapped with.
    let _ = fs::remove_file(&tmp_path);
    match linked {
        Ok(()) => {}
        // Another process created this version first; the caller re-reads and uses its key.
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err(io_bad(&final_path, &err)),
    }
    // Make the new directory entry durable before any key is wrapped under it.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_bad(dir, &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{DataKey, KeyContext};
    use custos_core::Partition;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn set_mode(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write_key(path: &Path, text: &str, mode: u32) {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
        set_mode(path, mode); // umask may have narrowed it; the test wants exactly `mode`
    }

    fn ctx() -> KeyContext {
        KeyContext::Data {
            model_id: 1,
            partition: Partition(20_000),
            purpose: crate::keys::KeyPurpose::Shared,
        }
    }

    #[test]
    fn creates_private_dir_and_file_then_reloads_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let ring = load_or_create_kek_dir(&dir).unwrap();
        assert_eq!(ring.current_version(), 1);
        assert_eq!(mode_of(&dir), 0o700);
        let file = dir.join("kek-v1.key");
        assert_eq!(mode_of(&file), 0o600);
        let content = fs::read_to_string(&file).unwrap();
        assert_eq!(content.len(), 45);
        assert!(content.ends_with('\n'));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no stray temp file");

        let key = DataKey::generate().unwrap();
        let wrapped = ring.wrap(&ctx(), &key).unwrap();
        let again = load_or_create_kek_dir(&dir).unwrap();
        assert_eq!(again.unwrap(&ctx(), &wrapped).unwrap().bytes(), key.bytes());
        assert_eq!(
            fs::read_to_string(&file).unwrap(),
            content,
            "not overwritten"
        );
    }

    #[test]
    fn highest_version_is_current_and_rotation_adds_one() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let v1 = load_or_create_kek_dir(&dir).unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped = v1.wrap(&ctx(), &key).unwrap();
        let rotated = rotate_kek_dir(&dir).unwrap();
        assert_eq!(rotated.current_version(), 2);
        assert_eq!(mode_of(&dir.join("kek-v2.key")), 0o600);
        assert_eq!(
            rotated.unwrap(&ctx(), &wrapped).unwrap().bytes(),
            key.bytes()
        );
        let reloaded = load_or_create_kek_dir(&dir).unwrap();
        assert_eq!(reloaded.versions(), vec![2, 1]);
        // A hand-placed v10 sorts numerically, not as text.
        write_key(&dir.join("kek-v10.key"), &STANDARD.encode([3u8; 32]), 0o600);
        assert_eq!(load_or_create_kek_dir(&dir).unwrap().current_version(), 10);
    }

    #[test]
    fn load_without_create_and_retire() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        assert!(load_kek_dir(&dir).is_err(), "missing dir is not created");
        assert!(!dir.exists());
        load_or_create_kek_dir(&dir).unwrap();
        let key = DataKey::generate().unwrap();
        let wrapped_v1 = load_kek_dir(&dir).unwrap().wrap(&ctx(), &key).unwrap();
        assert!(
            begin_retire_kek(&dir, 1).is_err(),
            "the current version is never retired"
        );
        rotate_kek_dir(&dir).unwrap();
        assert!(begin_retire_kek(&dir, 7).is_err(), "unknown version");
        // Hidden then restored: back in the ring.
        let retiring = begin_retire_kek(&dir, 1).unwrap();
        assert_eq!(load_kek_dir(&dir).unwrap().versions(), vec![2]);
        retiring.restore().unwrap();
        assert_eq!(load_kek_dir(&dir).unwrap().versions(), vec![2, 1]);
        // Destroyed: gone for good, and nothing left in the directory but v2.
        begin_retire_kek(&dir, 1).unwrap().destroy().unwrap();
        let ring = load_kek_dir(&dir).unwrap();
        assert_eq!(ring.versions(), vec![2]);
        assert!(matches!(
            ring.unwrap(&ctx(), &wrapped_v1),
            Err(CryptoError::UnknownKekVersion(1))
        ));
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["kek-v2.key".to_owned()]);
        // An emptied directory does not load (and is not refilled).
        fs::remove_file(dir.join("kek-v2.key")).unwrap();
        assert!(load_kek_dir(&dir).is_err());
    }

    #[test]
    fn refuses_group_or_world_readable_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        load_or_create_kek_dir(&dir).unwrap();
        let file = dir.join("kek-v1.key");
        set_mode(&file, 0o644);
        match load_or_create_kek_dir(&dir) {
            Err(CryptoError::InsecurePermissions { path, mode }) => {
                assert_eq!(path, file);
                assert_eq!(mode, 0o644);
            }
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
        set_mode(&file, 0o640);
        assert!(matches!(
            load_or_create_kek_dir(&dir),
            Err(CryptoError::InsecurePermissions { .. })
        ));
        set_mode(&file, 0o400);
        assert!(load_or_create_kek_dir(&dir).is_ok());
    }

    #[test]
    fn refuses_open_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        load_or_create_kek_dir(&dir).unwrap();
        set_mode(&dir, 0o755);
        match load_or_create_kek_dir(&dir) {
            Err(CryptoError::InsecurePermissions { path, mode }) => {
                assert_eq!(path, dir);
                assert_eq!(mode, 0o755);
            }
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
        // An existing but open empty directory is refused too, before any key is written.
        let empty = tmp.path().join("empty");
        fs::create_dir(&empty).unwrap();
        set_mode(&empty, 0o755);
        assert!(load_or_create_kek_dir(&empty).is_err());
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    }

    #[test]
    fn refuses_wrong_length_without_quoting_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        fs::create_dir(&dir).unwrap();
        set_mode(&dir, 0o700);
        let short = STANDARD.encode([9u8; 31]);
        write_key(&dir.join("kek-v1.key"), &short, 0o600);
        match load_or_create_kek_dir(&dir) {
            Err(err @ CryptoError::BadKeyFile { .. }) => {
                let text = err.to_string();
                assert!(text.contains("kek-v1.key"), "{text}");
                assert!(!text.contains(&short), "{text}");
            }
            other => panic!("expected BadKeyFile, got {other:?}"),
        }
        fs::remove_file(dir.join("kek-v1.key")).unwrap();
        write_key(&dir.join("kek-v1.key"), &STANDARD.encode([9u8; 33]), 0o600);
        assert!(matches!(
            load_or_create_kek_dir(&dir),
            Err(CryptoError::BadKeyFile { .. })
        ));
        fs::remove_file(dir.join("kek-v1.key")).unwrap();
        write_key(&dir.join("kek-v1.key"), &"A".repeat(1000), 0o600);
        assert!(matches!(
            load_or_create_kek_dir(&dir),
            Err(CryptoError::BadKeyFile { .. })
        ));
    }

    #[test]
    fn file_names() {
        assert_eq!(parse_version("kek-v1.key"), Some(Ok(1)));
        assert_eq!(parse_version("kek-v4294967295.key"), Some(Ok(u32::MAX)));
        assert!(matches!(parse_version("kek-v01.key"), Some(Err(_))));
        assert!(matches!(parse_version("kek-v0.key"), Some(Err(_))));
        assert!(matches!(parse_version("kek-v+1.key"), Some(Err(_))));
        assert!(matches!(parse_version("kek-v.key"), Some(Err(_))));
        assert!(matches!(parse_version("kek-v4294967296.key"), Some(Err(_))));
        assert_eq!(parse_version("README"), None);
        assert_eq!(parse_version(".kek-v1.key.tmp-00"), None);
        assert_eq!(parse_version("kek-v1.key.bak"), None);
    }

    #[test]
    fn ignores_unrelated_files_but_refuses_malformed_key_names() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        load_or_create_kek_dir(&dir).unwrap();
        fs::write(dir.join("README"), "hello").unwrap();
        assert!(load_or_create_kek_dir(&dir).is_ok());
        write_key(&dir.join("kek-v01.key"), &STANDARD.encode([3u8; 32]), 0o600);
        assert!(matches!(
            load_or_create_kek_dir(&dir),
            Err(CryptoError::BadKeyFile { .. })
        ));
    }
}
