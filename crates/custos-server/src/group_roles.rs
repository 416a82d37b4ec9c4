//! Group → role mapping for people who sign in through an organization's identity system (an
//! LDAP directory or an OpenID provider), and the ids such people get.
//!
//! Owns the one rule both methods follow: the groups the identity system reports at sign-in are
//! mapped afresh through the configured table, every time — nothing is remembered between
//! sign-ins, so removing someone from a group removes the role at their next sign-in. Group
//! names match without regard to ASCII case (directories and IdPs disagree on case).

use custos_core::RoleBinding;
use custos_core::roles::MAX_BINDINGS;
use std::collections::{BTreeMap, BTreeSet};

/// Group name → the role bindings it gives.
pub type GroupRoles = BTreeMap<String, Vec<RoleBinding>>;

/// Checks a configured table; `section` names it in messages (`ldap`, `oidc`).
pub fn check(section: &str, table: &GroupRoles) -> Result<(), String> {
    if table.is_empty() {
        return Err(format!(
            "{section}.group_roles is empty: nobody could sign in (people whose groups map to \
             no role are refused)"
        ));
    }
    for (group, bindings) in table {
        if group.trim().is_empty() {
            return Err(format!("{section}.group_roles has an empty group name"));
        }
        if bindings.len() > MAX_BINDINGS {
            return Err(format!(
                "{section}.group_roles.{group}: at most {MAX_BINDINGS} role bindings"
            ));
        }
        for binding in bindings {
            binding
                .check()
                .map_err(|e| format!("{section}.group_roles.{group}: {e}"))?;
        }
    }
    Ok(())
}

/// The role bindings the groups give (without duplicates), and the configured names of the
/// groups that matched.
pub fn map_groups(table: &GroupRoles, groups: &[String]) -> (Vec<RoleBinding>, BTreeSet<String>) {
    let mut bindings: Vec<RoleBinding> = Vec::new();
    let mut matched = BTreeSet::new();
    for (group, given) in table {
        if groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
            matched.insert(group.clone());
            for binding in given {
                if !bindings.contains(binding) {
                    bindings.push(binding.clone());
                }
            }
        }
    }
    (bindings, matched)
}

/// An external person's principal id: `prefix` and the identifier, percent-encoded outside a
/// conservative set, so the id is safe in audit records and URLs whatever the identity system
/// sent.
pub fn external_id(prefix: &str, identifier: &str) -> String {
    let mut id = String::from(prefix);
    for byte in identifier.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'@') {
            id.push(char::from(byte));
        } else {
            id.push_str(&format!("%{byte:02X}"));
        }
    }
    id
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn table() -> GroupRoles {
        let mut t = GroupRoles::new();
        t.insert(
            "ml-auditors".into(),
            vec![RoleBinding::parse("auditor", "*").unwrap()],
        );
        t.insert(
            "ml-sre".into(),
            vec![RoleBinding::parse("sre", "*").unwrap()],
        );
        t
    }

    #[test]
    fn groups_map_to_roles_without_regard_to_case() {
        let t = table();
        let (bindings, matched) = map_groups(&t, &["ML-Auditors".into(), "other".into()]);
        assert_eq!(matched.into_iter().collect::<Vec<_>>(), ["ml-auditors"]);
        assert_eq!(bindings, [RoleBinding::parse("auditor", "*").unwrap()]);
        let (bindings, matched) = map_groups(
            &t,
            &["ml-auditors".into(), "ml-sre".into(), "ml-sre".into()],
        );
        assert_eq!(matched.len(), 2);
        assert_eq!(bindings.len(), 2, "duplicates removed");
        let (bindings, matched) = map_groups(&t, &[]);
        assert!(bindings.is_empty() && matched.is_empty());
    }

    #[test]
    fn tables_are_checked() {
        assert!(
            check("oidc", &GroupRoles::new())
                .unwrap_err()
                .contains("oidc.group_roles")
        );
        let mut t = table();
        t.insert(" ".into(), Vec::new());
        assert!(check("ldap", &t).unwrap_err().contains("empty group name"));
        assert_eq!(check("ldap", &table()), Ok(()));
    }

    #[test]
    fn external_ids_are_safe() {
        assert_eq!(external_id("ldap:", "a.b-c_d@e"), "ldap:a.b-c_d@e");
        assert_eq!(external_id("ldap:", "*)(uid=*"), "ldap:%2A%29%28uid%3D%2A");
        assert_eq!(external_id("oidc:", "ä"), "oidc:%C3%A4");
        assert_eq!(external_id("oidc:", "Alice"), "oidc:Alice");
    }
}
