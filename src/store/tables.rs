//! Every redb table, in one place. Conversation ids are UUIDs stored as `u128` so that v7 ids
//! sort by creation time.
//!
//! Truth: `DOCS` + `CHUNKS` (the Automerge documents), `META["identity"]`, `USERS`, `TOKENS`,
//! `PARTNERS`, `UNREAD` (per-user read state, local to this node), `IDEMPOTENCY`, and the sync
//! records `PEERS`, `INVITES`, `SYNC_STATES`, `PEER_CURSORS`, and `UNDELIVERED` (what the
//! partner's nodes do not hold yet; kept beside the sync states it is settled from).
//! Derived (rebuilt from the documents by `rebuild`): `SUMMARIES`, `FACETS`, `FACET_COUNTS`,
//! `PAIR_COUNTS`, `DUE_PENDING`, `DUE_ORDER`, `UNREAD_ORDER`, `FEED`, `FEED_POS`, the partner feeds (`store::audience`), `HEADS`, `WORDS`, `TEXT_WORDS` (`store::text_words`), `TEAM_ASSIGNEE` (`store::team`), `TOPICS_FOLDED` and the
//! `META` keys `index_version` and `swept_day`.

use redb::TableDefinition;

/// Last full `save()` of each document.
pub const DOCS: TableDefinition<u128, &[u8]> = TableDefinition::new("docs");
/// `save_incremental()` chunks written after the full save, in order: (doc, chunk number).
pub const CHUNKS: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("doc_chunks");
/// Small settings and counters, values JSON or little-endian integers.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Inbox row (JSON [`crate::domain::Summary`]) of each conversation.
pub const SUMMARIES: TableDefinition<u128, &[u8]> = TableDefinition::new("summaries");
/// (facet, last activity ms, id): one entry per filter value a conversation is listed under,
/// ordered for "newest activity first" paging.
pub const FACETS: TableDefinition<(&str, i64, u128), ()> = TableDefinition::new("facets");
/// Number of entries under each facet, so totals need no scan.
pub const FACET_COUNTS: TableDefinition<&str, u64> = TableDefinition::new("facet_counts");
/// Number of conversations under both facets of a pair (`store::pairs`), so two-filter
/// totals need no scan either.
pub const PAIR_COUNTS: TableDefinition<(&str, &str), u64> = TableDefinition::new("pair_counts");
/// (due day, id) of open tasks whose due date is not yet before `swept_day`; the sweep moves
/// them to the `overdue` facet when their day passes.
pub const DUE_PENDING: TableDefinition<(i32, u128), ()> = TableDefinition::new("due_pending");
/// (facet, due day, id) -> last activity ms: the `sort=due` order, once for each of the
/// facets in `due_sort::RANGES` a dated conversation is listed under, so a folder walks only
/// its own dated rows. The activity time lets a row be checked against facets (keyed by
/// activity) without reading it.
pub const DUE_ORDER: TableDefinition<(&str, i32, u128), i64> =
    TableDefinition::new("due_order_by_facet");
/// Index version 8 kept one due-date order for every state under this name.
const DUE_ORDER_V8: TableDefinition<(i32, u128), i64> = TableDefinition::new("due_order");
/// Current heads of each document (32-byte hashes, concatenated), so sync can compare heads
/// without loading documents.
pub const HEADS: TableDefinition<u128, &[u8]> = TableDefinition::new("heads");
/// Changes feed: seq -> conversation; a conversation appears once, at its latest change.
pub const FEED: TableDefinition<u64, u128> = TableDefinition::new("feed");
pub const FEED_POS: TableDefinition<u128, u64> = TableDefinition::new("feed_pos");

/// (user, conversation) for each conversation a user has not read; `UNREAD_COUNT` per user.
pub const UNREAD: TableDefinition<(&str, u128), ()> = TableDefinition::new("unread");
pub const UNREAD_COUNT: TableDefinition<&str, u64> = TableDefinition::new("unread_count");
/// (user, last activity ms, id) for every `UNREAD` mark of a listed conversation: the Unread
/// folder, newest activity first. Derived from `UNREAD` and the inbox rows.
pub const UNREAD_ORDER: TableDefinition<(&str, i64, u128), ()> =
    TableDefinition::new("unread_order");

/// Local users by name (JSON), API tokens by SHA-256 of the token (JSON), partners by org id.
pub const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
pub const PARTNERS: TableDefinition<&str, &[u8]> = TableDefinition::new("partners");
/// (user, Idempotency-Key) -> JSON of what the first request created.
pub const IDEMPOTENCY: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("idempotency");

