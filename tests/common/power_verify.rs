//! What a crash image must pass: the node starts on it, every acknowledged write of the
//! [`Ledger`] that the crash point requires is there, every conversation is whole or absent,
//! the node takes the next write, and the consistency checks find nothing wrong.

use std::collections::HashMap;
use std::path::Path;

use parley::domain::Role;
use parley::service::Clock;
use parley::service::{InboxFilter, Service, ServiceError};
use parley::store::Store;
use parley::store::check::check_on_backend;
use uuid::Uuid;

use super::crash_disk::MemDisk;
use super::power::{Ledger, Want, admin, bea, conversation, options};

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
