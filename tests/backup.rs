//! Online backup and restore, between real nodes on real sockets.
//!
//! - A backup taken while 32 writers reply is one snapshot: each writer's replies in it are a
//!   prefix of what it wrote, everything acknowledged before the backup began is there, and
//!   the restored node passes the consistency check.
//! - A restored node that writes before it syncs, with a partner holding newer changes of
//!   both orgs, converges with it and loses nothing; with the new-actor step disabled the same
//!   data reproduces Automerge's `DuplicateSeqNumber`, so the test is known to catch it.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{TestNode, eventually};
use parley::domain::Role;
use parley::service::Principal;
use parley::store::backup::{self, RestoreOptions};
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

/// Per writer: (reply number, when its 201 arrived).
type Acked = Vec<Vec<(usize, Instant)>>;

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

async fn create(n: &TestNode, partner: &str, subject: &str) -> Uuid {
    let v = n
        .create(json!({"kind": "message", "partner": partner, "subject": subject, "body": "first"}))
        .await;
    v["id"].as_str().unwrap().parse().unwrap()
}

async fn reply(n: &TestNode, id: Uuid, body: &str) {
    n.reply_ok(&id.to_string(), body).await;
}

async fn bodies(n: &TestNode, id: Uuid) -> Vec<String> {
    n.bodies(&id.to_string()).await
}

