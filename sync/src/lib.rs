//! # Parley sync engine
//!
//! Keeps the conversations two Parley nodes share in step: a supplier's node and a retailer's,
//! or two sites of one org. Each conversation is one Automerge document named by a 16-byte id.
//! The engine does no I/O: bytes and state in, bytes and state out. The main crate moves the
//! bytes (WebSocket), stores the state (redb), and decides what is shared with whom.
//!
//! ## Shape
//!
//! One [`Session`] per connected peer; one [`Host`] view of the local node per call:
//!
//! ```text
//! let mut s = Session::new(Config::default());
//! send(s.start(&mut host)?);                      // on connect, both sides, without waiting
//! loop {
//!     match event {
//!         Frame(bytes)  => send(s.receive(&bytes, &mut host)?),
//!         FeedGrew      => send(s.local_changed(&mut host)?), // local edit or doc from another peer
//!     }
//!     show(s.progress());                         // "first sync …", "N waiting"
//! }
//! // Any Err ends the session: close the connection; reconnect unless err.is_permanent().
//! ```
//!
//! ## The two ideas
//!
//! 1. **Discovery is by changes feed, not by document.** Every node keeps a local, monotonic
//!    feed: a sequence number per document change, each document listed once at its latest
//!    seq (like CouchDB's `_changes`). Each side persists a *cursor* into the other's feed:
//!    "I hold, durably, everything your feed listed up to seq N". On connect each side sends
//!    its cursor, and the other answers with only the documents changed since — shared with
//!    that peer — and their heads. A reconnect with nothing changed is one exchange of two
//!    small HELLOs whatever the number of stored documents; no per-document round is run.
//! 2. **Documents that differ run Automerge's own sync protocol** (`automerge::sync`), with
//!    many documents' messages batched per frame and the per-(peer, document)
//!    `sync::State` persisted through the host, so a reconnect does not resend what the peer
//!    already has. A document announced with heads the receiver already holds needs no round.
//!
//! ## Frames
//!
//! Every frame is `"PRLY" | version | frame number | record count | records`; each record is
//! `tag | length | body` (details and limits in [`wire`]):
//!
//! | record        | says                                                                  |
//! |---------------|-----------------------------------------------------------------------|
//! | `HELLO`       | my feed id and end; my cursor into your feed                          |
//! | `FEED`        | my feed positions `(from, to]`: these shared docs changed, with heads |
//! | `ACK`         | I hold everything of your feed up to here                             |
//! | `SYNC`        | one Automerge sync message for one document, byte for byte            |
//! | `UNAVAILABLE` | I cannot give you that document (whether or not it exists here)       |
//! | `REJECT`      | that document stops syncing for this session, because …               |
//!
//! `SYNC`, `UNAVAILABLE` and `REJECT` mirror automerge-repo's `sync` / `doc-unavailable`
//! messages, so an adapter to that protocol can pass document traffic through unchanged.
//!
//! ## Message sequences
//!
//! **Connect.** A's feed ends at 120 and B last held up to A:100; B's feed ends at 95 and A
//! last held up to B:95.
//!
//! ```text
//! A ── HELLO(feed fA, high 120, cursor fB:95) ──▶ B
//! A ◀── HELLO(feed fB, high 95, cursor fA:100) ── B
//! ```
//!
//! Each side now knows where to start announcing (a cursor into another feed incarnation, or
//! past its end, restarts at 0; both sides apply the same rule, so they agree without asking).
//!
//! **Catch-up.** A announces its feed after 100, in pages, at most `Config::window` documents
//! unconfirmed at a time. B compares heads and asks only for what it lacks: at most
//! `Config::max_requests` documents at once, in frames of `Config::requests_per_frame`
//! requests. A answers frame by frame, so it prepares the next answer while B stores the last
//! one, and B asks for more as each answer is stored.
//!
//! ```text
//! A ── FEED (100,120] [d1@104 heads h1, d2@119 heads h2] ──▶ B   B holds h1: d1 done
//! A ◀── SYNC d2 (B's heads, bloom of what B has) ─────────── B   B lacks h2: one request
//! A ── SYNC d2 (the changes B lacks) ──────────────────────▶ B   applied to a copy,
//!                                                                host validates + stores,
//!                                                                sync state saved, cursor 120
//! A ◀── SYNC d2 (B's new heads) ; ACK 120 ────────────────── B
//! A: holds those heads: sync state advanced, no reply
//! ```
//!
//! The last message only acknowledges heads A holds; A advances its sync state from its heads
//! index ([`Host::heads`]) without loading the document, and does not answer.
//!
//! B's cursor only passes a feed position once that document is stored (it is
//! `min(end of announced range, lowest still-missing seq - 1)`), and it is saved after the
//! store. A connection cut anywhere resumes at the first document not yet held: nothing
//! delivered is sent again, nothing is skipped.
//!
//! **First sync from stored bytes.** When B's request says it holds nothing of a document
//! (no heads, no changes) and the host has the document stored as one compacted save
//! ([`Host::stored_snapshot`]), A answers with those bytes as a whole-document message, the
//! answer Automerge itself would build with a load and a `save()`, without either. B loads a
//! whole document into an empty one once, strictly, on [`Config::load_threads`] threads ahead
//! of the frame's in-order processing (with the host's [`Config::prepare`] work beside it),
//! and offers the host the received bytes to store as they are ([`DocUpdate::received`]).
//! Requests for documents we hold nothing of and such answers claim nothing about what the
//! call stores, so [`Session::receive_batch`] returns them as `early` frames the host may
//! send before its commit.
//!
//! **Live push.** The host stores a local edit (feed seq 121) and calls
//! [`Session::local_changed`]:
//!
//! ```text
//! A ── FEED (120,121] [d2@121 heads h3] (+ SYNC d2 if an exchange about d2 is open) ──▶ B
//! ```
//!
//! and the catch-up steps follow for that one document. A document B stores from A enters B's
//! feed too, which is how a change travels on to B's other peers (another site of the org);
//! B does not announce it back to A when A already told B it holds exactly those heads.
//!
//! **Reject.** Incoming changes are applied to a copy of the stored document; the host's
//! [`Host::store_doc`] sees before and after and may refuse:
//!
//! ```text
//! A ◀── SYNC d3 (changes rewriting participants) ── B
//! A: copy + apply → store_doc → Rejected("participants cannot change after creation")
//! A ── REJECT d3 "participants cannot change after creation" ──▶ B
//! ```
//!
//! Nothing of the batch lands, A's sync state for d3 is not saved, d3 stops syncing in both
//! directions for this session, and every other document carries on. A's cursor passes d3's
//! announcement (it was judged); d3 is offered again only when B's copy changes again. A
//! sync message Automerge cannot parse or apply is handled the same way.
//!
//! **Reconnect, nothing changed.**
//!
//! ```text
//! A ── HELLO(high 121, cursor fB:97) ──▶ B     both cursors are at the other's end:
//! A ◀── HELLO(high 97, cursor fA:121) ── B     nothing to announce, nothing to send
//! ```
//!
//! About 60 bytes in one flight, for ten documents or ten thousand.
//!
//! ## Isolation
//!
//! The engine sends a document's id or content only if [`Host::is_shared`] says so, checked at
//! every send point (announcements, replies, pushes) in addition to the host's own filtering of
//! [`Host::feed_since`]. A request naming an unshared id — existing or not — is answered
//! `UNAVAILABLE`, and a peer's content for a document is accepted only if it is shared or if
//! we asked for it after the peer announced it as new (the host's `store_doc` then checks that
//! the peer may create it).
//!
//! ## Transport assumptions
//!
//! Like Automerge's sync protocol, a session assumes an ordered, reliable stream (WebSocket over
//! TCP) that may be cut at any point. Frame numbers make the rest safe: a duplicated frame is
//! dropped; a missing or reordered one fails the session with
//! [`ProtocolError::FrameOutOfOrder`], and the host reconnects. Because documents, sync states
//! and cursors are persisted only after what they depend on, a new session simply resumes.
//!
//! ## Errors
//!
//! Problems with one document (malformed Automerge message, Automerge error or panic, rule
//! violation, message over the size limit) are contained to it: a `REJECT` record and an
//! [`Event`]. Problems with the stream ([`DecodeError`], [`ProtocolError`]) or the store
//! ([`HostError`]) end the session with a [`SessionError`] that says whether retrying helps.
//!
//! ## Known limits
//!
//! - Feed seqs reveal to a peer how many changes the node made in total (not which documents).
//! - A peer that already knows the id of a document it is not party to can tell, by timing or
//!   by whether we ask for it after announcing it, that the id exists here. Ids are random
//!   UUIDs; they are never sent to a peer that is not party.
//! - A document whose sync message would exceed [`wire::MAX_SYNC_MESSAGE_BYTES`] cannot sync;
//!   it is rejected for the session with a reason saying so.

mod am;
pub mod error;
pub mod host;
pub mod ids;
mod outbox;
pub mod session;
pub mod wire;

pub use am::is_whole_document;
pub use error::{ProtocolError, SessionError};
pub use host::{
    BlobStored, BlobWant, DocUpdate, FeedPage, Host, HostError, Prepare, Prepared, Presence,
    Snapshot, StoreError, contains_all,
};
pub use ids::{Cursor, DocId};
pub use outbox::Staged;
pub use session::{Config, Event, MAX_WINDOW, Progress, Session};
pub use wire::{DecodeError, FeedEntry, Frame, Record, decode_frame, encode_frame};
