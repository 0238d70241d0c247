//! The writer thread: group commit.
//!
//! Jobs queue on a channel. The thread takes the first waiting job, then every other job
//! already queued (up to `MAX_BATCH`), runs them all in one redb write transaction and commits
//! once with `Durability::Immediate`. Only after the commit returns does each job's caller get
//! its answer, so an acknowledged write is durable, and concurrent writers share one fsync.
//!
//! Invariant: a job returns `Err` only before its first write. A job that fails after writing
//! poisons the batch: the transaction is aborted, documents touched in it are dropped from the
//! cache (their in-memory state may be ahead of disk), and every job in it gets an error.
//!
//! Disk space (`disk`): below the reserve a batch is refused before any job runs (each gets
//! `DiskFull`, nothing changes in memory or on disk). A commit that fails with an I/O error
//! anyway is treated as a poisoned batch, and its database handle, which redb has latched, is
//! given up so the next reader or writer opens a fresh one.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use automerge::AutoCommit;
use std::path::PathBuf;

use redb::WriteTransaction;
use tokio::sync::{mpsc, oneshot};

use uuid::Uuid;

use super::cache::DocCache;
use super::disk::{DbCell, Space};
use super::{Identity, StoreError, docs};
use crate::domain::{Conversation, doc};

const MAX_BATCH: usize = 512;
const QUEUE: usize = 4096;

type Outcome = Result<(), CommitFailure>;
type Finish = Box<dyn FnOnce(Outcome) + Send>;
/// A job runs with the batch's context, or (`None`) is refused unrun: its finish then gets
/// the refusal.
type Job = Box<dyn FnOnce(Option<&mut WriteCtx<'_>>) -> Finish + Send>;

#[derive(Debug, Clone)]
enum CommitFailure {
    Aborted,
    Db(String),
    /// Nothing saved for want of space: (dir, free MiB, reserve MiB).
    DiskFull(PathBuf, u64, u64),
    Reopening,
}

impl From<CommitFailure> for StoreError {
    fn from(f: CommitFailure) -> Self {
        match f {
            CommitFailure::Aborted => StoreError::BatchAborted,
            CommitFailure::Db(e) => StoreError::Record("commit".into(), e),
            CommitFailure::DiskFull(dir, free_mib, reserve_mib) => StoreError::DiskFull {
                dir,
                free_mib,
                reserve_mib,
            },
            CommitFailure::Reopening => StoreError::Reopening,
        }
    }
}

impl From<&StoreError> for CommitFailure {
    fn from(e: &StoreError) -> Self {
        match e {
            StoreError::DiskFull {
                dir,
                free_mib,
                reserve_mib,
            } => CommitFailure::DiskFull(dir.clone(), *free_mib, *reserve_mib),
            StoreError::Reopening => CommitFailure::Reopening,
            e => CommitFailure::Db(e.to_string()),
        }
    }
}

/// Answers every job of a batch with `failure` without running any.
fn refuse(batch: Vec<Job>, failure: &CommitFailure) {
    for job in batch {
        job(None)(Err(failure.clone()));
    }
}

/// What a job sees: the open write transaction and the writer's document cache.
pub struct WriteCtx<'a> {
    tx: &'a WriteTransaction,
    cache: &'a mut DocCache,
    identity: &'a mut Option<Identity>,
    job_wrote: bool,
    poisoned: bool,
    touched: Vec<u128>,
}

impl<'a> WriteCtx<'a> {
    /// The transaction, for reads only. Reading does not commit the job to success.
    pub fn read_tx(&self) -> &WriteTransaction {
        self.tx
    }

    /// The transaction, for writing: from here on an error from this job aborts the batch.
    pub fn tx(&mut self) -> &WriteTransaction {
        self.job_wrote = true;
        self.tx
    }

    pub fn identity(&self) -> Result<&Identity, StoreError> {
        self.identity.as_ref().ok_or(StoreError::NoIdentity)
    }

    /// Sets the identity (first start only); later jobs in this process see it.
    pub fn set_identity(&mut self, id: Identity) -> Result<(), StoreError> {
        super::accounts::write_identity(self.tx(), &id)?;
        *self.identity = Some(id);
        Ok(())
    }

