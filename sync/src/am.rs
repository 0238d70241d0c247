//! Guarded calls into Automerge's sync protocol.
//!
//! Automerge parses sync messages itself, but a few fields it trusts would let a hostile peer
//! make it allocate gigabytes (a Bloom filter's probe count sizes a `Vec`) or divide by zero
//! (a filter with zero bits). Those are checked here before Automerge sees the message, and
//! every call runs under `catch_unwind` on a copy, so a panic inside Automerge is contained to
//! the one document: the copy is dropped and the document is rejected for the session.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash, ReadDoc};

use crate::wire::{MAX_HEADS, varint};

/// Most `have` summaries in one message. Automerge sends one.
const MAX_HAVES: usize = 16;
/// Most explicitly needed hashes in one message.
const MAX_NEED: usize = 4096;
/// Bloom filter parameters Automerge uses are 10 bits per entry and 7 probes; allow headroom.
const MAX_BLOOM_BITS_PER_ENTRY: u64 = 64;
const MAX_BLOOM_PROBES: u64 = 64;

/// Decode a peer's sync message and check the fields Automerge trusts.
pub(crate) fn decode_message(bytes: &[u8]) -> Result<sync::Message, String> {
    let msg = catch_unwind(|| sync::Message::decode(bytes))
        .map_err(|_| "automerge panicked while decoding the sync message".to_owned())?
        .map_err(|e| format!("malformed automerge sync message: {e}"))?;
    if msg.heads.len() > MAX_HEADS {
        return Err(format!("sync message lists {} heads", msg.heads.len()));
    }
    if msg.need.len() > MAX_NEED {
        return Err(format!("sync message needs {} changes", msg.need.len()));
    }
    if msg.have.len() > MAX_HAVES {
        return Err(format!("sync message has {} bloom filters", msg.have.len()));
    }
    for have in &msg.have {
        if have.last_sync.len() > MAX_HEADS {
            return Err("sync message bloom filter has too many heads".to_owned());
        }
        check_bloom(&have.bloom.to_bytes())?;
    }
    Ok(msg)
}

/// An encoded Bloom filter is empty, or `entries | bits_per_entry | probes | bits`.
fn check_bloom(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    let bad = || "sync message has a malformed bloom filter".to_owned();
    let (entries, a) = varint::get(bytes).map_err(|_| bad())?;
    let (bits_per_entry, b) = varint::get(&bytes[a..]).map_err(|_| bad())?;
    let (probes, _) = varint::get(&bytes[a + b..]).map_err(|_| bad())?;
    if entries > 0
        && (bits_per_entry == 0
            || bits_per_entry > MAX_BLOOM_BITS_PER_ENTRY
            || probes == 0
            || probes > MAX_BLOOM_PROBES)
    {
        return Err(format!(
            "sync message bloom filter has unsupported parameters ({bits_per_entry} bits per entry, {probes} probes)"
        ));
    }
    Ok(())
}

/// Apply `msg` to `doc` and `state`, containing any panic. On `Err` both may be half-updated and
/// must be dropped by the caller (they are copies).
pub(crate) fn receive(
    doc: &mut Automerge,
    state: &mut sync::State,
    msg: sync::Message,
) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| doc.receive_sync_message(state, msg))) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("automerge could not apply the changes: {e}")),
        Err(_) => Err("automerge panicked while applying the changes".to_owned()),
    }
}

/// Whether `msg` comes from a peer that holds nothing of the document and can take it whole:
/// no heads, no changes, and the flags section Automerge added together with whole-document
/// (V2) messages. Automerge's own answer to it is the sender's full `save()` (`send_doc`).
pub(crate) fn asks_for_everything(msg: &sync::Message) -> bool {
    msg.heads.is_empty() && msg.changes.is_empty() && msg.flags.is_some()
}

/// The answer to a message that [`asks_for_everything`], built from a document's stored
/// compacted bytes and heads without loading it. It carries what Automerge's own answer
/// carries (the whole document, our heads, no request) except the Bloom filter of our changes,
/// which only serves to stop the peer from sending back changes we hold; a peer that holds
/// nothing has none to send, and with an empty `have` it sends only what we `need` (nothing).
pub(crate) fn whole_doc_message(heads: Vec<ChangeHash>, bytes: Vec<u8>) -> sync::Message {
    let mut flags = sync::MessageFlags::new();
    flags.set(sync::MessageFlags::SUPPORTS_SYNC_RESET);
    sync::Message {
        heads,
        need: Vec::new(),
        have: Vec::new(),
        changes: bytes.into(),
        flags: Some(flags),
        version: sync::MessageVersion::V2,
    }
}

