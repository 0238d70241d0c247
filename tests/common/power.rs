//! The power-loss workload: a node's first start and concurrent writers through the real
//! service and store on a [`CrashDisk`], and the ledger of what was acknowledged when.
//!
//! A write counts as acknowledged when its call returned `Ok`; at that moment the test notes
//! the disk's last flush. A crash after that flush must keep the write: the commit that
//! answered it had flushed by then (its answer comes after its last `sync_data`), so the
//! rule asks for nothing the store did not promise, and it asks for everything it did.

use std::path::Path;
use std::sync::{Arc, Mutex};

use parley::domain::{Kind, Role};
use parley::service::{Clock, CreateInput, NewToken, Principal, Service, ServiceError};
use parley::store::{Store, StoreOptions};
use uuid::Uuid;

use super::crash_disk::{CrashDisk, Rng};

/// What an acknowledged write promises to find after a crash.
#[derive(Debug, Clone)]
pub enum Want {
    Identity,
    Partner,
    User(String),
    Token(String),
    Conversation {
        id: Uuid,
        subject: String,
    },
    Reply {
        conv: Uuid,
        msg: Uuid,
        body: String,
        file: Option<String>,
    },
    Note {
        conv: Uuid,
        note: Uuid,
    },
    Read {
        conv: Uuid,
    },
    Upload {
        sha256: String,
        bytes: Vec<u8>,
    },
}

/// An acknowledged write and the last flush before its answer (`None`: none yet).
#[derive(Debug, Clone)]
pub struct Acked {
    pub want: Want,
    pub after_sync: Option<usize>,
}

impl Acked {
    /// Whether a crash just before operation `n` must keep it.
    pub fn required_at(&self, n: usize) -> bool {
        self.after_sync.is_none_or(|s| s < n)
    }
}

/// What the workload did: acknowledged writes, and every conversation it tried to make.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acked: Vec<Acked>,
    pub tried: Vec<Uuid>,
}

pub const USER: &str = "bea";

pub fn admin() -> Principal {
    Principal::operator()
}

pub fn bea() -> Principal {
    Principal {
        user: USER.into(),
        admin: false,
    }
}

pub fn options() -> StoreOptions {
    StoreOptions {
        doc_cache: 8,
        db_cache_bytes: 4 << 20,
        ..Default::default()
    }
}

pub fn conversation(id: Uuid, subject: &str) -> CreateInput {
    CreateInput {
        id: Some(id),
        kind: Kind::Message,
        partner: "bolt".into(),
        subject: subject.into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: Some(format!("opening {subject}")),
        idempotency_key: None,
    }
}

/// Records one write's answer; `false` once writes fail (the disk is gone).
struct Rec<'a> {
    disk: &'a CrashDisk,
    ledger: &'a Mutex<Ledger>,
}

impl Rec<'_> {
    fn ok(&self, want: Want) {
        let after_sync = self.disk.last_sync();
        let mut l = self.ledger.lock().unwrap();
        l.acked.push(Acked { want, after_sync });
    }

    fn tried(&self, id: Uuid) {
        self.ledger.lock().unwrap().tried.push(id);
    }
}

/// The workload: a node's first start, then `writers` concurrent writers (so group commits
/// carry several jobs), each making conversations, replies (also to one shared
/// conversation), a team note and a read mark; writer 0 also adds a user and a token, and
/// uploads a file and replies with it. Stops at the first failed write.
pub async fn workload(
    dir: &Path,
    disk: &CrashDisk,
    ledger: &Arc<Mutex<Ledger>>,
    writers: usize,
    rounds: usize,
    seed: u64,
) {
    let d = dir.to_path_buf();
    let backend = disk.clone();
    let opened = tokio::task::spawn_blocking(move || {
        Store::open_on_backend(&d, options(), Box::new(backend))
    })
    .await
    .unwrap();
    let Ok(store) = opened else {
        return disk.freeze();
    };
    let svc = Service::new(store, Clock::System);
    let _ = steps(&svc, disk, ledger, writers, rounds, seed).await;
    // The power goes before the store's own clean shutdown could write anything.
    disk.freeze();
    svc.store().shutdown();
}

