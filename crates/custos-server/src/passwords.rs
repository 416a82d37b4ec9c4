//! Passwords of local users: Argon2id hashing and verification, and the password policy.
//!
//! Owns the hash parameters (OWASP's Argon2id minimum: m = 19 MiB, t = 2, p = 1) and the rule
//! that hashing never runs on the async runtime's threads: each hash or verification runs in
//! `spawn_blocking` behind a semaphore, because an Argon2 computation is deliberately expensive
//! and unbounded sign-in attempts would otherwise be a lever to exhaust CPU and memory. Passwords
//! are held in zeroizing buffers and never logged; only PHC strings leave this module.

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// Memory cost in KiB (19 MiB).
pub const M_COST_KIB: u32 = 19 * 1024;
/// Passes.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;
/// Hashes computed at once, server-wide.
pub const DEFAULT_PERMITS: usize = 2;

/// Shortest accepted password, in characters.
pub const MIN_LEN: usize = 12;
/// Longest accepted password, in characters (bounds the hashing input).
pub const MAX_LEN: usize = 256;

/// The hash unknown user names are verified against, made with the parameters above from a
/// random password nobody kept, so that an unknown name costs what a known one does.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$BtNAmUchA2CUaVd1nlcujg$cTwsWeHamhckawvMCn/V1U3nMsf9d4QTibMhlF6iGDA";

/// Common passwords of at least [`MIN_LEN`] characters, one per line, compared without regard
/// to case.
const COMMON: &str = include_str!("passwords/common.txt");

/// Words that, padded with digits and punctuation, make up most guessed passwords
/// ("Password2026!", "qwerty!!1234").
const COMMON_WORDS: &[&str] = &[
    "password",
    "passwort",
    "qwerty",
    "qwertyuiop",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "iloveyou",
    "monkey",
    "dragon",
    "master",
    "login",
    "abc",
    "abcdef",
    "secret",
    "changeme",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "superman",
    "batman",
    "trustno",
    "starwars",
    "whatever",
    "freedom",
    "shadow",
    "custos",
    "qazwsx",
    "asdf",
    "asdfgh",
    "zxcvbn",
    "passw",
    "pass",
    "root",
    "test",
    "guest",
    "default",
    "summer",
    "winter",
    "spring",
    "autumn",
];

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The hashing task failed (a bug or a panic in the blocking pool).
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// A stored hash is not a PHC string this server can verify.
    #[error("stored password hash is unreadable")]
    BadStoredHash,
}

/// Why a new password was refused. The messages are shown to the person choosing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Too short.
    #[error("a password needs at least {MIN_LEN} characters")]
    TooShort,
    /// Too long.
    #[error("a password may have at most {MAX_LEN} characters")]
    TooLong,
    /// In the common-password list, or a common word padded with digits and symbols.
    #[error("this password is too common; choose a longer phrase of unrelated words")]
    Common,
    /// Contains the user name.
    #[error("a password must not contain the user name")]
    ContainsName,
}

/// Checks a new password for `user_name` against the policy: length, not common, not built on
/// the user name. Length counts characters, not bytes, so non-ASCII passwords are not penalised.
pub fn check_policy(user_name: &str, password: &str) -> Result<(), PolicyError> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err(PolicyError::TooShort);
    }
    if chars > MAX_LEN {
        return Err(PolicyError::TooLong);
    }
    let lower = Zeroizing::new(password.to_lowercase());
    let name = user_name.trim().to_lowercase();
    if !name.is_empty() && lower.contains(&name) {
        return Err(PolicyError::ContainsName);
    }
    if COMMON
        .lines()
        .map(str::trim)
        .any(|common| !common.is_empty() && common == lower.as_str())
    {
        return Err(PolicyError::Common);
    }
    let letters = Zeroizing::new(
        lower
            .chars()
            .filter(|c| c.is_alphabetic())
            .collect::<String>(),
    );
    if COMMON_WORDS.contains(&letters.as_str()) || repeats_a_short_unit(&lower) {
        return Err(PolicyError::Common);
    }
    Ok(())
}

