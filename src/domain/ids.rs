//! Identifiers: org ids, user names, and UUID helpers.

use serde::{Deserialize, Serialize};
use std::fmt;

use super::DomainError;

/// An org's id, chosen by the org (e.g. `acme-retail`): 1–64 chars of `a-z 0-9 - _ .`.
/// It is written into every conversation document, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrgId(String);

impl OrgId {
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        if ok {
            Ok(OrgId(s.to_string()))
        } else {
            Err(DomainError::invalid(
                "org id",
                format!(
                    "{s:?} is not a valid org id: use 1-64 characters of a-z, 0-9, '-', '_' or '.'"
                ),
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrgId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        OrgId::parse(&s)
    }
}
impl From<OrgId> for String {
    fn from(o: OrgId) -> String {
        o.0
    }
}
impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A local user's name: 1–64 chars of `a-z A-Z 0-9 - _ . @`.
pub fn validate_user_name(s: &str) -> Result<(), DomainError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "name",
            format!(
                "{s:?} is not a valid user name: use 1-64 characters of letters, digits, '-', '_', '.' or '@'"
            ),
        ))
    }
}

/// A new time-ordered id (UUID v7): conversation and message ids sort by creation time.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids() {
        assert!(OrgId::parse("acme-retail.eu_1").is_ok());
        for bad in ["", "Acme", "a b", "x/y", &"a".repeat(65)] {
            assert!(OrgId::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn user_names() {
        assert!(validate_user_name("alice@example.com").is_ok());
        assert!(validate_user_name("bob smith").is_err());
        assert!(validate_user_name("").is_err());
    }
}
