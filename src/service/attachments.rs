//! Attachments: uploading a file, attaching it to a message, downloading it.
//!
//! An upload streams into the store a chunk at a time (never held whole in memory, never in a
//! file outside redb), counting bytes as they come, so a body without `Content-Length` meets
//! the same limit. Its kind is told by its content (`domain::attachment::sniff`); a refused,
//! cut-short or over-limit upload leaves nothing behind.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::*;
use crate::domain::attachment::{self, AttachmentRef, CHUNK_BYTES, TextCheck};
use crate::store::blobs::{self, Hash};

/// Chunks written per commit of an upload: 8 MiB, so a 25 MB file takes 4 commits and other
/// writers never wait behind more than one of them. One commit is in flight while the next
/// 8 MiB arrive, so the network and the disk work at once; at most two batches are in memory.
const CHUNKS_PER_COMMIT: usize = 32;

/// How long an uploaded file waits to be attached before it is dropped.
pub const UNATTACHED_KEEP: chrono::Duration = chrono::Duration::hours(24);

/// Drops, now and every hour, the files uploaded more than [`UNATTACHED_KEEP`] ago that no
/// message refers to.
pub async fn sweep_unattached(svc: std::sync::Arc<Service>) {
    let mut closing = svc.closing();
    loop {
        let before = (svc.now() - UNATTACHED_KEEP).timestamp_millis();
        match svc.store.sweep_unreferenced_files(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                files = n,
                "dropped files uploaded a day ago and never attached"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "could not drop unattached files; trying again in an hour")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
        }
    }
}

/// What an upload stored.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub sha256: String,
    pub size: u64,
    pub name: String,
    pub mime: &'static str,
}

/// How a file is served.
#[derive(Debug, Clone)]
pub struct FileToServe {
    pub sha256: Hash,
    pub size: u64,
    pub mime: String,
    /// Shown in the page (raster images) rather than downloaded.
    pub inline: bool,
    pub name: String,
}

/// Where a file attached to a message stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Present,
    /// Referred to, not here yet: it is being fetched from a peer.
    Arriving,
    /// Larger than this node takes: it is not fetched here.
    TooLarge,
    /// Fetched, and not a kind of file this node takes: not kept.
    Refused,
    /// Not here, and not wanted here.
    Unknown,
}

fn too_large(max: u64) -> ServiceError {
    ServiceError::FileTooLarge(too_large_detail(max))
}

/// The one wording of "too large", for the check before a body is read and the one while it
/// streams.
pub fn too_large_detail(max: u64) -> String {
    format!(
        "the file is larger than this node's limit of {max} bytes ({} MiB); send a smaller file, or raise attachments.max_mb",
        max >> 20
    )
}

fn no_room(store: &crate::store::Store) -> ServiceError {
    ServiceError::InsufficientStorage(format!(
        "this node's disk has {} MB free, too little to keep the file; free some space in the data directory's filesystem and send it again",
        store.free_bytes().unwrap_or(0) >> 20
    ))
}

fn refused(e: attachment::Refused) -> ServiceError {
    match e {
        attachment::Refused::Empty => DomainError::Unprocessable(e.to_string()).into(),
        attachment::Refused::Kind { .. } => ServiceError::FileRefused(e.to_string()),
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let got = r.read(&mut buf[n..]).await?;
        if got == 0 {
            break;
        }
        n += got;
    }
    Ok(n)
}

/// What an upload stored, dropped if the upload does not finish: the future that runs it may
/// be dropped at any await (the client went away), and the batch it had in flight still
/// commits; the guard waits for that batch, then drops the upload.
struct UploadGuard {
    store: std::sync::Arc<crate::store::Store>,
    key: Hash,
    armed: bool,
    in_flight: Option<tokio::task::JoinHandle<Result<Sha256>>>,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, key, batch) = (self.store.clone(), self.key, self.in_flight.take());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(b) = batch {
                    let _ = b.await;
                }
                if let Err(e) = store.abandon_upload(key).await {
                    tracing::warn!(error = %e, "an upload that did not finish could not be dropped; it goes at the next start");
                }
            });
        }
    }
}

