//! Parley sync engine (docs to come).

mod am;
pub mod error;
pub mod host;
pub mod ids;
mod outbox;
pub mod session;
pub mod wire;

pub use error::{ProtocolError, SessionError};
pub use host::{DocUpdate, FeedPage, Host, HostError, Presence, StoreError, contains_all};
pub use ids::{Cursor, DocId};
pub use session::{Config, Event, MAX_WINDOW, Progress, Session};
pub use wire::{DecodeError, FeedEntry, Frame, Record, decode_frame, encode_frame};
