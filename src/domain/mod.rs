//! Pure domain: identifiers, the conversation document schema and its rules.
//! No I/O and no async here; the store and the service call into it.

pub mod activity;
pub mod attachment;
pub mod audience;
pub mod commands;
pub mod conversation;
pub mod doc;
pub mod hooks;
pub mod ids;
pub mod notify;
pub mod policy;
pub mod search;
pub mod summary;
pub mod team;
pub mod topics;

pub use conversation::*;
pub use ids::*;
pub use summary::{Facet, Summary};

/// A rule of the domain was broken by a request. Each variant maps to one HTTP status in `api`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    /// The input is malformed or out of range (400).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The input is well-formed but not allowed for this conversation (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The request conflicts with what is already stored (409).
    #[error("{0}")]
    Conflict(String),
}

impl DomainError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Limits on user input; documented in the README.
pub mod limits {
    pub const SUBJECT_CHARS: usize = 200;
    pub const REFERENCE_ID_CHARS: usize = 100;
    pub const BODY_BYTES: usize = 64 * 1024;
    pub const TOPIC_REF_CHARS: usize = 100;
    pub const TOPIC_LABEL_CHARS: usize = 200;
    pub const TOPIC_URL_CHARS: usize = 2000;
    pub const ORG_NAME_CHARS: usize = 200;
    pub const IDEMPOTENCY_KEY_CHARS: usize = 200;
    /// Messages one conversation may hold: a thread past it should start anew.
    pub const MESSAGES_PER_CONVERSATION: usize = 10_000;
    /// History entries one conversation may hold.
    pub const HISTORY_PER_CONVERSATION: usize = 20_000;
    /// The changes one peer sends us for one conversation in one exchange, as raw Automerge
    /// bytes: a reply with a full 64 KiB body is about 66 KiB.
    pub const CHANGE_BYTES: usize = 512 * 1024;
    /// One stored conversation, all its changes together.
    pub const CONVERSATION_BYTES: usize = 16 * 1024 * 1024;
}