/// (search term, id): one entry per term of a conversation's subject, reference ID and topic
/// ref (`domain::search`). No activity time, so replies leave it alone. Derived.
pub const WORDS: TableDefinition<(&str, u128), ()> = TableDefinition::new("search_terms");
/// Conversation -> last activity ms of its inbox row: where its facet entries are, so a search
/// can order and filter its candidates by key lookups and decode only the rows it shows.
/// Derived.
pub const ACTIVITY: TableDefinition<u128, i64> = TableDefinition::new("row_activity");
/// Topic records by (kind, ref), JSON [`crate::domain::topics::TopicRecord`].
pub const TOPICS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("topics");
/// (kind, lower-cased ref, ref) of every topic record: list views page and search refs in
/// this order, so "sku-1" finds "SKU-1". Derived from `TOPICS`.
pub const TOPICS_FOLDED: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("topics_folded");
/// Browser sessions by SHA-256 of the session id (JSON); local to this node.
pub const SESSIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("sessions");

/// Conversations changed on this node that no node of the partner org is known to hold yet
/// (`store::delivery`). Local bookkeeping like `UNREAD`: not derived from the documents alone,
/// so a rebuild leaves it alone.
pub const UNDELIVERED: TableDefinition<u128, ()> = TableDefinition::new("undelivered");

/// Creates every table so that read transactions never meet a missing one.
pub fn create_all(tx: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    tx.open_table(DOCS)?;
    tx.open_table(CHUNKS)?;
    tx.open_table(META)?;
    tx.open_table(SUMMARIES)?;
    tx.open_table(FACETS)?;
    tx.open_table(FACET_COUNTS)?;
    tx.open_table(PAIR_COUNTS)?;
    tx.open_table(DUE_PENDING)?;
    tx.open_table(DUE_ORDER)?;
    tx.open_table(UNREAD_ORDER)?;
    tx.open_table(FEED)?;
    tx.open_table(FEED_POS)?;
    tx.open_table(HEADS)?;
    tx.open_table(UNREAD)?;
    tx.open_table(UNREAD_COUNT)?;
    tx.open_table(USERS)?;
    tx.open_table(TOKENS)?;
    tx.open_table(PARTNERS)?;
    tx.open_table(IDEMPOTENCY)?;
    tx.open_table(PEERS)?;
    tx.open_table(INVITES)?;
    tx.open_table(SYNC_STATES)?;
    tx.open_table(PEER_CURSORS)?;
    tx.open_table(WORDS)?;
    tx.open_table(ACTIVITY)?;
    tx.open_table(TOPICS)?;
    tx.open_table(TOPICS_FOLDED)?;
    tx.open_table(SESSIONS)?;
    tx.open_table(UNDELIVERED)?;
    super::audience::create_tables(tx)?;
    super::quota::create_tables(tx)?;
    super::outbox::create_tables(tx)?;
    super::team::create_tables(tx)?;
    super::text_words::create_tables(tx)?;
    super::blobs::create_tables(tx)?;
    Ok(())
}

/// Empties the derived tables before a rebuild.
pub fn clear_derived(tx: &redb::WriteTransaction) -> Result<(), redb::TableError> {
    tx.delete_table(SUMMARIES)?;
    tx.delete_table(FACETS)?;
    tx.delete_table(FACET_COUNTS)?;
    tx.delete_table(PAIR_COUNTS)?;
    tx.delete_table(DUE_PENDING)?;
    tx.delete_table(DUE_ORDER)?;
    tx.delete_table(DUE_ORDER_V8)?;
    tx.delete_table(UNREAD_ORDER)?;
    tx.delete_table(FEED)?;
    tx.delete_table(FEED_POS)?;
    tx.delete_table(HEADS)?;
    tx.delete_table(WORDS)?;
    tx.delete_table(ACTIVITY)?;
    // Index version 4 and older kept search terms with their activity time under this name.
    tx.delete_table(TableDefinition::<(&str, i64, u128), ()>::new("words"))?;
    tx.delete_table(TOPICS_FOLDED)?;
    super::audience::clear_derived(tx)?;
    super::team::clear_derived(tx)?;
    super::text_words::clear_derived(tx)?;
    super::blobs::clear_derived(tx)?;
    create_all(tx)
}

/// Paired peer nodes by node id (JSON [`crate::store::peers::Peer`]).
pub const PEERS: TableDefinition<u128, &[u8]> = TableDefinition::new("peers");
/// Open invites by SHA-256 of their one-time secret (JSON).
pub const INVITES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("invites");
/// Persisted Automerge sync state per (peer, conversation).
pub const SYNC_STATES: TableDefinition<(u128, u128), &[u8]> = TableDefinition::new("sync_states");
/// This node's cursor into each peer's changes feed: (feed id, seq).
pub const PEER_CURSORS: TableDefinition<u128, (u64, u64)> = TableDefinition::new("peer_cursors");