/// The magic bytes that open every Automerge storage chunk, and the type byte of a whole
/// document (as opposed to a change or a compressed change).
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;

/// Whether `bytes` are exactly one Automerge document chunk whose checksum matches its
/// content: `magic | checksum (4) | type 0 | uLEB length | data`, with the checksum the first
/// four bytes of SHA-256 over `type | length | data`, as Automerge computes it. Costs one
/// SHA-256 pass (about 1.5 µs for a 2 KB conversation), not a load.
pub fn is_whole_document(bytes: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let Some(rest) = bytes.strip_prefix(&CHUNK_MAGIC[..]) else {
        return false;
    };
    if rest.len() < 5 || rest[4] != CHUNK_DOCUMENT {
        return false;
    }
    let (checksum, typed) = rest.split_at(4);
    let Ok((len, n)) = varint::get(&typed[1..]) else {
        return false;
    };
    let data = &typed[1 + n..];
    if data.len() as u64 != len {
        return false;
    }
    let digest = Sha256::digest(typed);
    digest[..4] == *checksum
}

/// Receive a message that carries one whole document into an empty one, strictly: the chunk
/// must be a document whose checksum and heads verify and which loads with no change left
/// waiting for a missing dependency. On success the loaded document is returned with the
/// bytes it was loaded from, which the host may keep as they are (they load to exactly this
/// document again). `None` when the message is not such a document: the caller falls back to
/// [`receive`], which is lenient in what it applies.
pub(crate) fn receive_whole(
    state: &mut sync::State,
    msg: &sync::Message,
) -> Option<(Automerge, Vec<u8>)> {
    let (mut doc, bytes) = load_whole(msg)?;
    receive_loaded(state, msg, &mut doc).then_some((doc, bytes))
}

/// The load half of [`receive_whole`]: no state, so it can run on any thread ahead of the
/// session's own, in order, processing of the message.
pub(crate) fn load_whole(msg: &sync::Message) -> Option<(Automerge, Vec<u8>)> {
    if msg.changes.len() != 1 || msg.heads.is_empty() {
        return None;
    }
    let bytes = msg.changes.iter().next()?;
    if !is_whole_document(bytes) {
        return None;
    }
    let opts = automerge::LoadOptions::new()
        .on_partial_load(automerge::OnPartialLoad::Error)
        .verification_mode(automerge::VerificationMode::Check);
    let doc = catch_unwind(AssertUnwindSafe(|| {
        Automerge::load_with_options(bytes, opts)
    }))
    .ok()?
    .ok()?;
    if !doc.get_missing_deps(&[]).is_empty() {
        return None;
    }
    Some((doc, bytes.to_vec()))
}

/// The state half of [`receive_whole`], for `doc` loaded from `msg`'s one chunk: `state` ends
/// as Automerge's own `receive` of the whole message would leave it. The message is received
/// without its changes into the loaded document, and the one field that differs for a message
/// without changes (`last_sent_heads`, set when the peer's heads equal ours before the apply)
/// is put back, so that our answer acknowledges the document as it would. On `false` nothing
/// changed.
pub(crate) fn receive_loaded(
    state: &mut sync::State,
    msg: &sync::Message,
    doc: &mut Automerge,
) -> bool {
    let without_changes = sync::Message {
        heads: msg.heads.clone(),
        need: msg.need.clone(),
        have: msg.have.clone(),
        changes: sync::ChunkList::empty(),
        flags: msg.flags,
        version: msg.version.clone(),
    };
    let mut next = state.clone();
    let last_sent = next.last_sent_heads.clone();
    if receive(doc, &mut next, without_changes).is_err() {
        return false;
    }
    next.last_sent_heads = last_sent;
    *state = next;
    true
}

/// A whole document loaded ahead of its message's processing.
pub(crate) struct Preloaded {
    pub(crate) doc: crate::ids::DocId,
    /// The sync message it was loaded from, byte for byte.
    pub(crate) raw: Vec<u8>,
    pub(crate) loaded: Automerge,
    pub(crate) prepared: Option<crate::host::Prepared>,
}