/// Reads and drops what is left of a refused body (at most `cap` bytes, which the request's
/// own limit allows anyway), so the client gets the answer instead of a connection reset
/// while it is still sending.
async fn drain<R: AsyncRead + Unpin>(body: &mut R, cap: u64) {
    let _ = tokio::io::copy(&mut body.take(cap), &mut tokio::io::sink()).await;
}

async fn join<T>(h: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    h.await
        .map_err(|_| ServiceError::Store(StoreError::Closed))?
}

/// Feeds `chunks` to the hash on the blocking pool (8 MiB take milliseconds), and gives both
/// back.
async fn hash_more(mut state: Sha256, chunks: Vec<Vec<u8>>) -> Result<(Sha256, Vec<Vec<u8>>)> {
    tokio::task::spawn_blocking(move || {
        for c in &chunks {
            state.update(c);
        }
        (state, chunks)
    })
    .await
    .map_err(|_| ServiceError::Store(StoreError::Closed))
}

impl Service {
    /// The files this node takes.
    pub fn attachment_rules(&self) -> &crate::store::AttachmentRules {
        self.store.attachment_rules()
    }

    /// Refuses to write `batch` when the disk has too little room for it (507, not a failed
    /// commit that would take other writers' changes down with it).
    fn check_room(&self, batch: &[Vec<u8>]) -> Result<()> {
        let bytes: u64 = batch.iter().map(|c| c.len() as u64).sum();
        if self.store.room_for(bytes) {
            return Ok(());
        }
        Err(no_room(&self.store))
    }

    /// Stores the file read from `body` and answers what was stored. `name` is the name it is
    /// offered under; a missing or unusable one becomes `attachment.<kind>`.
    pub async fn upload<R: AsyncRead + Unpin + Send>(
        &self,
        p: &Principal,
        name: Option<String>,
        body: R,
    ) -> Result<Uploaded> {
        self.upload_sized(p, name, None, body).await
    }