/// "aaaaaaaaaaaa", "abcabcabcabc", "1212121212121": a unit of at most four characters, repeated.
fn repeats_a_short_unit(password: &str) -> bool {
    let chars: Vec<char> = password.chars().collect();
    (1..=4).any(|unit| {
        chars.len() > unit
            && chars
                .iter()
                .zip(chars.iter().skip(unit))
                .all(|(a, b)| a == b)
    })
}

/// The hasher: bounded, off the async threads.
#[derive(Debug)]
pub struct Passwords {
    permits: Arc<Semaphore>,
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new(DEFAULT_PERMITS)
    }
}

fn argon2() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

impl Passwords {
    /// A hasher running at most `permits` hashes at once (at least one).
    pub fn new(permits: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(permits.max(1))),
        }
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit moves into the task,
    /// so a caller that gives up (a timed-out request) does not free it while the hash still
    /// runs.
    async fn bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))?
    }

    /// Hashes a new password into a PHC string with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        self.bounded(move || {
            argon2()?
                .hash_password(&password)
                .map(|hash| hash.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `stored`. With no stored hash (an unknown user) the password
    /// is checked against a dummy hash of the same cost and the answer is `false`, so the two
    /// cases cannot be told apart by time.
    pub async fn verify(
        &self,
        password: &str,
        stored: Option<&str>,
    ) -> Result<bool, PasswordError> {
        let password = Zeroizing::new(password.as_bytes().to_vec());
        let known = stored.is_some();
        let stored = stored.unwrap_or(DUMMY_HASH).to_owned();
        self.bounded(move || {
            let hash = PasswordHash::new(&stored).map_err(|_| PasswordError::BadStoredHash)?;
            let matches = argon2()?.verify_password(&password, &hash).is_ok();
            Ok(known && matches)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let hash = PasswordHash::new(DUMMY_HASH).unwrap();
        let params = Params::try_from(&hash).unwrap();
        assert_eq!(
            (params.m_cost(), params.t_cost(), params.p_cost()),
            (M_COST_KIB, T_COST, P_COST)
        );
        assert_eq!(hash.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(2);
        let hash = p.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            p.verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !p.verify("correct horse batterY", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!p.verify("anything at all", None).await.unwrap());
        assert!(p.verify("x", Some("not a phc string")).await.is_err());
        let again = p.hash("correct horse battery").await.unwrap();
        assert_ne!(hash, again, "every hash has its own salt");
    }

    #[test]
    fn policy() {
        assert_eq!(check_policy("ada", "short"), Err(PolicyError::TooShort));
        assert_eq!(
            check_policy("ada", "elevenchars"),
            Err(PolicyError::TooShort)
        );
        assert_eq!(
            check_policy("ada", &"x1".repeat(129)),
            Err(PolicyError::TooLong)
        );
        for common in [
            "password1234",
            "QWERTYUIOP12",
            "123456789012",
            "Password2026!",
            "aaaaaaaaaaaa",
            "abcabcabcabc",
        ] {
            assert_eq!(
                check_policy("ada", common),
                Err(PolicyError::Common),
                "{common}"
            );
        }
        assert_eq!(
            check_policy("lovelace", "my name is LoveLace!"),
            Err(PolicyError::ContainsName)
        );
        assert_eq!(check_policy("ada", "tulip orbit kettle"), Ok(()));
        // Characters, not bytes: twelve non-ASCII characters are enough.
        assert_eq!(check_policy("ada", "ŝŭŝŭŝĉĥĵĝŭŝŭ"), Ok(()));
        for line in COMMON.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.chars().count() >= MIN_LEN,
                "{line} is shorter than the minimum"
            );
            assert_eq!(line, line.to_lowercase(), "{line}: the list is lower case");
        }
    }
}
