//! Server-side web sessions: the cookie carries only a random id (128 bits); everything else
//! stays here. Idle and absolute timeouts are enforced on every lookup, logout deletes the
//! session, and the table is bounded so a flood of sign-ins cannot exhaust memory.
//!
//! Sessions live in memory: a restart signs everyone out, and replicas do not share them. The
//! identity work moves them into the store.

use chrono::{DateTime, Duration, Utc};
use custos_core::Principal;
use std::collections::HashMap;
use std::sync::Mutex;

const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    created: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

/// What a session id stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A live session of this principal.
    Live(Principal),
    /// A session of this principal that just timed out (and is now gone).
    Expired(Principal),
    /// No such session.
    Unknown,
}

/// The session table.
#[derive(Debug)]
pub struct Sessions {
    idle: Duration,
    absolute: Duration,
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// A table with the given timeouts.
    pub fn new(idle_minutes: u32, max_hours: u32) -> Self {
        Self {
            idle: Duration::minutes(i64::from(idle_minutes)),
            absolute: Duration::hours(i64::from(max_hours)),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session and returns its id; `None` (and no session) when the OS gives no
    /// randomness for the id.
    pub fn create(&self, principal: Principal, now: DateTime<Utc>) -> Option<String> {
        let id = crate::context::secret_id()?;
        if let Ok(mut table) = self.table.lock() {
            if table.len() >= MAX_SESSIONS {
                let (idle, absolute) = (self.idle, self.absolute);
                table.retain(|_, s| now - s.last_seen < idle && now - s.created < absolute);
                if table.len() >= MAX_SESSIONS {
                    // Evict the stalest session rather than refuse a legitimate sign-in.
                    if let Some(oldest) = table
                        .iter()
                        .min_by_key(|(_, s)| s.last_seen)
                        .map(|(k, _)| k.clone())
                    {
                        table.remove(&oldest);
                    }
                }
            }
            table.insert(
                id.clone(),
                Session {
                    principal,
                    created: now,
                    last_seen: now,
                },
            );
        }
        Some(id)
    }

    /// The principal of a live session, refreshing its idle timer.
    pub fn get(&self, id: &str, now: DateTime<Utc>) -> Option<Principal> {
        match self.lookup(id, now) {
            Lookup::Live(principal) => Some(principal),
            Lookup::Expired(_) | Lookup::Unknown => None,
        }
    }

    /// Like [`Sessions::get`], but tells an expiry (which is audited) from an unknown id.
    pub fn lookup(&self, id: &str, now: DateTime<Utc>) -> Lookup {
        let Ok(mut table) = self.table.lock() else {
            return Lookup::Unknown;
        };
        let Some(session) = table.get_mut(id) else {
            return Lookup::Unknown;
        };
        if now - session.last_seen >= self.idle || now - session.created >= self.absolute {
            let principal = session.principal.clone();
            table.remove(id);
            return Lookup::Expired(principal);
        }
        session.last_seen = now;
        Lookup::Live(session.principal.clone())
    }

    /// Ends every session of the principal with this actor id (a user disabled or given other
    /// roles signs in again, so no session keeps grants the store no longer holds).
    pub fn end_all_for(&self, actor_id: &str) {
        if let Ok(mut table) = self.table.lock() {
            table.retain(|_, s| s.principal.actor_id() != actor_id);
        }
    }

    /// Ends a session.
    pub fn remove(&self, id: &str) {
        if let Ok(mut table) = self.table.lock() {
            table.remove(id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_logout() {
        let s = Sessions::new(30, 12);
        let t0 = Utc::now();
        let id = s.create(Principal::Bootstrap, t0).unwrap();
        assert_eq!(id.len(), 32);
        assert!(s.get(&id, t0 + Duration::minutes(29)).is_some());
        assert!(s.get(&id, t0 + Duration::minutes(58)).is_some());
        assert!(
            s.get(&id, t0 + Duration::minutes(89)).is_none(),
            "idle timeout"
        );
        let id = s.create(Principal::Bootstrap, t0).unwrap();
        let mut t = t0;
        for _ in 0..30 {
            t += Duration::minutes(25);
            if s.get(&id, t).is_none() {
                break;
            }
        }
        assert!(
            t - t0 <= Duration::hours(12) + Duration::minutes(25),
            "absolute timeout"
        );
        let id = s.create(Principal::Bootstrap, t0).unwrap();
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
        let user = Principal::User {
            id: "u1".into(),
            name: "ada".into(),
            grants: Vec::new(),
        };
        let (a, b) = (
            s.create(user.clone(), t0).unwrap(),
            s.create(user, t0).unwrap(),
        );
        let admin = s.create(Principal::Bootstrap, t0).unwrap();
        s.end_all_for("user:u1");
        assert!(s.get(&a, t0).is_none() && s.get(&b, t0).is_none());
        assert!(s.get(&admin, t0).is_some());
        assert!(s.get("unknown", t0).is_none());
    }
}