    /// [`Service::upload`] of a body announced as `expected` bytes: refused at once when it is
    /// over the limit or the disk has no room for it.
    pub async fn upload_sized<R: AsyncRead + Unpin + Send>(
        &self,
        p: &Principal,
        name: Option<String>,
        expected: Option<u64>,
        mut body: R,
    ) -> Result<Uploaded> {
        let rules = self.store.attachment_rules().clone();
        let cap = rules.max_bytes + 64 * 1024;
        if let Some(n) = expected {
            if n > cap {
                return Err(too_large(rules.max_bytes));
            }
            if !self.store.room_for(n) {
                drain(&mut body, cap).await;
                return Err(no_room(&self.store));
            }
        }
        let name = name
            .map(|n| n.trim().to_string())
            .filter(|n| attachment::check_name(n).is_ok());
        let key = blobs::new_key();
        let now_ms = self.now().timestamp_millis();
        // Should this future be dropped part way (the client went away), what it stored goes.
        let mut guard = UploadGuard {
            store: self.store.clone(),
            key,
            armed: true,
            in_flight: None,
        };
        // The hash state moves through the batch in flight: each batch is hashed and written
        // off this task while the next one arrives.
        let mut sha = Some(Sha256::new());
        let mut text = TextCheck::default();
        let mut head: Vec<u8> = Vec::new();
        let mut size = 0u64;
        let mut first = 0u32;
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut wrote = false;
        let outcome: Result<()> = async {
            loop {
                let mut buf = vec![0u8; CHUNK_BYTES];
                let n = read_full(&mut body, &mut buf).await.map_err(|e| {
                    DomainError::invalid(
                        "file",
                        format!("the upload ended before the whole file arrived ({e}); nothing was stored, send it again"),
                    )
                })?;
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                size += n as u64;
                if size > rules.max_bytes {
                    return Err(too_large(rules.max_bytes));
                }
                if head.is_empty() {
                    head = buf[..n.min(64 * 1024)].to_vec();
                    // Refuse early what no later byte can make acceptable.
                    let mut t = TextCheck::default();
                    t.feed(&head);
                    attachment::sniff(&head, t.ok_so_far(), name.as_deref().unwrap_or(""), &rules.kinds)
                        .map_err(refused)?;
                }
                text.feed(&buf);
                batch.push(buf);
                if batch.len() == CHUNKS_PER_COMMIT {
                    self.check_room(&batch)?;
                    let chunks = std::mem::take(&mut batch);
                    let count = chunks.len() as u32;
                    wrote = true;
                    let state = match guard.in_flight.take() {
                        Some(prev) => join(prev).await?,
                        None => sha.take().unwrap_or_default(),
                    };
                    let store = self.store.clone();
                    guard.in_flight = Some(tokio::spawn(async move {
                        let (state, chunks) = hash_more(state, chunks).await?;
                        store.upload_chunks(key, first, chunks, now_ms).await?;
                        Ok(state)
                    }));
                    first += count;
                }
            }
            Ok(())
        }
        .await;
        // Whatever happened, the batch in flight lands (or fails) before anything else.
        let landed = match guard.in_flight.take() {
            Some(prev) => join(prev).await,
            None => Ok(sha.take().unwrap_or_default()),
        };
        let (landed, rest) = match landed {
            Ok(state) => match hash_more(state, std::mem::take(&mut batch)).await {
                Ok((state, rest)) => (Ok(state), rest),
                Err(e) => (Err(e), Vec::new()),
            },
            Err(e) => (Err(e), Vec::new()),
        };
        let batch = rest;
        let mut state = None;
        let kind = outcome.and(landed.map(|s| state = Some(s))).and_then(|()| {
            attachment::sniff(
                &head,
                text.finish(),
                name.as_deref().unwrap_or(""),
                &rules.kinds,
            )
            .map_err(refused)
        });
        let kind = kind.and_then(|k| self.check_room(&batch).map(|()| k));
        let kind = match kind {
            Ok(k) => k,
            Err(e) => {
                if wrote {
                    self.store.abandon_upload(key).await?;
                }
                guard.armed = false;
                drain(&mut body, cap).await;
                return Err(e);
            }
        };
        let hash: Hash = state.unwrap_or_default().finalize().into();
        self.store
            .finish_upload(
                key,
                first,
                batch,
                crate::store::FinishedFile {
                    hash,
                    size,
                    mime: kind.mime,
                },
                now_ms,
            )
            .await?;
        guard.armed = false;
        let name = attachment::safe_file_name(name.as_deref().unwrap_or("attachment"), kind);
        let (user, n2) = (p.user.clone(), name.clone());
        self.store
            .write(move |ctx| blobs::set_upload_name(ctx.tx(), &hash, &user, &n2))
            .await?;
        Ok(Uploaded {
            sha256: hex::encode(hash),
            size,
            name,
            mime: kind.mime,
        })
    }

