//! Collects the records one call produces and packs them into as few frames as the limits allow.

use crate::wire::{
    FeedEntry, MAX_FEED_ENTRIES, MAX_FRAME_BYTES, MAX_RECORDS_PER_FRAME, Record, encode_record,
    varint,
};

/// Upper bound on a frame header: magic, version, frame number, record count.
const HEADER_MAX: usize = 4 + 1 + 10 + 10;

#[derive(Default)]
pub(crate) struct Outbox {
    records: Vec<Record>,
    /// Records that claim nothing about what this call stores (see [`Staged`]): packed into
    /// frames of their own, ahead of the others.
    early: Vec<Record>,
    ack: Option<u64>,
    /// Indexes of records that must start a new frame, ascending.
    cuts: Vec<usize>,
    /// The same for `early`.
    early_cuts: Vec<usize>,
}

impl Outbox {
    pub(crate) fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// A record that may reach the peer before this call's writes are durable.
    pub(crate) fn push_early(&mut self, record: Record) {
        self.early.push(record);
    }

    /// End the current frame here: the next record starts a new one. The peer processes a
    /// frame at a time and answers each, so splitting a batch of requests lets it answer the
    /// first part while we are still busy with something else.
    pub(crate) fn cut(&mut self) {
        let at = self.records.len();
        if at > 0 && self.cuts.last() != Some(&at) {
            self.cuts.push(at);
        }
        let at = self.early.len();
        if at > 0 && self.early_cuts.last() != Some(&at) {
            self.early_cuts.push(at);
        }
    }

    /// Add a FEED range. Consecutive ranges are merged into one record while it stays within
    /// the entry limit, so an idle stretch of the feed costs one small record, not many.
    pub(crate) fn feed(&mut self, from: u64, to: u64, entries: Vec<FeedEntry>) {
        if let Some(Record::Feed {
            to: last_to,
            entries: last,
            ..
        }) = self.records.last_mut()
            && *last_to == from
            && last.len() + entries.len() <= MAX_FEED_ENTRIES
            && entries_bytes(last) + entries_bytes(&entries) <= FEED_RECORD_TARGET_BYTES
        {
            *last_to = to;
            last.extend(entries);
            return;
        }
        self.records.push(Record::Feed { from, to, entries });
    }

    /// Remember the latest cursor to acknowledge; sent once, after everything else.
    pub(crate) fn ack(&mut self, cursor: u64) {
        self.ack = Some(cursor);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty() && self.early.is_empty() && self.ack.is_none()
    }

    /// [`Outbox::into_frames`], the early records' frames first and apart.
    pub(crate) fn into_staged(mut self, next_seq: &mut u64, target: usize) -> Staged {
        let early = std::mem::take(&mut self.early);
        let early = pack(
            &early,
            &std::mem::take(&mut self.early_cuts),
            next_seq,
            target,
        );
        let late = self.into_frames(next_seq, target);
        Staged { early, late }
    }

    /// Encode into frames numbered from `*next_seq`, each at most `target` bytes unless a single
    /// record is larger (records are bounded so that one always fits in [`MAX_FRAME_BYTES`]).
    pub(crate) fn into_frames(mut self, next_seq: &mut u64, target: usize) -> Vec<Vec<u8>> {
        if let Some(cursor) = self.ack {
            self.records.push(Record::Ack { cursor });
        }
        let mut records = std::mem::take(&mut self.early);
        let shift = records.len();
        records.append(&mut self.records);
        let mut cuts = std::mem::take(&mut self.early_cuts);
        cuts.extend(self.cuts.iter().map(|c| c + shift));
        cuts.dedup();
        pack(&records, &cuts, next_seq, target)
    }
}

/// One call's frames: `early` ones carry only records that claim nothing about what the call
/// stores — requests for documents we hold nothing of, and documents sent whole from what is
/// already durable here — so the host may send them before its writes of the call are
/// durable (the peer starts on them while we commit); `late` ones must wait for that. Frames
/// are numbered in that order: send `early` first, then `late`.
#[derive(Debug, Default)]
pub struct Staged {
    pub early: Vec<Vec<u8>>,
    pub late: Vec<Vec<u8>>,
}

