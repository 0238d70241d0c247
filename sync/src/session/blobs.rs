//! Files over the sync link: fetching the ones this node lacks, a window of chunks at a time,
//! and serving the ones the peer asks for.
//!
//! ```text
//! B ── BLOB_WANT f from 3 count 8 ──▶ A     B holds chunks 0..3 durably (a cut fetch resumes)
//! B ◀── BLOB_CHUNK f 3 … BLOB_CHUNK f 10 ── A   A checks, per request, that a document shared
//!                                               with B refers to f; else BLOB_NONE f
//! B: digest of each chunk checked; stored in order; as chunks land B asks for more, keeping
//!    at most `Config::blob_window` chunks in flight, so document traffic is never queued
//!    behind more than that on the link
//! B: after the last chunk the host hashes the whole file: it is complete, or dropped whole
//! ```
//!
//! A chunk whose digest does not match was damaged on the way: it is asked for again (at most
//! [`MAX_BAD_CHUNKS`] times per file and session). A file that does not hash to its name is
//! dropped and not asked of this peer again in this session. Nothing of a file is kept unless
//! this session asked for exactly that chunk.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use super::Session;
use crate::error::{ProtocolError, SessionError};
use crate::host::{BlobStored, Host};
use crate::outbox::Outbox;
use crate::session::Event;
use crate::wire::{MAX_BLOB_CHUNK_BYTES, MAX_BLOB_WANT, Record};

/// Looks by [`Session::retry_blobs`] in a row without a chunk arriving, after which a fetch
/// is given up (for now) and its file may be fetched from another peer.
pub const STALLED_LOOKS: u8 = 4;

/// Damaged chunks of one file tolerated per session before its fetch is given up.
pub const MAX_BAD_CHUNKS: u32 = 8;

struct Fetch {
    file: [u8; 32],
    size: u64,
    chunks: u32,
    /// The next chunk to ask for.
    asked_to: u32,
    /// The next chunk expected (all before it are stored).
    next: u32,
    bad: u32,
    /// `next` when [`Session::retry_blobs`] last looked (`None`: begun since): a fetch that
    /// has not moved since is given up then, so a peer that never answers cannot hold a
    /// file's fetch.
    seen_at: Option<u32>,
    /// Looks in a row that found it not moved.
    stalled_looks: u8,
}

#[derive(Default)]
pub(super) struct Blobs {
    fetches: Vec<Fetch>,
    /// Files this peer did not give properly (wrong bytes, too many damaged chunks, a kind
    /// the host refused), not asked of it again this session.
    given_up: HashSet<[u8; 32]>,
    /// Files this peer said it cannot give (yet): asked again after [`Session::retry_blobs`].
    unavailable: HashSet<[u8; 32]>,
    /// Files fetched whole in this session (the host may list them as wanted until its
    /// writes are durable).
    fetched: HashSet<[u8; 32]>,
}

fn chunk_count(size: u64) -> u32 {
    size.div_ceil(MAX_BLOB_CHUNK_BYTES as u64) as u32
}

fn chunk_len(size: u64, idx: u32) -> usize {
    let start = idx as u64 * MAX_BLOB_CHUNK_BYTES as u64;
    size.saturating_sub(start).min(MAX_BLOB_CHUNK_BYTES as u64) as usize
}

impl Blobs {
    /// Files being fetched and chunks in flight, for progress displays.
    pub(super) fn fetching(&self) -> usize {
        self.fetches.len()
    }
}

impl Session {
    /// Starts fetches while there is room and asks for chunks up to the window.
    pub(super) fn pump_blobs<H: Host>(
        &mut self,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        if !self.config.blobs {
            return Ok(());
        }
        let room = self
            .config
            .blob_fetches
            .saturating_sub(self.blobs.fetches.len());
        if room > 0 {
            let mut exclude: Vec<[u8; 32]> = self.blobs.given_up.iter().copied().collect();
            exclude.extend(self.blobs.unavailable.iter().copied());
            exclude.extend(self.blobs.fetched.iter().copied());
            exclude.extend(self.blobs.fetches.iter().map(|f| f.file));
            for w in host.blobs_wanted(room, &exclude)? {
                let chunks = chunk_count(w.size);
                if w.size == 0 || w.next >= chunks || exclude.contains(&w.file) {
                    host.blob_released(&w.file);
                    continue;
                }
                self.blobs.fetches.push(Fetch {
                    file: w.file,
                    size: w.size,
                    chunks,
                    asked_to: w.next,
                    next: w.next,
                    bad: 0,
                    seen_at: None,
                    stalled_looks: 0,
                });
            }
        }
        let window = self.config.blob_window.clamp(1, MAX_BLOB_WANT);
        let in_flight: u32 = self.blobs.fetches.iter().map(|f| f.asked_to - f.next).sum();
        let mut budget = window.saturating_sub(in_flight);
        for f in &mut self.blobs.fetches {
            if budget == 0 {
                break;
            }
            let count = (f.chunks - f.asked_to).min(budget);
            if count > 0 {
                out.push(Record::BlobWant {
                    file: f.file,
                    from: f.asked_to,
                    count,
                });
                f.asked_to += count;
                budget -= count;
            }
        }
        Ok(())
    }