    /// The references for files named by hash in a create or reply: each must be complete
    /// here. Named as the caller uploaded it, else as anyone here did.
    pub(super) async fn attachments_for(
        &self,
        user: &str,
        hashes: &[String],
    ) -> Result<Vec<AttachmentRef>> {
        if hashes.len() > attachment::PER_MESSAGE {
            return Err(DomainError::invalid(
                "attachments",
                format!(
                    "a message carries at most {} files",
                    attachment::PER_MESSAGE
                ),
            )
            .into());
        }
        let mut parsed: Vec<Hash> = Vec::new();
        for h in hashes {
            let Some(x) = attachment::parse_sha256(h) else {
                return Err(DomainError::invalid(
                    "attachments",
                    format!("{h:?} is not a SHA-256 (64 lowercase hexadecimal digits)"),
                )
                .into());
            };
            if !parsed.contains(&x) {
                parsed.push(x);
            }
        }
        let user = user.to_string();
        self.store
            .read(move |rtx| -> Result<Vec<AttachmentRef>> {
                let mut out = Vec::new();
                for h in &parsed {
                    let Some(m) = blobs::present(rtx, h)? else {
                        return Err(DomainError::Unprocessable(format!(
                            "file {} is not stored on this node; upload it first with POST /api/v1/attachments",
                            hex::encode(h)
                        ))
                        .into());
                    };
                    let name = match blobs::upload_name(rtx, h, &user)? {
                        Some(n) => n,
                        None => attachment::kind_by_mime(&m.mime)
                            .map(|k| attachment::safe_file_name("attachment", k))
                            .unwrap_or_else(|| "attachment".into()),
                    };
                    out.push(AttachmentRef {
                        sha256: hex::encode(h),
                        size: m.size,
                        name,
                        mime: m.mime,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// A complete file to serve, offered under `name` when that is a usable file name.
    pub async fn file(&self, sha256: &str, name: Option<String>) -> Result<FileToServe> {
        let not_here = || ServiceError::NotFound(format!("no file {sha256} on this node"));
        let hash = attachment::parse_sha256(sha256).ok_or_else(|| {
            DomainError::invalid(
                "sha256",
                format!("{sha256:?} is not a SHA-256 (64 lowercase hexadecimal digits)"),
            )
        })?;
        let meta = self.store.blob_meta(hash).await?;
        let Some(m) = meta.filter(|m| m.complete) else {
            let max = self.store.attachment_rules().max_bytes;
            return Err(match self.file_states(vec![hash]).await?.first() {
                Some(FileState::Arriving) => ServiceError::NotFound(format!(
                    "file {sha256} has not arrived yet: it is being fetched from the partner's node"
                )),
                Some(FileState::TooLarge) => ServiceError::NotFound(format!(
                    "file {sha256} is larger than this node's limit of {} MiB, so it is not fetched here; raise attachments.max_mb to receive it",
                    max >> 20
                )),
                Some(FileState::Refused) => ServiceError::NotFound(format!(
                    "file {sha256} is not a kind of file this node takes (attachments.types), so it was not kept"
                )),
                _ => not_here(),
            });
        };
        let kind = attachment::kind_by_mime(&m.mime);
        let name = name
            .filter(|n| attachment::check_name(n).is_ok())
            .unwrap_or_else(|| "attachment".into());
        // Saved under an ending of its kind, whatever it was called.
        let name = match kind {
            Some(k) => attachment::safe_file_name(&name, k),
            None => name,
        };
        Ok(FileToServe {
            sha256: hash,
            size: m.size,
            inline: kind.is_some_and(|k| k.preview),
            mime: m.mime,
            name,
        })
    }

    /// Chunk `idx` of a complete file (`None` past its end).
    pub async fn file_chunk(&self, hash: Hash, idx: u32) -> Result<Option<Vec<u8>>> {
        Ok(self.store.blob_chunk(hash, idx).await?)
    }

    /// Where each file stands here, in order.
    pub async fn file_states(&self, hashes: Vec<Hash>) -> Result<Vec<FileState>> {
        let max = self.store.attachment_rules().max_bytes;
        let metas = self.store.blob_metas(hashes.clone()).await?;
        let wanted = self
            .store
            .read(move |rtx| -> Result<Vec<Option<u64>>> {
                hashes
                    .iter()
                    .map(|h| Ok(blobs::wanted_size(rtx, h)?))
                    .collect()
            })
            .await?;
        Ok(metas
            .into_iter()
            .zip(wanted)
            .map(|(m, w)| match (m, w) {
                (Some(m), _) if m.complete => FileState::Present,
                (Some(m), _) if m.refused => FileState::Refused,
                (_, Some(size)) if size > max => FileState::TooLarge,
                (_, Some(_)) => FileState::Arriving,
                _ => FileState::Unknown,
            })
            .collect())
    }
}
