//! Password sign-in of local users, beside [`crate::auth::sign_in`] for the bootstrap secret.
//!
//! Owns the decision whether a user name and password open a session: the per-address throttle,
//! the per-account lockout, the audit record of every attempt, and the principal a session
//! gets — `Principal::User` with the union of the user's role bindings as stored at this moment.
//! Every refusal (unknown name, wrong password, locked, disabled) is the same
//! [`SignInError::Rejected`] after the same Argon2 work, so the answer and its timing say nothing
//! about which it was; only the audit log does. A name that is no local user is handed to
//! [`crate::ldap`] when a directory is configured, after the same throttle and Argon2 work.

use crate::auth::{Actor, SignInError, audit_event};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::state::AppState;
use custos_core::{ActorType, Outcome, Principal, RoleBinding, grants_of};
use custos_store::UserRow;

/// Longest user name, in characters.
pub const MAX_NAME_LEN: usize = 64;
/// Shortest user name: shorter names would forbid too many passwords ("must not contain the
/// user name") and are easy to guess.
pub const MIN_NAME_LEN: usize = 3;

/// Whether `name` can be a user name: 3–64 ASCII letters, digits, `.`, `_`, `-` or `@`, starting
/// with a letter or digit. ASCII keeps case folding the same everywhere and rules out names that
/// look alike but differ.
pub fn valid_name(name: &str) -> bool {
    (MIN_NAME_LEN..=MAX_NAME_LEN).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// A stored user's role bindings. A list that no longer parses grants nothing: fail closed.
pub fn bindings(user: &UserRow) -> Result<Vec<RoleBinding>, ApiError> {
    serde_json::from_str(&user.bindings_json)
        .map_err(|_| ApiError::internal("stored role bindings of a user are unreadable"))
}

/// The principal a signed-in user acts as.
pub fn principal(user: &UserRow) -> Result<Principal, ApiError> {
    Ok(Principal::User {
        id: user.id.clone(),
        name: user.name.clone(),
        grants: grants_of(&bindings(user)?),
    })
}

/// Why an attempt failed, for the audit record only.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    UnknownUser,
    BadPassword,
    LockedNow,
    Locked,
    Disabled,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::UnknownUser => "unknown_user",
            Refusal::BadPassword => "bad_password",
            Refusal::LockedNow => "bad_password_locked",
            Refusal::Locked => "locked",
            Refusal::Disabled => "disabled",
        }
    }
}

/// A person signing in with user name and password. Fail closed: a sign-in that cannot be
/// checked or recorded does not happen.
pub async fn sign_in_password(
    state: &AppState,
    ctx: &RequestContext,
    name: &str,
    password: &str,
) -> Result<Principal, SignInError> {
    if state
        .failures
        .blocked(ctx.client_ip, state.config.limits.auth_failures_per_minute)
    {
        return Err(SignInError::Throttled);
    }
    let name = name.trim();
    let user = if valid_name(name) {
        state
            .store
            .user_by_name(name)
            .await
            .map_err(|e| SignInError::Internal(e.into()))?
    } else {
        None
    };
    // Always one verification, against the dummy hash when there is no user, so the work is the
    // same whatever the outcome.
    let verified = state
        .passwords
        .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
        .await
        .map_err(|e| SignInError::Internal(ApiError::internal(e)))?;
    // No local user of that name: the directory decides, when one is configured. Only after
    // the Argon2 work above, so timing does not tell local names from directory ones.
    if user.is_none()
        && let Some(ldap) = &state.config.ldap
    {
        return crate::ldap::sign_in_ldap(state, ctx, ldap, name, password).await;
    }
    let now = state.clock.now();
    let outcome: Result<&UserRow, Refusal> = match &user {
        None => Err(Refusal::UnknownUser),
        Some(u) if u.disabled_at.is_some() => Err(Refusal::Disabled),
        // Attempts during a lock are not counted: they would only extend the lock, handing
        // anyone who knows the name a way to keep the owner out for good.
        Some(u) if u.locked_at(now) => Err(Refusal::Locked),
        Some(u) if !verified => {
            let auth = &state.config.auth;
            let locked = state
                .store
                .record_sign_in_failure(
                    &u.id,
                    now,
                    auth.lockout_failures,
                    chrono::Duration::minutes(i64::from(auth.lockout_minutes)),
                )
                .await
                .map_err(|e| SignInError::Internal(e.into()))?;
            Err(if locked.is_some() {
                Refusal::LockedNow
            } else {
                Refusal::BadPassword
            })
        }
        Some(u) => Ok(u),
    };
    let user = match outcome {
        Ok(u) => u,
        Err(refusal) => {
            // An unknown name may be a person's e-mail address or a password typed into the
            // wrong field: it is recorded only as its keyed hash, which an auditor can match
            // with `custos audit hash` but nobody can reverse.
            let resource = user
                .as_ref()
                .map_or_else(|| "ui".to_owned(), |u| format!("user/{}", u.id));
            let name_hmac = state.keys.audit_hasher().tag(name);
            let event = audit_event(
                state,
                ctx,
                Actor::anonymous(),
                "auth.sign_in",
                resource,
                Outcome::Failure,
                serde_json::json!({
                    "method": "password",
                    "reason": refusal.as_str(),
                    "name_hmac": name_hmac,
                }),
            );
            state
                .store
                .append_audit(&event)
                .await
                .map_err(|e| SignInError::Internal(e.into()))?;
            state.failures.record(ctx.client_ip);
            return Err(SignInError::Rejected);
        }
    };
    let principal = principal(user).map_err(SignInError::Internal)?;
    state
        .store
        .record_sign_in_success(&user.id, now)
        .await
        .map_err(|e| SignInError::Internal(e.into()))?;
    let event = audit_event(
        state,
        ctx,
        Actor {
            id: principal.actor_id(),
            kind: ActorType::User,
        },
        "auth.sign_in",
        format!("user/{}", user.id),
        Outcome::Success,
        serde_json::json!({ "method": "password" }),
    );
    state
        .store
        .append_audit(&event)
        .await
        .map_err(|e| SignInError::Internal(e.into()))?;
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["ada", "ada.lovelace", "a_b-c@example.org", "Grace1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "ab",
            ".ada",
            "ada lovelace",
            "ädä",
            &"a".repeat(65),
            "ada\n",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