    /// The peer asks for chunks: each is sent if the host may give it, else one BLOB_NONE.
    /// `asked` counts the chunks this frame's requests asked for so far.
    pub(super) fn on_blob_want<H: Host>(
        &mut self,
        file: [u8; 32],
        from: u32,
        count: u32,
        asked: &mut u32,
        host: &mut H,
        out: &mut Outbox,
    ) -> Result<(), SessionError> {
        *asked = asked.saturating_add(count);
        if *asked > MAX_BLOB_WANT {
            return Err(ProtocolError::BlobWindow {
                asked: *asked,
                max: MAX_BLOB_WANT,
            }
            .into());
        }
        for index in from..from.saturating_add(count) {
            match host.blob_chunk(&file, index)? {
                Some((size, bytes)) if index < chunk_count(size) => {
                    let digest = Sha256::digest(&bytes).into();
                    out.push(Record::BlobChunk {
                        file,
                        size,
                        index,
                        digest,
                        bytes,
                    });
                }
                _ => {
                    out.push(Record::BlobNone { file });
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(super) fn on_blob_chunk<H: Host>(
        &mut self,
        file: [u8; 32],
        size: u64,
        index: u32,
        digest: [u8; 32],
        bytes: Vec<u8>,
        host: &mut H,
    ) -> Result<(), SessionError> {
        let Some(pos) = self.blobs.fetches.iter().position(|f| f.file == file) else {
            // Not asked for (or a fetch that ended): never kept.
            return Ok(());
        };
        let f = &mut self.blobs.fetches[pos];
        if index != f.next || index >= f.asked_to {
            // A chunk sent before we asked again from an earlier one: the re-asked copy follows.
            return Ok(());
        }
        if size != f.size {
            let reason = format!(
                "the peer sent {size} bytes for a file of {} bytes; not fetched from it again in this session",
                f.size
            );
            return self.give_up(pos, reason, host);
        }
        let digest_ok = bytes.len() == chunk_len(size, index)
            && <[u8; 32]>::from(Sha256::digest(&bytes)) == digest;
        if !digest_ok {
            f.bad += 1;
            if f.bad > MAX_BAD_CHUNKS {
                let reason = format!("{} chunks arrived damaged", f.bad);
                return self.give_up(pos, reason, host);
            }
            // Ask again from this chunk; what is in flight after it is dropped on arrival.
            f.asked_to = index;
            self.events.push(Event::BlobChunkDamaged { file, index });
            return Ok(());
        }
        match host.store_blob_chunk(&file, index, bytes)? {
            BlobStored::Stored => {
                let f = &mut self.blobs.fetches[pos];
                f.next += 1;
                if f.next == f.chunks {
                    let reason = "the host kept the last chunk without completing the file".into();
                    return self.give_up(pos, reason, host);
                }
            }
            BlobStored::Complete => {
                self.blobs.fetches.remove(pos);
                self.blobs.fetched.insert(file);
                host.blob_released(&file);
                self.events.push(Event::BlobFetched { file });
            }
            BlobStored::Refused(reason) => return self.give_up(pos, reason, host),
        }
        Ok(())
    }

    pub(super) fn on_blob_none<H: Host>(&mut self, file: [u8; 32], host: &mut H) {
        if let Some(pos) = self.blobs.fetches.iter().position(|f| f.file == file) {
            self.blobs.fetches.remove(pos);
            self.blobs.unavailable.insert(file);
            host.blob_released(&file);
        }
    }

    /// Call now and then (Parley: every 30 s), followed by [`Session::local_changed`]. Files
    /// the peer could not give before may be asked of it again (it may have them by now, e.g.
    /// a site of ours that was itself still fetching them); a fetch that has not moved since
    /// the last call is given up for now, so that the file can be fetched from another peer.
    pub fn retry_blobs<H: Host>(&mut self, host: &mut H) {
        self.blobs.unavailable.clear();
        for f in &mut self.blobs.fetches {
            if f.seen_at == Some(f.next) {
                f.stalled_looks = f.stalled_looks.saturating_add(1);
            } else {
                f.stalled_looks = 0;
            }
        }
        // Several looks in a row, so that a chunk that is merely slow on a field link (a
        // minute or more at a few KB/s) is not given up.
        let (stalled, moving): (Vec<Fetch>, Vec<Fetch>) = std::mem::take(&mut self.blobs.fetches)
            .into_iter()
            .partition(|f| f.stalled_looks >= STALLED_LOOKS);
        for f in &stalled {
            host.blob_released(&f.file);
            self.blobs.unavailable.insert(f.file);
        }
        self.blobs.fetches = moving;
        for f in &mut self.blobs.fetches {
            f.seen_at = Some(f.next);
        }
    }

    fn give_up<H: Host>(
        &mut self,
        pos: usize,
        reason: String,
        host: &mut H,
    ) -> Result<(), SessionError> {
        let f = self.blobs.fetches.remove(pos);
        self.blobs.given_up.insert(f.file);
        host.blob_released(&f.file);
        self.events.push(Event::BlobRefused {
            file: f.file,
            reason,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use automerge::Automerge;

    use super::*;
    use crate::host::{BlobWant, DocUpdate, FeedPage, HostError, StoreError};
    use crate::ids::{Cursor, DocId};
    use crate::session::Config;
    use crate::wire::{Frame, decode_frame, encode_frame};

    /// A node with no documents: files to serve, files it wants, chunks it kept.
    #[derive(Default)]
    struct Files {
        serves: HashMap<[u8; 32], Vec<u8>>,
        wants: Vec<BlobWant>,
        kept: Vec<([u8; 32], u32, usize)>,
        released: Vec<[u8; 32]>,
    }

    impl Host for Files {
        fn feed_id(&mut self) -> u64 {
            7
        }
        fn feed_high(&mut self) -> Result<u64, HostError> {
            Ok(0)
        }
        fn feed_since(&mut self, since: u64, _: usize) -> Result<FeedPage, HostError> {
            Ok(FeedPage {
                entries: Vec::new(),
                scanned_to: since,
            })
        }
        fn is_shared(&mut self, _: DocId) -> Result<bool, HostError> {
            Ok(false)
        }
        fn load_doc(&mut self, _: DocId) -> Result<Option<Automerge>, HostError> {
            Ok(None)
        }
        fn store_doc(&mut self, _: DocUpdate<'_>) -> Result<(), StoreError> {
            Err(StoreError::Rejected("no documents here".into()))
        }
        fn load_sync_state(&mut self, _: DocId) -> Result<Option<Vec<u8>>, HostError> {
            Ok(None)
        }
        fn save_sync_state(&mut self, _: DocId, _: &[u8]) -> Result<(), HostError> {
            Ok(())
        }
        fn load_cursor(&mut self) -> Result<Option<Cursor>, HostError> {
            Ok(None)
        }
        fn save_cursor(&mut self, _: Cursor) -> Result<(), HostError> {
            Ok(())
        }
        fn blobs_wanted(
            &mut self,
            limit: usize,
            exclude: &[[u8; 32]],
        ) -> Result<Vec<BlobWant>, HostError> {
            let done: Vec<_> = self.released.clone();
            Ok(self
                .wants
                .iter()
                .filter(|w| !exclude.contains(&w.file) && !done.contains(&w.file))
                .take(limit)
                .cloned()
                .collect())
        }
        fn blob_chunk(
            &mut self,
            file: &[u8; 32],
            index: u32,
        ) -> Result<Option<(u64, Vec<u8>)>, HostError> {
            Ok(self.serves.get(file).and_then(|b| {
                let s = index as usize * MAX_BLOB_CHUNK_BYTES;
                (s < b.len()).then(|| {
                    let e = (s + MAX_BLOB_CHUNK_BYTES).min(b.len());
                    (b.len() as u64, b[s..e].to_vec())
                })
            }))
        }
        fn store_blob_chunk(
            &mut self,
            file: &[u8; 32],
            index: u32,
            bytes: Vec<u8>,
        ) -> Result<BlobStored, HostError> {
            self.kept.push((*file, index, bytes.len()));
            let size = self
                .wants
                .iter()
                .find(|w| w.file == *file)
                .map_or(0, |w| w.size);
            Ok(if chunk_count(size) == index + 1 {
                BlobStored::Complete
            } else {
                BlobStored::Stored
            })
        }
        fn blob_released(&mut self, file: &[u8; 32]) {
            self.released.push(*file);
        }
    }

    fn config() -> Config {
        Config {
            blobs: true,
            blob_window: 2,
            ..Config::default()
        }
    }

    /// Runs two sessions to quiet, passing every frame through `meddle` on its way to `b`.
    fn run(a: &mut Files, b: &mut Files, meddle: &mut dyn FnMut(&mut Frame)) {
        let (mut sa, mut sb) = (Session::new(config()), Session::new(config()));
        let mut to_b = sa.start(a).unwrap();
        let mut to_a = sb.start(b).unwrap();
        for _ in 0..1000 {
            if to_a.is_empty() && to_b.is_empty() {
                return;
            }
            let mut next_to_a = Vec::new();
            for f in std::mem::take(&mut to_b) {
                let mut frame = decode_frame(&f).unwrap();
                meddle(&mut frame);
                next_to_a.extend(sb.receive(&encode_frame(&frame), b).unwrap());
            }
            for f in std::mem::take(&mut to_a) {
                to_b.extend(sa.receive(&f, a).unwrap());
            }
            to_a = next_to_a;
        }
        panic!("the sessions never went quiet");
    }

    fn file(n: usize) -> ([u8; 32], Vec<u8>) {
        let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
        (Sha256::digest(&bytes).into(), bytes)
    }

    #[test]
    fn a_file_crosses_resuming_where_it_stopped_and_a_damaged_chunk_is_asked_again() {
        let (f, bytes) = file(5 * MAX_BLOB_CHUNK_BYTES + 10);
        let mut a = Files::default();
        a.serves.insert(f, bytes.clone());
        // b holds chunks 0 and 1 already.
        let mut b = Files {
            wants: vec![BlobWant {
                file: f,
                size: bytes.len() as u64,
                next: 2,
            }],
            ..Files::default()
        };
        let mut damaged = false;
        run(&mut a, &mut b, &mut |frame| {
            for r in &mut frame.records {
                if let Record::BlobChunk {
                    index: 3, bytes, ..
                } = r
                    && !damaged
                {
                    bytes[5] ^= 1;
                    damaged = true;
                }
            }
        });
        let kept: Vec<u32> = b.kept.iter().map(|k| k.1).collect();
        assert_eq!(
            kept,
            vec![2, 3, 4, 5],
            "resumed at 2, chunk 3 kept once, undamaged"
        );
        assert_eq!(b.released, vec![f]);
    }

    #[test]
    fn a_peer_that_never_answers_loses_the_fetch_at_the_next_look() {
        let (f, bytes) = file(2 * MAX_BLOB_CHUNK_BYTES);
        let mut host = Files {
            wants: vec![BlobWant {
                file: f,
                size: bytes.len() as u64,
                next: 0,
            }],
            ..Files::default()
        };
        let mut s = Session::new(config());
        s.start(&mut host).unwrap();
        let hello = Record::Hello {
            feed_id: 1,
            feed_high: 0,
            cursor_feed_id: 7,
            cursor_seq: 0,
        };
        let out = s
            .receive(
                &encode_frame(&Frame {
                    seq: 0,
                    records: vec![hello],
                }),
                &mut host,
            )
            .unwrap();
        let asked = out.iter().flat_map(|f| decode_frame(f).unwrap().records);
        assert!(
            asked
                .into_iter()
                .any(|r| matches!(r, Record::BlobWant { .. }))
        );
        // No chunk comes. The first look marks the fetch; it is given up after STALLED_LOOKS
        // more.
        for _ in 0..STALLED_LOOKS {
            s.retry_blobs(&mut host);
            assert!(host.released.is_empty());
        }
        s.retry_blobs(&mut host);
        assert_eq!(host.released, vec![f], "the claim is given back");
        assert_eq!(s.progress().files_fetching, 0);
    }

    #[test]
    fn nothing_unasked_is_kept_and_a_greedy_ask_ends_the_session() {
        let (f, bytes) = file(3 * MAX_BLOB_CHUNK_BYTES);
        let mut a = Files::default();
        a.serves.insert(f, bytes.clone());
        let mut b = Files::default();
        // a's frames to b get a chunk nobody asked for.
        let mut added = false;
        run(&mut a, &mut b, &mut |frame| {
            if !added {
                frame.records.push(Record::BlobChunk {
                    file: f,
                    size: bytes.len() as u64,
                    index: 0,
                    digest: Sha256::digest(&bytes[..MAX_BLOB_CHUNK_BYTES]).into(),
                    bytes: bytes[..MAX_BLOB_CHUNK_BYTES].to_vec(),
                });
                added = true;
            }
        });
        assert!(b.kept.is_empty(), "an unasked chunk is never kept");

        let mut s = Session::new(config());
        let mut host = Files::default();
        s.start(&mut host).unwrap();
        let ask = |count| Record::BlobWant {
            file: f,
            from: 0,
            count,
        };
        let hello = Record::Hello {
            feed_id: 1,
            feed_high: 0,
            cursor_feed_id: 7,
            cursor_seq: 0,
        };
        let frame = encode_frame(&Frame {
            seq: 0,
            records: vec![hello, ask(20), ask(20)],
        });
        let e = s.receive(&frame, &mut host).unwrap_err();
        assert!(e.to_string().contains("file chunks"), "{e}");
    }
}
