//! Guarded calls into Automerge's sync protocol.
//!
//! Automerge parses sync messages itself, but a few fields it trusts would let a hostile peer
//! make it allocate gigabytes (a Bloom filter's probe count sizes a `Vec`) or divide by zero
//! (a filter with zero bits). Those are checked here before Automerge sees the message, and
//! every call runs under `catch_unwind` on a copy, so a panic inside Automerge is contained to
//! the one document: the copy is dropped and the document is rejected for the session.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};

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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_message(b"").is_err());
        assert!(decode_message(b"\x42\xff\xff\xff").is_err());
        assert!(decode_message(b"hello").is_err());
    }
}
