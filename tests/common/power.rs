//! The power-loss harness: a workload through the real service and store on a [`CrashDisk`],
//! and the checks a crash image must pass.
//!
//! A write counts as acknowledged when its call returned `Ok`; at that moment the test notes
//! the disk's last flush. A crash after that flush must keep the write: the commit that
//! answered it had flushed by then (its answer comes after its last `sync_data`), so the
//! rule asks for nothing the store did not promise, and it asks for everything it did.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use parley::domain::{Kind, Role};
use parley::service::{
    Clock, CreateInput, InboxFilter, NewToken, Principal, Service, ServiceError,
};
use parley::store::check::check_on_backend;
use parley::store::{Store, StoreOptions};
use uuid::Uuid;

use super::crash_disk::{CrashDisk, MemDisk, Rng};

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

fn bea() -> Principal {
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

fn conversation(id: Uuid, subject: &str) -> CreateInput {
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

/// How much of the checking a crash point gets.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    /// `parley check` on the stopped node, on the crashed file (as it is, before recovery).
    pub offline_check: bool,
    /// The restarted node's own check, after recovery and a reply to a recovered document.
    pub live_check: bool,
}

/// Everything a crash image must pass, for a crash just before operation `n`: the node starts
/// on it, every acknowledged write is there, every conversation is whole or absent, and the
/// node takes the next write; and the checks `depth` asks for find nothing wrong.
pub async fn verify(
    dir: &Path,
    image: Vec<u8>,
    ledger: &Ledger,
    n: usize,
    depth: Depth,
) -> Result<(), String> {
    if depth.offline_check {
        let backend = Box::new(MemDisk::new(image.clone()));
        let report = std::panic::catch_unwind(move || check_on_backend(backend))
            .map_err(|_| "`parley check` panicked on the crashed file".to_string())?
            .map_err(|e| format!("`parley check` failed on the crashed file: {e}"))?;
        if !report.is_clean() {
            return Err(format!("`parley check` on the crashed file: {report:?}"));
        }
    }
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || {
        Store::open_on_backend(&d, options(), Box::new(MemDisk::new(image)))
    })
    .await
    .map_err(|_| "the node panicked starting on the crashed file".to_string())?
    .map_err(|e| format!("the node does not start on the crashed file: {e}"))?;
    let svc = Service::new(store, Clock::System);
    let r = after_restart(&svc, ledger, n, depth.live_check).await;
    svc.store().shutdown();
    r
}

async fn after_restart(
    svc: &Service,
    ledger: &Ledger,
    n: usize,
    live_check: bool,
) -> Result<(), String> {
    let p = admin();
    // A conversation is there whole or not at all, whether or not it was acknowledged.
    let mut convs = HashMap::new();
    for id in &ledger.tried {
        match svc.get(&p, *id).await {
            Ok(c) => drop(convs.insert(*id, c)),
            Err(ServiceError::NotFound(_)) => {}
            Err(e) => {
                return Err(format!(
                    "conversation {id} is neither absent nor valid: {e}"
                ));
            }
        }
    }
    let mut teams = HashMap::new();
    let unread: HashMap<Uuid, bool> = {
        let f = InboxFilter {
            filters: vec![],
            overdue: None,
            cursor: None,
            limit: 200,
            q: None,
        };
        let page = svc
            .inbox(&bea(), f)
            .await
            .map_err(|e| format!("bea's inbox: {e}"))?;
        page.items.into_iter().map(|(s, u)| (s.id, u)).collect()
    };
    let users: Vec<String> = match svc.users(&p).await {
        Ok(u) => u.into_iter().map(|u| u.name).collect(),
        Err(e) => return Err(format!("the users do not read: {e}")),
    };
    for a in ledger.acked.iter().filter(|a| a.required_at(n)) {
        let lost = |what: String| Err(format!("acknowledged {what} is lost ({:?})", a.want));
        match &a.want {
            Want::Identity => {
                if !matches!(svc.identity().await, Ok(Some(_))) {
                    return lost("identity".into());
                }
            }
            Want::Partner => {
                let ps = svc.partners().await.map_err(|e| e.to_string())?;
                if !ps.iter().any(|x| x.id.to_string() == "bolt") {
                    return lost("partner".into());
                }
            }
            Want::User(name) => {
                if !users.contains(name) {
                    return lost(format!("user {name}"));
                }
            }
            Want::Token(secret) => {
                if svc.authenticate(secret).await.is_err() {
                    return lost("token".into());
                }
            }
            Want::Conversation { id, subject } => {
                if convs.get(id).is_none_or(|c| &c.subject != subject) {
                    return lost(format!("conversation {id}"));
                }
            }
            Want::Reply {
                conv,
                msg,
                body,
                file,
            } => {
                let found = convs
                    .get(conv)
                    .and_then(|c| c.messages.iter().find(|m| m.id == *msg));
                let attached = |m: &parley::domain::Message| {
                    m.attachments
                        .iter()
                        .map(|a| Some(a.sha256.clone()))
                        .eq(file.iter().cloned().map(Some))
                };
                if !found.is_some_and(|m| &m.body == body && attached(m)) {
                    return lost(format!("reply {msg} to {conv}"));
                }
            }
            Want::Note { conv, note } => {
                if !teams.contains_key(conv) {
                    teams.insert(*conv, svc.team(*conv).await.ok());
                }
                let t = teams.get(conv).and_then(|t| t.as_ref());
                if !t.is_some_and(|t| t.notes.iter().any(|x| x.id == *note)) {
                    return lost(format!("note {note} on {conv}"));
                }
            }
            Want::Read { conv } => {
                if unread.get(conv) != Some(&false) {
                    return lost(format!("read mark of {conv}"));
                }
            }
            Want::Upload { sha256, bytes } => {
                if file_bytes(svc, sha256).await.as_deref() != Some(bytes.as_slice()) {
                    return lost(format!("file {sha256}"));
                }
            }
        }
    }
    // And the node takes the next write: whatever its first start got to, the next step. On
    // the points of the full check that is a reply to a recovered document, which the check
    // then compares with its indexes; elsewhere a user, a commit like any other.
    let next = match svc.identity().await.map_err(|e| e.to_string())? {
        None => svc
            .init_identity("acme", "Acme Retail", Role::Retailer)
            .await
            .map(drop),
        Some(_) if !svc.partners().await.is_ok_and(|ps| !ps.is_empty()) => svc
            .add_partner(&p, "bolt", "Bolt Co", Role::Supplier)
            .await
            .map(drop),
        Some(_) if !live_check => {
            let name = format!("after{n}");
            svc.add_user(&p, &name, None, false).await.map(drop)
        }
        Some(_) => match ledger.tried.first().filter(|id| convs.contains_key(id)) {
            Some(id) => svc
                .reply(&p, *id, "after".into(), None, None)
                .await
                .map(drop),
            None => svc
                .create(&p, conversation(Uuid::new_v4(), "after"))
                .await
                .map(drop),
        },
    };
    next.map_err(|e| format!("the first write after the crash failed: {e}"))?;
    if live_check {
        let report = svc.store().check().await.map_err(|e| e.to_string())?;
        if !report.is_clean() {
            return Err(format!("the restarted node's check: {report:?}"));
        }
    }
    Ok(())
}

async fn file_bytes(svc: &Service, sha256: &str) -> Option<Vec<u8>> {
    let f = svc.file(sha256, None).await.ok()?;
    let mut out = Vec::new();
    let mut i = 0;
    while let Ok(Some(c)) = svc.file_chunk(f.sha256, i).await {
        out.extend_from_slice(&c);
        i += 1;
    }
    Some(out)
}
