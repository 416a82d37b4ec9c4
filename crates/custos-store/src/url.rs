//! Database URL handling: which backend a URL selects, and how a URL is shown in messages.
//!
//! Owns scheme dispatch and redaction. Must not log or return a URL unredacted: database URLs
//! routinely carry passwords (`postgres://user:secret@host/db`, `?password=…`).

/// The backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Sqlite,
    Postgres,
}

/// Picks the backend from the URL's scheme; anything else is refused rather than guessed.
pub(crate) fn scheme(url: &str) -> Option<Scheme> {
    let (scheme, _) = url.split_once(':')?;
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Some(Scheme::Sqlite),
        "postgres" | "postgresql" => Some(Scheme::Postgres),
        _ => None,
    }
}

/// Whether a SQLite URL names an in-memory database, which every connection would otherwise
/// see as a different empty database.
pub(crate) fn is_sqlite_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// The URL with any password removed: `user:secret@` becomes `user:***@`, and the value of a
/// `password` query parameter becomes `***`. Safe to log and to put in errors.
pub fn redact_url(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    if userinfo.contains(':') {
                        format!("{user}:***@{host}")
                    } else {
                        format!("{user}@{host}")
                    }
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite:///var/lib/custos.db"), Some(Scheme::Sqlite));
        assert_eq!(scheme("sqlite::memory:"), Some(Scheme::Sqlite));
        assert_eq!(scheme("postgres://h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("PostgreSQL://h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("mysql://h/db"), None);
        assert_eq!(scheme("custos.db"), None);
        assert!(is_sqlite_memory("sqlite::memory:"));
        assert!(!is_sqlite_memory("sqlite:///tmp/x.db"));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/custos"),
            "postgres://app:***@db:5432/custos"
        );
        assert_eq!(
            redact_url("mysql://app:p@ss@db/x?password=hunter2&sslmode=require"),
            "mysql://app:***@db/x?password=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert!(!redact_url("oracle://u:topsecret@h").contains("topsecret"));
    }
}