impl Staged {
    /// All frames in order.
    pub fn all(mut self) -> Vec<Vec<u8>> {
        self.early.append(&mut self.late);
        self.early
    }
}

/// Encodes `records` into frames numbered from `*next_seq`, at most `target` bytes each unless
/// one record is larger, starting a new frame at each index in `cuts` (ascending).
fn pack(records: &[Record], cuts: &[usize], next_seq: &mut u64, target: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut count = 0usize;
    let mut cuts = cuts.iter().peekable();
    for (i, record) in records.iter().enumerate() {
        let bytes = encode_record(record);
        let cut_here = cuts.next_if_eq(&&i).is_some();
        let full = count == MAX_RECORDS_PER_FRAME
            || (count > 0 && cut_here)
            || (count > 0 && HEADER_MAX + body.len() + bytes.len() > target);
        if full {
            frames.push(finish(next_seq, count, &body));
            body.clear();
            count = 0;
        }
        body.extend_from_slice(&bytes);
        count += 1;
    }
    if count > 0 {
        frames.push(finish(next_seq, count, &body));
    }
    frames
}

/// Soft size of one FEED record; the pump starts a new record beyond it.
pub(crate) const FEED_RECORD_TARGET_BYTES: usize = 256 * 1024;

/// Encoded size of a feed entry (upper bound, used for packing only).
pub(crate) fn entry_bytes(e: &FeedEntry) -> usize {
    16 + varint::len(e.seq) + varint::len(e.heads.len() as u64) + 32 * e.heads.len()
}

fn entries_bytes(entries: &[FeedEntry]) -> usize {
    entries.iter().map(entry_bytes).sum()
}

fn finish(next_seq: &mut u64, count: usize, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_MAX + body.len());
    crate::wire::encode_header(&mut frame, *next_seq, count);
    frame.extend_from_slice(body);
    *next_seq += 1;
    debug_assert!(
        frame.len() <= MAX_FRAME_BYTES,
        "outbox built an oversized frame"
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DocId;
    use crate::wire::decode_frame;

    #[test]
    fn packs_many_records_and_numbers_frames() {
        let mut out = Outbox::default();
        for i in 0..10u8 {
            out.push(Record::Sync {
                doc: DocId([i; 16]),
                message: vec![0x42; 1000],
            });
        }
        out.ack(7);
        let mut seq = 5;
        let frames = out.into_frames(&mut seq, 3000);
        assert!(frames.len() > 1);
        assert_eq!(seq, 5 + frames.len() as u64);
        let decoded: Vec<_> = frames.iter().map(|f| decode_frame(f).unwrap()).collect();
        assert_eq!(decoded[0].seq, 5);
        let all: Vec<_> = decoded.into_iter().flat_map(|f| f.records).collect();
        assert_eq!(all.len(), 11);
        assert_eq!(all.last(), Some(&Record::Ack { cursor: 7 }));
    }

    #[test]
    fn a_cut_starts_a_new_frame() {
        let mut out = Outbox::default();
        out.cut();
        for i in 0..5u8 {
            out.push(Record::Unavailable {
                doc: DocId([i; 16]),
            });
            if i % 2 == 1 {
                out.cut();
                out.cut();
            }
        }
        out.ack(3);
        let frames = out.into_frames(&mut 0, 1 << 20);
        let counts: Vec<usize> = frames
            .iter()
            .map(|f| decode_frame(f).unwrap().records.len())
            .collect();
        assert_eq!(counts, vec![2, 2, 2], "the ack rides in the last frame");
    }

    #[test]
    fn merges_contiguous_feed_ranges() {
        let mut out = Outbox::default();
        out.feed(0, 5, vec![]);
        out.feed(5, 9, vec![]);
        out.feed(10, 12, vec![]);
        let frames = out.into_frames(&mut 0, 1 << 20);
        let f = decode_frame(&frames[0]).unwrap();
        assert_eq!(
            f.records,
            vec![
                Record::Feed {
                    from: 0,
                    to: 9,
                    entries: vec![]
                },
                Record::Feed {
                    from: 10,
                    to: 12,
                    entries: vec![]
                }
            ]
        );
    }
}
