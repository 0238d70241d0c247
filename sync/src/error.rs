//! Session-level errors. Any of them ends the session: the host closes the connection and, unless
//! [`SessionError::is_permanent`], reconnects with backoff. Nothing half-applied is left behind,
//! because documents, sync states and cursors are each persisted only after what they describe.
//!
//! Problems with one document never appear here: they are contained to that document (a REJECT
//! record and an [`crate::Event`]) and the session goes on.

use std::fmt;

use crate::host::HostError;
use crate::wire::DecodeError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// The peer sent bytes that are not a valid frame.
    Decode(DecodeError),
    /// The peer sent valid frames that break the protocol.
    Protocol(ProtocolError),
    /// The local store failed.
    Host(HostError),
    /// The session already failed; start a new one on a new connection.
    Closed,
}

impl SessionError {
    /// True when reconnecting cannot help until someone changes software or storage.
    pub fn is_permanent(&self) -> bool {
        match self {
            SessionError::Decode(e) => e.is_permanent(),
            // A protocol violation is a bug in one of the two nodes; a fresh session starts
            // from persisted state only, so a reconnect (with backoff) is the right response.
            SessionError::Protocol(_) => false,
            SessionError::Host(e) => e.permanent,
            SessionError::Closed => false,
        }
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Decode(e) => write!(f, "bad frame from peer: {e}"),
            SessionError::Protocol(e) => write!(f, "peer broke the sync protocol: {e}"),
            SessionError::Host(e) => write!(f, "local storage failed during sync: {e}"),
            SessionError::Closed => write!(
                f,
                "sync session already failed; close the connection and start a new session"
            ),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Decode(e) => Some(e),
            SessionError::Protocol(e) => Some(e),
            SessionError::Host(e) => Some(e),
            SessionError::Closed => None,
        }
    }
}

impl From<DecodeError> for SessionError {
    fn from(e: DecodeError) -> Self {
        SessionError::Decode(e)
    }
}

impl From<ProtocolError> for SessionError {
    fn from(e: ProtocolError) -> Self {
        SessionError::Protocol(e)
    }
}

impl From<HostError> for SessionError {
    fn from(e: HostError) -> Self {
        SessionError::Host(e)
    }
}

/// Ways a peer can break the protocol with well-formed frames.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A record other than HELLO arrived before the peer's HELLO.
    HelloMissing,
    /// A second HELLO in one session.
    HelloRepeated,
    /// A frame arrived with a higher number than expected: a frame was lost or reordered.
    FrameOutOfOrder { expected: u64, got: u64 },
    /// A FEED record skipped positions since the last one.
    FeedGap { expected_from: u64, got_from: u64 },
    /// A FEED record's range or entries are inconsistent.
    FeedRange { from: u64, to: u64, detail: String },
    /// The peer announced more documents than the window lets it have unconfirmed.
    WindowExceeded { pending: usize, max: usize },
    /// An ACK for positions never announced.
    AckBeyondAnnounced { ack: u64, announced: u64 },
    /// One frame asked for more file chunks than a frame may.
    BlobWindow { asked: u32, max: u32 },
    /// A file record on a link opened without files (`parley-sync.1`).
    BlobsNotAgreed,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::HelloMissing => write!(f, "a record arrived before HELLO"),
            ProtocolError::HelloRepeated => write!(f, "HELLO arrived twice in one session"),
            ProtocolError::FrameOutOfOrder { expected, got } => write!(
                f,
                "frame {got} arrived while expecting frame {expected}; the transport lost or reordered frames, reconnect"
            ),
            ProtocolError::FeedGap {
                expected_from,
                got_from,
            } => write!(
                f,
                "feed announcement starts at {got_from} but only up to {expected_from} was announced"
            ),
            ProtocolError::FeedRange { from, to, detail } => {
                write!(
                    f,
                    "feed announcement ({from}, {to}] is inconsistent: {detail}"
                )
            }
            ProtocolError::WindowExceeded { pending, max } => write!(
                f,
                "peer has {pending} documents announced and unconfirmed, more than the window of {max}"
            ),
            ProtocolError::BlobWindow { asked, max } => write!(
                f,
                "peer asked for {asked} file chunks in one frame, more than the {max} a frame may ask for"
            ),
            ProtocolError::BlobsNotAgreed => write!(
                f,
                "peer sent a file record on a link opened without files; the peer's software is faulty"
            ),
            ProtocolError::AckBeyondAnnounced { ack, announced } => write!(
                f,
                "peer acknowledged feed position {ack} but only {announced} was announced"
            ),
        }
    }
}

impl std::error::Error for ProtocolError {}