    /// The document, loaded into the cache if needed; `None` if there is no such document.
    /// The caller may change it; it must then call [`WriteCtx::save_doc`].
    pub fn doc_mut(&mut self, id: u128) -> Result<Option<&mut AutoCommit>, StoreError> {
        let actor = self.identity()?.actor();
        if self.cache.get_mut(id).is_none() {
            match docs::load(self.tx, id)? {
                None => return Ok(None),
                Some(mut d) => {
                    d.doc.set_actor(actor);
                    self.cache.insert(id, d);
                }
            }
        }
        self.touched.push(id);
        Ok(self.cache.get_mut(id).map(|l| &mut l.doc))
    }

    /// The typed view of a document: the cached one while the document has not changed since
    /// it was read, otherwise read now (and cached). `None` if there is no such document.
    pub fn view(&mut self, id: u128) -> Result<Option<Conversation>, StoreError> {
        if self.doc_mut(id)?.is_none() {
            return Ok(None);
        }
        if let Some(v) = self.cache.view(id) {
            return Ok(Some(v));
        }
        let Some(l) = self.cache.get_mut(id) else {
            return Ok(None);
        };
        let v = doc::read(&l.doc)
            .map_err(|e| StoreError::Corrupt(Uuid::from_u128(id), e.to_string()))?;
        self.cache.set_view(id, v.clone());
        Ok(Some(v))
    }

    /// Records what a document reads as after the caller changed it and the view alike (a
    /// local command), so the next reader need not walk the document. Debug builds check the
    /// claim against a full read.
    pub fn set_view(&mut self, id: u128, view: &Conversation) {
        #[cfg(debug_assertions)]
        if let Some(l) = self.cache.get_mut(id) {
            let read = doc::read(&l.doc);
            assert_eq!(
                read.as_ref().ok(),
                Some(view),
                "the updated view differs from the document"
            );
        }
        self.cache.set_view(id, view.clone());
    }

    /// Stores a brand-new document.
    pub fn insert_doc(&mut self, id: u128, doc: AutoCommit) -> Result<(), StoreError> {
        self.touched.push(id);
        let mut doc = docs::Loaded::new(doc);
        docs::insert_new(self.tx(), id, &mut doc)?;
        self.cache.insert(id, doc);
        Ok(())
    }

    /// Appends the cached document's unsaved changes to storage.
    pub fn save_doc(&mut self, id: u128) -> Result<(), StoreError> {
        self.job_wrote = true;
        let Some(doc) = self.cache.get_mut(id) else {
            return Err(StoreError::Record(
                format!("doc {id:x}"),
                "saved without being loaded".into(),
            ));
        };
        docs::append(self.tx, id, doc)
    }

    /// Forgets a cached document whose in-memory state must not be trusted (a rolled-back edit).
    pub fn discard_doc(&mut self, id: u128) {
        self.cache.remove(id);
    }
}