async fn steps(
    svc: &Arc<Service>,
    disk: &CrashDisk,
    ledger: &Arc<Mutex<Ledger>>,
    writers: usize,
    rounds: usize,
    seed: u64,
) -> Result<(), ServiceError> {
    let rec = Rec { disk, ledger };
    let p = admin();
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await?;
    rec.ok(Want::Identity);
    svc.add_partner(&p, "bolt", "Bolt Co", Role::Supplier)
        .await?;
    rec.ok(Want::Partner);
    svc.add_user(&p, USER, None, false).await?;
    rec.ok(Want::User(USER.into()));
    let shared = Uuid::new_v4();
    rec.tried(shared);
    svc.create(&p, conversation(shared, "shared")).await?;
    rec.ok(Want::Conversation {
        id: shared,
        subject: "shared".into(),
    });
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (svc, disk, ledger) = (svc.clone(), disk.clone(), ledger.clone());
        tasks.push(tokio::spawn(async move {
            let rec = Rec {
                disk: &disk,
                ledger: &ledger,
            };
            let _ = writer(&svc, &rec, w, rounds, shared, seed).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

async fn writer(
    svc: &Service,
    rec: &Rec<'_>,
    w: usize,
    rounds: usize,
    shared: Uuid,
    seed: u64,
) -> Result<(), ServiceError> {
    let p = admin();
    let mut rng = Rng::new(seed ^ (w as u64 + 1).wrapping_mul(0x51_7CC1_B727_220A));
    if w == 0 {
        let name = "tess".to_string();
        svc.add_user(&p, &name, None, false).await?;
        rec.ok(Want::User(name.clone()));
        let t = svc
            .create_token(
                &p,
                NewToken {
                    name: "t".into(),
                    user: Some(name),
                },
            )
            .await?;
        rec.ok(Want::Token(t.secret));
    }
    for round in 0..rounds {
        let id = Uuid::new_v4();
        let subject = format!("w{w} r{round}");
        rec.tried(id);
        svc.create(&p, conversation(id, &subject)).await?;
        rec.ok(Want::Conversation { id, subject });
        for (conv, k) in [(id, 0), (shared, 1), (id, 2)] {
            let msg = Uuid::now_v7();
            // Bodies of varying length, so commits span a varying number of pages.
            let body = format!("w{w} r{round} m{k} {}", "x".repeat(rng.below(600) as usize));
            svc.reply(&p, conv, body.clone(), Some(msg), None).await?;
            rec.ok(Want::Reply {
                conv,
                msg,
                body,
                file: None,
            });
        }
        let note = svc.add_note(&p, id, format!("note {w} {round}")).await?;
        rec.ok(Want::Note {
            conv: id,
            note: note.id,
        });
        // The last write to this conversation, so nothing later may undo the mark.
        svc.set_read(&bea(), id, true).await?;
        rec.ok(Want::Read { conv: id });
        if w == 0 && round == 0 {
            let bytes = super::random_pdf(600 + rng.below(2000) as usize);
            let up = svc
                .upload(&p, Some("spec.pdf".into()), bytes.as_slice())
                .await?;
            rec.ok(Want::Upload {
                sha256: up.sha256.clone(),
                bytes,
            });
            let msg = Uuid::now_v7();
            let body = "the spec".to_string();
            svc.reply_with_files(
                &p,
                shared,
                body.clone(),
                std::slice::from_ref(&up.sha256),
                Some(msg),
                None,
            )
            .await?;
            rec.ok(Want::Reply {
                conv: shared,
                msg,
                body,
                file: Some(up.sha256),
            });
        }
    }
    Ok(())
}