/// Loads, on up to `threads` threads, the whole documents that `frame` sends for the documents
/// `wanted` says we lack, ahead of the session's processing: on a first sync this load is
/// nearly all of the receiver's Automerge work, and the documents are independent. Each entry
/// holds the message bytes it was loaded from, so it is used only for exactly that message.
pub(crate) fn preload(
    messages: Vec<(crate::ids::DocId, &[u8])>,
    threads: usize,
    prepare: Option<crate::host::Prepare>,
) -> Vec<Preloaded> {
    let load = |(doc, raw): &(crate::ids::DocId, &[u8])| {
        let msg = decode_message(raw).ok()?;
        let (loaded, _) = load_whole(&msg)?;
        let prepared = prepare.and_then(|p| catch_unwind(AssertUnwindSafe(|| p(&loaded))).ok());
        Some(Preloaded {
            doc: *doc,
            raw: raw.to_vec(),
            loaded,
            prepared,
        })
    };
    let threads = threads.clamp(1, 8).min(messages.len().max(1));
    if threads <= 1 {
        return messages.iter().filter_map(load).collect();
    }
    let per = messages.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = messages
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().filter_map(load).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// Generate the next message for `state`, containing any panic.
pub(crate) fn generate(
    doc: &Automerge,
    state: &mut sync::State,
) -> Result<Option<sync::Message>, String> {
    catch_unwind(AssertUnwindSafe(|| doc.generate_sync_message(state)))
        .map_err(|_| "automerge panicked while preparing a sync message".to_owned())
}

/// A message that neither carries nor asks for changes: it only states the sender's heads.
pub(crate) fn is_pure_ack(msg: &sync::Message) -> bool {
    msg.changes.is_empty() && msg.need.is_empty()
}

/// Whether `msg` only acknowledges exactly `ours`: no changes, no request, and the same heads as
/// the document holds here. Such a message cannot need a reply or change the document.
pub(crate) fn acknowledges(msg: &sync::Message, ours: &[ChangeHash]) -> bool {
    if !is_pure_ack(msg) || msg.heads.is_empty() {
        return false;
    }
    let mut ours = ours.to_vec();
    ours.sort();
    msg.heads == ours
}

/// What `receive` does to `state` for a message that [`acknowledges`] the document's heads,
/// without the document: every head is known here, so they become the shared heads, nothing
/// sent is still unseen, and nothing is in flight.
pub(crate) fn receive_ack(state: &mut sync::State, msg: sync::Message) {
    state.in_flight = false;
    state.sent_hashes.clear();
    state.last_sent_heads.clone_from(&msg.heads);
    state.shared_heads.clone_from(&msg.heads);
    state.their_have = Some(msg.have);
    state.their_heads = Some(msg.heads);
    state.their_need = Some(msg.need);
}

/// The persisted state for a document, or a fresh one if none is stored (empty) or it cannot be
/// decoded (a fresh state costs one extra round, never correctness).
pub(crate) fn state_from(bytes: &[u8]) -> sync::State {
    if bytes.is_empty() {
        return sync::State::new();
    }
    sync::State::decode(bytes).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_bloom_parameters_are_refused() {
        // entries=1, bits_per_entry=10, probes=u32::MAX
        let mut bloom = Vec::new();
        varint::put(&mut bloom, 1);
        varint::put(&mut bloom, 10);
        varint::put(&mut bloom, u64::from(u32::MAX));
        bloom.extend_from_slice(&[0xff, 0xff]);
        assert!(check_bloom(&bloom).is_err());
        let mut zero_bits = Vec::new();
        varint::put(&mut zero_bits, 5);
        varint::put(&mut zero_bits, 0);
        varint::put(&mut zero_bits, 7);
        assert!(check_bloom(&zero_bits).is_err());
        let mut ok = Vec::new();
        varint::put(&mut ok, 1);
        varint::put(&mut ok, 10);
        varint::put(&mut ok, 7);
        ok.extend_from_slice(&[0, 0]);
        assert!(check_bloom(&ok).is_ok());
    }

    #[test]
    fn hostile_bloom_in_a_real_message_is_refused() {
        // version 0x42, heads [], need [], one have: last_sync [] + bloom bytes, changes []
        let mut bloom = Vec::new();
        varint::put(&mut bloom, 1);
        varint::put(&mut bloom, 10);
        varint::put(&mut bloom, u64::from(u32::MAX));
        bloom.extend_from_slice(&[0xff, 0xff]);
        let mut msg = vec![0x42, 0, 0, 1, 0];
        varint::put(&mut msg, bloom.len() as u64);
        msg.extend_from_slice(&bloom);
        msg.push(0);
        let err = decode_message(&msg).unwrap_err();
        assert!(err.contains("bloom"), "{err}");
    }

    /// The shortcut must leave the state exactly as Automerge's own `receive` would.
    #[test]
    fn an_acknowledgement_is_received_without_the_document() {
        use automerge::transaction::Transactable;
        use automerge::{AutoCommit, ROOT};
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "subject", "boxes").unwrap();
        doc.put(ROOT, "n", 1_u64).unwrap();
        let mut a = doc.document().clone();
        let mut b = Automerge::new();
        let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
        // Run the exchange until b acknowledges a's heads.
        let mut ack = None;
        for _ in 0..10 {
            if let Some(m) = a.generate_sync_message(&mut sa) {
                b.receive_sync_message(&mut sb, m).unwrap();
            }
            match b.generate_sync_message(&mut sb) {
                Some(m) if m.heads == a.get_heads() && is_pure_ack(&m) => {
                    ack = Some(m);
                    break;
                }
                Some(m) => a.receive_sync_message(&mut sa, m).unwrap(),
                None => {}
            }
        }
        let ack = ack.expect("b acknowledges");
        assert!(acknowledges(&ack, &a.get_heads()));
        assert!(!acknowledges(&ack, &[]));
        let mut real = sa.clone();
        let mut doc = a.clone();
        receive(&mut doc, &mut real, ack.clone()).unwrap();
        let mut short = sa.clone();
        receive_ack(&mut short, ack);
        assert_eq!(short.encode(), real.encode());
        assert_eq!(short.shared_heads, real.shared_heads);
        assert_eq!(short.last_sent_heads, real.last_sent_heads);
        assert_eq!(short.their_heads, real.their_heads);
        assert_eq!(short.their_need, real.their_need);
        assert_eq!(short.their_have, real.their_have);
        assert_eq!(short.sent_hashes, real.sent_hashes);
        assert_eq!(short.in_flight, real.in_flight);
        // And neither answers: the peer already holds everything.
        assert!(
            a.generate_sync_message(&mut short)
                .is_none_or(|m| is_pure_ack(&m))
        );
    }

    fn conversation_like(n: usize) -> Automerge {
        use automerge::transaction::Transactable;
        use automerge::{AutoCommit, ObjType, ROOT};
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "subject", "Order PO-1001 is late").unwrap();
        let msgs = doc.put_object(ROOT, "messages", ObjType::Map).unwrap();
        doc.commit();
        for i in 0..n {
            let m = doc
                .put_object(&msgs, format!("m{i}"), ObjType::Map)
                .unwrap();
            doc.put(&m, "body", format!("message {i} about the order"))
                .unwrap();
            doc.commit();
        }
        doc.document().clone()
    }

    /// A receiver that holds nothing, asking: a fresh state's first message.
    fn empty_ask() -> (Automerge, sync::State, sync::Message) {
        let empty = Automerge::new();
        let mut state = sync::State::new();
        let ask = empty.generate_sync_message(&mut state).unwrap();
        (empty, state, ask)
    }

    #[test]
    fn a_whole_document_is_told_from_everything_else() {
        let doc = conversation_like(5);
        let saved = doc.save();
        assert!(is_whole_document(&saved));
        for i in [0, 5, 9, saved.len() / 2, saved.len() - 1] {
            let mut bad = saved.clone();
            bad[i] ^= 0x01;
            assert!(!is_whole_document(&bad), "flipped byte {i}");
        }
        let mut longer = saved.clone();
        longer.push(0);
        assert!(!is_whole_document(&longer));
        assert!(!is_whole_document(&saved[..saved.len() - 1]));
        // One change, not a document.
        let change = doc.get_changes(&[]).pop().unwrap();
        assert!(!is_whole_document(change.raw_bytes()));
        assert!(!is_whole_document(b""));
    }

    /// The snapshot answer makes the receiver hold what Automerge's own answer makes it hold,
    /// leaves its state as Automerge's `receive` would, and its acknowledgement is the same.
    #[test]
    fn a_snapshot_answer_lands_as_automerges_own_does() {
        let sender = conversation_like(20);
        let (_, mut st_ref, ask) = empty_ask();
        assert!(asks_for_everything(&ask));
        // Automerge's own path.
        let mut s_state = sync::State::new();
        let mut s_doc = sender.clone();
        s_doc
            .receive_sync_message(&mut s_state, ask.clone())
            .unwrap();
        let own = s_doc.generate_sync_message(&mut s_state).unwrap();
        let mut ref_doc = Automerge::new();
        let mut st_lenient = st_ref.clone();
        receive(&mut ref_doc, &mut st_ref, own.clone()).unwrap();
        // The snapshot path, on the receiver both ways.
        let snap = whole_doc_message(sender.get_heads(), sender.save());
        assert_eq!(snap.changes.iter().next(), own.changes.iter().next());
        assert!(
            snap.clone().encode().len() <= own.clone().encode().len(),
            "no more bytes than Automerge's own answer"
        );
        let mut st_whole = st_lenient.clone();
        let (whole_doc, bytes) = receive_whole(&mut st_whole, &snap).expect("taken whole");
        assert_eq!(bytes, sender.save());
        let mut lenient_doc = Automerge::new();
        receive(&mut lenient_doc, &mut st_lenient, snap).unwrap();
        for (doc, st) in [(&whole_doc, &st_whole), (&lenient_doc, &st_lenient)] {
            assert_eq!(doc.get_heads(), ref_doc.get_heads());
            assert_eq!(doc.save(), ref_doc.save());
            assert_eq!(st.encode(), st_ref.encode());
            assert_eq!(st.shared_heads, st_ref.shared_heads);
            assert_eq!(st.last_sent_heads, st_ref.last_sent_heads);
            assert_eq!(st.their_heads, st_ref.their_heads);
            assert_eq!(st.their_need, st_ref.their_need);
            assert_eq!(st.sent_hashes, st_ref.sent_hashes);
            assert_eq!(st.in_flight, st_ref.in_flight);
        }
        // Stored as received, the bytes are what the old path stored after a fresh save.
        assert_eq!(bytes, ref_doc.save());
        let (mut a, mut b, mut c) = (st_ref.clone(), st_whole.clone(), st_lenient.clone());
        let ack_ref = ref_doc.generate_sync_message(&mut a).expect("acknowledges");
        let ack_whole = whole_doc
            .generate_sync_message(&mut b)
            .expect("acknowledges");
        let ack_lenient = lenient_doc
            .generate_sync_message(&mut c)
            .expect("acknowledges");
        assert!(is_pure_ack(&ack_ref));
        assert_eq!(ack_whole, ack_ref);
        assert_eq!(ack_lenient.heads, ack_ref.heads);
        assert!(acknowledges(&ack_whole, &sender.get_heads()));
    }

    #[test]
    fn only_a_verified_whole_document_is_taken_whole() {
        let sender = conversation_like(3);
        let (_, state, _) = empty_ask();
        let mut flipped = sender.save();
        let at = flipped.len() - 3;
        flipped[at] ^= 0x40;
        let mut changes = Vec::new();
        for c in sender.get_changes(&[]) {
            changes.extend_from_slice(c.raw_bytes());
        }
        // Only the last change: its dependencies are missing.
        let orphan = sender.get_changes(&[]).pop().unwrap().raw_bytes().to_vec();
        for bytes in [flipped, changes, orphan] {
            let m = whole_doc_message(sender.get_heads(), bytes);
            let mut st = state.clone();
            assert!(receive_whole(&mut st, &m).is_none());
            assert_eq!(st.encode(), state.encode(), "state untouched");
        }
        // No heads: not a whole document answer.
        let m = whole_doc_message(Vec::new(), sender.save());
        assert!(receive_whole(&mut state.clone(), &m).is_none());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_message(b"").is_err());
        assert!(decode_message(b"\x42\xff\xff\xff").is_err());
        assert!(decode_message(b"hello").is_err());
    }
}