pub struct Handle {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub fn spawn(
    db: Arc<DbCell>,
    space: Space,
    identity: Option<Identity>,
    doc_cache: usize,
    metrics: crate::metrics::StoreMetrics,
) -> Handle {
    let (tx, rx) = mpsc::channel::<Job>(QUEUE);
    let thread = std::thread::Builder::new()
        .name("parley-writer".into())
        .spawn(move || run(db, space, identity, rx, doc_cache, metrics))
        .expect("spawning the writer thread");
    Handle {
        tx: Mutex::new(Some(tx)),
        thread: Mutex::new(Some(thread)),
    }
}

fn run(
    cell: Arc<DbCell>,
    space: Space,
    mut identity: Option<Identity>,
    mut rx: mpsc::Receiver<Job>,
    cache_cap: usize,
    metrics: crate::metrics::StoreMetrics,
) {
    let mut cache = DocCache::new(cache_cap);
    while let Some(first) = rx.blocking_recv() {
        let started = std::time::Instant::now();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        if let Err(e) = space.check() {
            space.warn_refused(&e, "writes");
            refuse(batch, &CommitFailure::from(&e));
            continue;
        }
        let db = match cell.get() {
            Ok(db) => db,
            Err(e) => {
                refuse(batch, &CommitFailure::from(&e));
                continue;
            }
        };
        let tx = match super::begin_write(&db) {
            Ok(tx) => tx,
            Err(e) => {
                tracing::error!(error = %e, jobs = batch.len(), "cannot begin a write transaction");
                if let StoreError::Db(d) = &e
                    && super::disk::latched(d)
                {
                    cell.give_up(&db);
                }
                refuse(batch, &CommitFailure::from(&e));
                continue;
            }
        };
        let id_before = identity.clone();
        let mut ctx = WriteCtx {
            tx: &tx,
            cache: &mut cache,
            identity: &mut identity,
            job_wrote: false,
            poisoned: false,
            touched: vec![],
        };
        let jobs = batch.len();
        let mut finishes = Vec::with_capacity(batch.len());
        let mut panicked = false;
        for job in batch {
            ctx.job_wrote = false;
            // A panic inside a job (say, Automerge choking on a peer's change) must not take the
            // writer, and with it every later write of the node, down: it aborts this commit,
            // its caller gets an error, and the others are told to retry.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(Some(&mut ctx)))) {
                Ok(finish) => finishes.push(finish),
                Err(_) => {
                    tracing::error!("a write job panicked; its commit is aborted");
                    ctx.poisoned = true;
                    panicked = true;
                }
            }
        }
        let (poisoned, touched) = (ctx.poisoned, std::mem::take(&mut ctx.touched));
        let outcome = if poisoned {
            let _ = tx.abort();
            Err(CommitFailure::Aborted)
        } else {
            tx.commit().map_err(|e| {
                let e = redb::Error::from(e);
                if !super::disk::latched(&e) {
                    return CommitFailure::Db(e.to_string());
                }
                // redb refuses every later read and write on this handle: the next user
                // opens a fresh one, which recovers the last commit that completed.
                tracing::error!(error = %e, "a commit failed writing to disk; nothing of it was saved, and the database is reopened");
                cell.give_up(&db);
                if super::disk::is_full(&e) {
                    CommitFailure::from(&space.met_full())
                } else {
                    CommitFailure::Db(e.to_string())
                }
            })
        };
        drop(db);
        if panicked {
            // Documents in memory may be half-changed: reload everything from disk.
            cache = DocCache::new(cache_cap);
        }
        if outcome.is_err() {
            for id in touched {
                cache.remove(id);
            }
            identity = id_before;
            tracing::warn!("a group commit failed; none of its writes was saved");
        }
        metrics.commit(started.elapsed().as_secs_f64(), jobs, cache.len());
        for f in finishes {
            f(outcome.clone());
        }
    }
}

impl Handle {
    fn job<T, E, F>(f: F) -> (Job, oneshot::Receiver<Result<T, E>>)
    where
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |ctx| {
            let Some(ctx) = ctx else {
                return Box::new(move |outcome: Outcome| {
                    let e = outcome.err().unwrap_or(CommitFailure::Aborted);
                    let _ = reply.send(Err(E::from(e.into())));
                });
            };
            let r = f(ctx);
            if r.is_err() && ctx.job_wrote {
                ctx.poisoned = true;
            }
            Box::new(move |outcome: Outcome| {
                let answer = match outcome {
                    Ok(()) => r,
                    Err(e) => Err(E::from(e.into())),
                };
                let _ = reply.send(answer);
            })
        });
        (job, rx)
    }

    fn sender(&self) -> Result<mpsc::Sender<Job>, StoreError> {
        self.tx
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)
    }

    pub async fn submit<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, rx) = Self::job(f);
        self.sender()?
            .send(job)
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    pub fn submit_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteCtx<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (job, rx) = Self::job(f);
        self.sender()?
            .blocking_send(job)
            .map_err(|_| StoreError::Closed)?;
        rx.blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// Jobs queued and not yet taken by the writer (0 once closed).
    pub fn queue_depth(&self) -> usize {
        self.tx
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|s| s.max_capacity() - s.capacity()))
            .unwrap_or(0)
    }

    /// Lets queued jobs finish, then stops the thread.
    pub fn close(&self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}
