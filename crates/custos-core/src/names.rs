//! Validated identifiers. A `ModelName` or `FieldName` that exists is well formed, so handlers,
//! SQL and log lines never see an empty, overlong or control-character name.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("{what} must not be empty")]
    Empty {
        /// Which kind of name.
        what: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{what} must be at most {max} characters")]
    TooLong {
        /// Which kind of name.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// The name holds a character outside the allowed set.
    #[error("{what} may only contain {allowed}")]
    BadCharacter {
        /// Which kind of name.
        what: &'static str,
        /// The allowed set, in words.
        allowed: &'static str,
    },
}

fn check(
    value: &str,
    what: &'static str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.chars().count() > max {
        return Err(NameError::TooLong { what, max });
    }
    if !value.chars().all(ok) {
        return Err(NameError::BadCharacter { what, allowed });
    }
    Ok(())
}

/// The URL-safe alphabet of model and tenant names: `a-z A-Z 0-9 . _ -`, starting with a letter
/// or digit.
fn check_url_safe(value: &str, what: &'static str, max: usize) -> Result<(), NameError> {
    const ALLOWED: &str = "letters, digits, '.', '_' and '-', starting with a letter or digit";
    check(value, what, max, ALLOWED, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })?;
    if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(NameError::BadCharacter {
            what,
            allowed: ALLOWED,
        });
    }
    Ok(())
}

/// `Display` as the text itself, and `Deserialize` through the type's `parse`, so a name read
/// from JSON or YAML is validated exactly like one parsed by hand.
macro_rules! validated_text {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// A model's name: 1–64 characters of `a-z A-Z 0-9 . _ -`, starting with a letter or digit.
/// It appears in URLs and token scopes, hence the narrow alphabet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ModelName(String);

impl ModelName {
    /// Longest accepted model name.
    pub const MAX_LEN: usize = 64;

    /// Parses and validates a model name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_url_safe(value, "model name", Self::MAX_LEN)?;
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_text!(ModelName);

/// A tenant: the key domain of a model's pseudonyms. Models of one tenant share pseudonym and
/// format-preserving keys (their pseudonyms join); two tenants' pseudonyms of one value differ.
/// Same alphabet as model names. Models registered without one belong to [`TenantName::DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    /// Longest accepted tenant name.
    pub const MAX_LEN: usize = 64;
    /// The tenant of models registered without one.
    pub const DEFAULT: &'static str = "default";

    /// Parses and validates a tenant name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_url_safe(value, "tenant name", Self::MAX_LEN)?;
        Ok(Self(value.to_owned()))
    }

    /// The default tenant.
    pub fn default_tenant() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// Whether this is the default tenant.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_text!(TenantName);

/// A field (column) name in a model's rows: 1–128 printable ASCII characters without spaces
/// or quotes, so it can be echoed in errors and used as a metric label safely.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct FieldName(String);

impl FieldName {
    /// Longest accepted field name.
    pub const MAX_LEN: usize = 128;

    /// Parses and validates a field name.
    pub fn parse(value: &str) -> Result<Self, NameError> {
        check(
            value,
            "field name",
            Self::MAX_LEN,
            "letters, digits, '.', '_', '-' and ':'",
            |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'),
        )?;
        Ok(Self(value.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

validated_text!(FieldName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        assert!(ModelName::parse("fraud-v3").is_ok());
        assert!(ModelName::parse("").is_err());
        assert!(ModelName::parse("-x").is_err());
        assert!(ModelName::parse("a/b").is_err());
        assert!(ModelName::parse("a b").is_err());
        assert!(ModelName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn field_names() {
        assert!(FieldName::parse("customer.email").is_ok());
        assert!(FieldName::parse("bad\nname").is_err());
        assert!(FieldName::parse("x\"y").is_err());
    }
}
