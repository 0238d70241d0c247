//! The store's file operations for the service (uploads, downloads) and the claims that keep
//! one fetch per file at a time. The tables and their invariants are in [`super::blobs`].

use redb::ReadableTable;
use uuid::Uuid;

use super::blobs::{self, BlobMeta, Hash};
use super::{Result, Store, StoreError};

/// What an upload turned out to be, once all of it was read.
#[derive(Debug, Clone, Copy)]
pub struct FinishedFile {
    pub hash: Hash,
    pub size: u64,
    pub mime: &'static str,
}

impl Store {
    /// Stores chunks `first..` of an upload under `key`, in one durable commit; `first == 0`
    /// also records the upload as under way.
    pub async fn upload_chunks(
        &self,
        key: Hash,
        first: u32,
        chunks: Vec<Vec<u8>>,
        now_ms: i64,
    ) -> Result<()> {
        self.write(move |ctx| -> Result<()> {
            let tx = ctx.tx();
            if first == 0 {
                blobs::begin_upload(tx, &key, now_ms)?;
            }
            for (i, c) in chunks.iter().enumerate() {
                blobs::put_chunk(tx, &key, first + i as u32, c)?;
            }
            Ok(())
        })
        .await
    }

    /// Publishes a finished upload (see [`blobs::finish_upload`]), with its last chunks.
    pub async fn finish_upload(
        &self,
        key: Hash,
        first: u32,
        chunks: Vec<Vec<u8>>,
        file: FinishedFile,
        now_ms: i64,
    ) -> Result<()> {
        let FinishedFile { hash, size, mime } = file;
        self.write(move |ctx| -> Result<()> {
            let tx = ctx.tx();
            if first == 0 {
                blobs::begin_upload(tx, &key, now_ms)?;
            }
            for (i, c) in chunks.iter().enumerate() {
                blobs::put_chunk(tx, &key, first + i as u32, c)?;
            }
            blobs::finish_upload(tx, &key, &hash, size, mime, now_ms)?;
            Ok(())
        })
        .await
    }

    /// Drops files never attached to anything that are older than `before_ms`, and uploads
    /// begun before it that never finished.
    pub async fn sweep_unreferenced_files(&self, before_ms: i64) -> Result<usize> {
        self.write(move |ctx| {
            let tx = ctx.tx();
            Ok(blobs::sweep_unreferenced(tx, before_ms)?
                + blobs::sweep_uploads_before(tx, before_ms)?)
        })
        .await
    }

    /// Drops an upload that will not finish.
    pub async fn abandon_upload(&self, key: Hash) -> Result<()> {
        self.write(move |ctx| blobs::abandon_upload(ctx.tx(), &key))
            .await
    }

    /// The file's state here.
    pub async fn blob_meta(&self, hash: Hash) -> Result<Option<BlobMeta>> {
        self.read(move |rtx| blobs::meta(rtx, &hash)).await
    }

    /// States of several files at once (a conversation's attachments).
    pub async fn blob_metas(&self, hashes: Vec<Hash>) -> Result<Vec<Option<BlobMeta>>> {
        self.read(move |rtx| hashes.iter().map(|h| blobs::meta(rtx, h)).collect())
            .await
    }

    /// Chunk `idx` of the complete file `hash`: `None` when the file is not complete here.
    pub async fn blob_chunk(&self, hash: Hash, idx: u32) -> Result<Option<Vec<u8>>> {
        self.read(move |rtx| -> Result<Option<Vec<u8>>> {
            let Some(m) = blobs::present(rtx, &hash)? else {
                return Ok(None);
            };
            let c = blobs::read_chunk(rtx, &m.key, idx)?;
            if c.is_none() && idx < crate::domain::attachment::chunk_count(m.size) {
                return Err(StoreError::Record(
                    format!("file {}", hex::encode(hash)),
                    format!("chunk {idx} is missing"),
                ));
            }
            Ok(c)
        })
        .await
    }

    /// Whether any file referred to here is still to be fetched.
    pub async fn wants_files(&self) -> Result<bool> {
        self.read(|rtx| Ok(rtx.open_table(blobs::BLOB_WANTED)?.first()?.is_some()))
            .await
    }

    /// Bytes free for the database on its filesystem (`None` if the system does not say).
    pub fn free_bytes(&self) -> Option<u64> {
        let s = rustix::fs::statvfs(self.dir.as_path()).ok()?;
        Some(s.f_bavail.saturating_mul(s.f_frsize))
    }

    /// Whether a file of `size` bytes fits with room to spare: the database file grows in
    /// steps, so twice the size plus 16 MiB is asked for, beyond the reserve every write
    /// leaves free (`disk`).
    pub fn room_for(&self, size: u64) -> bool {
        self.space
            .usable()
            .is_none_or(|free| free >= size.saturating_mul(2).saturating_add(16 << 20))
    }

    /// Logs, at most every 10 minutes, that a file waits for disk space.
    pub fn note_low_space(&self, size: u64) {
        let Ok(mut last) = self.low_space_logged.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(600)) {
            return;
        }
        *last = Some(std::time::Instant::now());
        tracing::warn!(
            file_bytes = size,
            free_bytes = self.free_bytes().unwrap_or(0),
            dir = %self.dir.display(),
            "a partner's file waits for disk space: free some space in the data directory's filesystem; the node keeps serving, and the file is fetched once it fits"
        );
    }

    /// Claims `hash` for a fetch from `peer`: false when another peer's fetch holds it.
    pub fn claim_blob(&self, hash: &Hash, peer: Uuid) -> bool {
        let Ok(mut c) = self.blob_claims.lock() else {
            return false;
        };
        match c.get(hash) {
            Some(p) => *p == peer,
            None => {
                c.insert(*hash, peer);
                true
            }
        }
    }

    /// Ends `peer`'s claim on `hash` (the fetch finished or gave up).
    pub fn release_blob(&self, hash: &Hash, peer: Uuid) {
        if let Ok(mut c) = self.blob_claims.lock()
            && c.get(hash) == Some(&peer)
        {
            c.remove(hash);
        }
    }

    /// Where `peer`'s sessions last stopped reading the wanted files, so each look goes on
    /// from there (wrapping round) instead of starting over at the first: a long list of files
    /// no peer can give never keeps the others from being asked for.
    pub fn wanted_cursor(&self, peer: Uuid) -> Option<Hash> {
        self.wanted_cursors.lock().ok()?.get(&peer).copied()
    }

    pub fn set_wanted_cursor(&self, peer: Uuid, at: Option<Hash>) {
        if let Ok(mut c) = self.wanted_cursors.lock() {
            match at {
                Some(h) => c.insert(peer, h),
                None => c.remove(&peer),
            };
        }
    }

    /// Ends every claim of `peer` (its connection closed).
    pub fn release_blobs_of(&self, peer: Uuid) {
        if let Ok(mut c) = self.blob_claims.lock() {
            c.retain(|_, p| *p != peer);
        }
    }
}