/// Stops `n` and checks its data directory the way `parley check` does.
async fn stop_and_check(mut n: TestNode) -> tempfile::TempDir {
    n.pause().await;
    let dir = n.dir.path().to_path_buf();
    let report = eventually(30, "the stopped node's database to be free", || {
        let dir = dir.clone();
        async move {
            tokio::task::spawn_blocking(move || parley::store::check::check_offline(&dir).ok())
                .await
                .unwrap()
        }
    })
    .await;
    assert!(report.is_clean(), "the check found problems: {report:?}");
    let TestNode { dir, .. } = n;
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_taken_while_32_writers_reply_is_one_snapshot_and_restores_clean() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let mut ids = Vec::new();
    for i in 0..32 {
        ids.push(create(&acme, "bolt", &format!("writer {i}")).await);
    }
    // Something of every kind of truth besides documents: a file, a note, an assignment, a
    // read mark, another user.
    let (s, up) = acme.upload("note.txt", b"delivery note\n".to_vec()).await;
    assert_eq!(s, 201, "{up}");
    let (s, v) = acme
        .post(
            &format!("/api/v1/conversations/{}/messages", ids[0]),
            json!({"body": "see file", "attachments": [up["sha256"]]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = acme
        .post(
            &format!("/api/v1/conversations/{}/notes", ids[1]),
            json!({"body": "internal: call them"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = acme
        .put(
            &format!("/api/v1/conversations/{}/assignee", ids[1]),
            json!({"assignee": "admin"}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let (s, v) = acme
        .post(
            "/api/v1/users",
            json!({"name": "ann", "password": "correct-horse-2", "admin": false}),
        )
        .await;
    assert!(s.is_success(), "{v}");

    // 32 writers, one conversation each, replying in sequence until told to stop.
    let acme = Arc::new(acme);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked: Arc<Mutex<Acked>> = Arc::new(Mutex::new(vec![Vec::new(); 32]));
    let mut tasks = Vec::new();
    for (w, id) in ids.iter().copied().enumerate() {
        let (acme, stop, acked) = (acme.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reply(&acme, id, &format!("w{w} #{n}")).await;
                acked.lock().await[w].push((n, Instant::now()));
                n += 1;
            }
        }));
    }
    // Let every writer get going first.
    eventually(60, "every writer to have replied", || {
        let acked = acked.clone();
        async move {
            acked
                .lock()
                .await
                .iter()
                .all(|a| a.len() >= 3)
                .then_some(())
        }
    })
    .await;
    let file = tempfile::tempdir().unwrap();
    let path = file.path().join("acme.backup");
    let started = Instant::now();
    acme.backup(&path).await;
    let finished = Instant::now();
    // The writers go on after the backup too, then stop.
    eventually(60, "writers to reply after the backup", || {
        let acked = acked.clone();
        async move {
            acked
                .lock()
                .await
                .iter()
                .all(|a| a.last().is_some_and(|(_, t)| *t > finished))
                .then_some(())
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().await.clone();
    let during: usize = acked
        .iter()
        .map(|a| {
            a.iter()
                .filter(|(_, t)| *t > started && *t < finished)
                .count()
        })
        .sum();
    eprintln!(
        "backup took {:?}; {during} replies were acknowledged meanwhile",
        finished - started
    );

    let m = backup::verify(&copy_of(&path)).unwrap();
    assert_eq!(m.org_id, "acme");
    assert_eq!(m.conversations, 32);
    assert_eq!(m.files, 1);

    // Restore into a new directory, check it, serve it.
    let restored_dir = tempfile::tempdir().unwrap();
    let target = restored_dir.path().to_path_buf();
    let p = path.clone();
    tokio::task::spawn_blocking(move || backup::restore(&p, &target, &RestoreOptions::default()))
        .await
        .unwrap()
        .unwrap();
    let restored =
        TestNode::start_existing(restored_dir, "acme", Role::Retailer, &acme.token).await;
    for (w, id) in ids.iter().copied().enumerate() {
        let got = bodies(&restored, id).await;
        assert_eq!(got[0], "first");
        let replies: Vec<&String> = got
            .iter()
            .filter(|b| b.starts_with(&format!("w{w} #")))
            .collect();
        // A prefix of what the writer wrote: nothing later without everything before it.
        for (i, b) in replies.iter().enumerate() {
            assert_eq!(
                **b,
                format!("w{w} #{i}"),
                "writer {w}: not a prefix: {replies:?}"
            );
        }
        // Everything acknowledged before the backup began is in it; nothing sent after it
        // ended is.
        let before = acked[w].iter().filter(|(_, t)| *t < started).count();
        assert!(
            replies.len() >= before,
            "writer {w}: {before} replies were acknowledged before the backup began, {} are in it",
            replies.len()
        );
        let sent_by_end = acked[w].iter().filter(|(_, t)| *t <= finished).count() + 1;
        assert!(
            replies.len() <= sent_by_end,
            "writer {w}: the backup holds replies sent after it ended"
        );
    }
    // The file, the note, the assignment, the user came along.
    let (s, _, bytes) = restored.download(up["sha256"].as_str().unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(bytes, b"delivery note\n");
    let (_, d) = restored
        .get(&format!("/api/v1/conversations/{}", ids[1]))
        .await;
    assert_eq!(d["notes"][0]["body"], "internal: call them", "{d}");
    assert_eq!(d["assignee"], "admin", "{d}");
    let (_, users) = restored.get("/api/v1/users").await;
    assert!(users.to_string().contains("\"ann\""), "{users}");
    // It writes, and the whole directory checks.
    reply(&restored, ids[2], "after the restore").await;
    stop_and_check(restored).await;
}

/// A copy, since checking opens a file for writing.
fn copy_of(p: &std::path::Path) -> std::path::PathBuf {
    let c = p.with_extension("copy");
    std::fs::copy(p, &c).unwrap();
    c
}

/// What both sides hold of `id`, once they agree: the same messages.
async fn converged(a: &TestNode, b: &TestNode, id: Uuid, want: usize) -> Vec<String> {
    eventually(60, "both nodes to hold the same messages", || async {
        let (x, y) = (bodies(a, id).await, bodies(b, id).await);
        (x.len() == want && {
            let (mut xs, mut ys) = (x.clone(), y.clone());
            xs.sort();
            ys.sort();
            xs == ys
        })
        .then_some(x)
    })
    .await
}

/// Restores `file` into a new directory and, before the node serves or syncs, replies to
/// `id` as its admin: the first write of the restored node.
async fn restore_and_write(
    file: &std::path::Path,
    id: Uuid,
    opts: RestoreOptions,
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (f, d) = (file.to_path_buf(), dir.path().to_path_buf());
    tokio::task::spawn_blocking(move || backup::restore(&f, &d, &opts))
        .await
        .unwrap()
        .unwrap();
    let cfg = parley::config::Config::load(parley::config::Overrides {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let svc = parley::server::open(&cfg, parley::service::Clock::System)
        .await
        .unwrap();
    svc.reply(&admin(), id, "written before any sync".into(), None, None)
        .await
        .unwrap();
    let store = svc.store().clone();
    drop(svc);
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .unwrap();
    dir
}

/// acme and bolt share a conversation; acme is backed up; then both write more (bolt holds
/// all of it); acme's disk dies.
async fn story() -> (TestNode, TestNode, Uuid, Uuid, tempfile::TempDir) {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    common::pair(&acme, &bolt).await;
    let id = create(&acme, "bolt", "PO 7781 has not shipped").await;
    converged(&acme, &bolt, id, 1).await;
    let keep = tempfile::tempdir().unwrap();
    acme.backup(&keep.path().join("acme.backup")).await;
    // After the backup: acme replies and starts another conversation, bolt replies; bolt
    // holds all of it.
    reply(&acme, id, "acme after the backup").await;
    let later = create(&acme, "bolt", "Started after the backup").await;
    reply(&bolt, id, "bolt after the backup").await;
    converged(&acme, &bolt, id, 3).await;
    converged(&acme, &bolt, later, 1).await;
    (acme, bolt, id, later, keep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restored_node_that_writes_before_syncing_converges_with_a_partner_holding_newer_changes()
{
    let (acme, bolt, id, later, keep) = story().await;
    let token = acme.token.clone();
    let old_actor = actor_of_last_change(&acme, id);
    acme.stop().await;
    let dir = restore_and_write(
        &keep.path().join("acme.backup"),
        id,
        RestoreOptions::default(),
    )
    .await;
    let acme = TestNode::start_existing(dir, "acme", Role::Retailer, &token).await;
    // Nothing lost on either side: the backup's message, what both wrote after it (given
    // back by bolt), and the restored node's first write (taken by bolt).
    let mut got = converged(&acme, &bolt, id, 4).await;
    got.sort();
    assert_eq!(
        got,
        [
            "acme after the backup",
            "bolt after the backup",
            "first",
            "written before any sync"
        ]
    );
    converged(&acme, &bolt, later, 1).await;
    assert_ne!(
        actor_of_last_change_by_body(&acme, id, "written before any sync"),
        old_actor,
        "the restored node writes as a new actor"
    );
    // The recovery window closed after the first exchange.
    let peers = eventually(30, "the recovery window to close", || async {
        let (_, v) = acme.get("/api/v1/peers").await;
        (v[0]["recovering"] == json!(false)).then_some(v)
    })
    .await;
    assert_eq!(peers[0]["org_id"], "bolt");
    // Both keep working.
    reply(&bolt, id, "and on we go").await;
    converged(&acme, &bolt, id, 5).await;
    stop_and_check(acme).await;
}

/// The negative control: the same story, restored keeping the old actor. The restored node's
/// first write reuses a sequence number bolt already holds with other content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_new_actor_the_same_restore_cannot_converge() {
    let (acme, bolt, id, _later, keep) = story().await;
    acme.stop().await;
    let opts = RestoreOptions {
        new_actor: false,
        ..RestoreOptions::default()
    };
    let dir = restore_and_write(&keep.path().join("acme.backup"), id, opts).await;
    // Open the restored directory and try to merge what bolt holds, as sync would.
    let cfg = parley::config::Config::load(parley::config::Overrides {
        data_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let svc = parley::server::open(&cfg, parley::service::Clock::System)
        .await
        .unwrap();
    let mut ours = stored(svc.store(), id);
    let theirs = stored(bolt.svc().store(), id);
    let err = ours
        .merge(&mut theirs.clone())
        .expect_err("merging must fail without a new actor");
    assert!(
        format!("{err:?}").contains("DuplicateSeqNumber"),
        "expected DuplicateSeqNumber, got {err:?}"
    );
    // With a new actor the same merge succeeds (the test above shows it end to end).
    drop(svc);
}

fn stored(store: &Arc<parley::store::Store>, id: Uuid) -> automerge::Automerge {
    let rtx = store.begin_read().unwrap();
    parley::store::docs::load_automerge(&rtx, id.as_u128())
        .unwrap()
        .expect("the conversation is stored")
}

/// The actor of the change that added the message with `body` to `id`.
fn actor_of_last_change_by_body(n: &TestNode, id: Uuid, body: &str) -> Vec<u8> {
    use automerge::ReadDoc;
    let d = stored(n.svc().store(), id);
    let (_, msgs) = d.get(automerge::ROOT, "messages").unwrap().unwrap();
    for item in d.map_range(&msgs, ..) {
        let automerge::ObjId::Id(_, actor, _) = item.id() else {
            continue;
        };
        if let Some((v, _)) = d.get(item.id(), "body").unwrap()
            && v.as_str() == Some(body)
        {
            return actor.to_bytes().to_vec();
        }
    }
    panic!("no message {body:?} in {id}");
}

fn actor_of_last_change(n: &TestNode, id: Uuid) -> Vec<u8> {
    actor_of_last_change_by_body(n, id, "acme after the backup")
}

/// Periodic backups: each one whole and checked, the newest `keep` kept, other files left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_backups_are_checked_and_only_the_newest_are_kept() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    create(&acme, "bolt", "Kept in every backup").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.txt"), "not ours").unwrap();
    let schedule = parley::service::backup::BackupSchedule {
        dir: dir.path().to_path_buf(),
        every: std::time::Duration::from_millis(300),
        keep: 2,
    };
    let task = tokio::spawn(parley::service::backup::run_schedule(
        acme.svc().clone(),
        schedule,
    ));
    let mut seen = std::collections::BTreeSet::new();
    let names = eventually(60, "three backups, two kept", || {
        let list: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".backup"))
            .collect();
        seen.extend(list.iter().cloned());
        let done = seen.len() >= 3 && list.len() == 2;
        async move { done.then_some(list) }
    })
    .await;
    task.abort();
    for n in names {
        let m = backup::verify(&copy_of(&dir.path().join(&n))).unwrap();
        assert_eq!(m.conversations, 1, "{n}");
    }
    assert!(dir.path().join("README.txt").exists());
}
