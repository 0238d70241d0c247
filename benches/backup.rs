//! Backup and restore at scale: a backup of 100,000 conversations taken while 64 writers
//! reply to random conversations — its time, and the writers' throughput during it against
//! the same writers without a backup — and the restore of that backup to a serving node (the
//! real `parley restore`, then `parley serve` until it answers the first inbox page). Results
//! and their reading are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench backup`. Scale with:
//!
//! - `PARLEY_BENCH_BACKUP_N` conversations (default 100000)
//! - `PARLEY_BENCH_BACKUP_WRITERS` concurrent writers (default 64)
//! - `PARLEY_BENCH_BACKUP_BASE_SECS` seconds of writes measured without a backup (default 10)
//! - `PARLEY_BENCH_DIR` where to put the data directories (default the system temp dir)

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::bench::{env_usize, loadavg};
use common::bin;
use parley::domain::Kind;
use parley::service::{Clock, CreateInput, Principal, Service};
use parley::store::{Store, StoreOptions};
use uuid::Uuid;

const PARTNERS: [&str; 4] = ["bolt", "cobalt", "delta", "ember"];

fn conversation(i: usize) -> CreateInput {
    CreateInput {
        id: None,
        kind: if i.is_multiple_of(2) {
            Kind::Task
        } else {
            Kind::Message
        },
        partner: PARTNERS[i % PARTNERS.len()].into(),
        subject: format!("Conversation {i}: the item description, as sent, needs more detail"),
        topic: None,
        reference_id: i.is_multiple_of(3).then(|| format!("REF-{i}")),
        due_date: None,
        body: Some(format!(
            "Hello, about conversation {i}: please check the details and reply soon."
        )),
        idempotency_key: None,
    }
}

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

async fn open(dir: &Path) -> Arc<Service> {
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&d, StoreOptions::default()))
        .await
        .unwrap()
        .expect("open store");
    Service::new(store, Clock::System)
}

async fn close(svc: Arc<Service>) {
    let store = svc.store().clone();
    drop(svc);
    tokio::task::spawn_blocking(move || {
        store.shutdown();
        drop(store);
    })
    .await
    .unwrap();
}

/// `n` conversations with a first message and one reply each; returns their ids and a token.
async fn load(svc: &Arc<Service>, n: usize) -> (Vec<Uuid>, String) {
    let token = common::bench::set_up_acme(svc, &PARTNERS).await;
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let mut tasks = Vec::new();
    for _ in 0..128 {
        let (svc, next, ids) = (svc.clone(), next.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let (c, _) = svc.create(&admin(), conversation(i)).await.expect("create");
                svc.reply(&admin(), c.id, format!("reply to {i}"), None, None)
                    .await
                    .expect("reply");
                ids.lock().unwrap().push(c.id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "loaded {n} conversations (2 messages each) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let ids = ids.lock().unwrap().clone();
    (ids, token)
}

/// Writers replying to random conversations until `stop`; each durable reply is counted, with
/// the time it was acknowledged.
fn writers(
    svc: &Arc<Service>,
    ids: &Arc<Vec<Uuid>>,
    n: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<Instant>>> {
    (0..n)
        .map(|w| {
            let (svc, ids, stop) = (svc.clone(), ids.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (w as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let id = ids[(x % ids.len() as u64) as usize];
                    svc.reply(&admin(), id, format!("writer {w}"), None, None)
                        .await
                        .expect("reply");
                    acked.push(Instant::now());
                }
                acked
            })
        })
        .collect()
}

async fn collect(tasks: Vec<tokio::task::JoinHandle<Vec<Instant>>>) -> Vec<Instant> {
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn rate(acked: &[Instant], from: Instant, to: Instant) -> f64 {
    let n = acked.iter().filter(|t| **t >= from && **t < to).count();
    n as f64 / (to - from).as_secs_f64()
}

fn file_mb(p: &Path) -> f64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64 / 1e6
}

async fn run() {
    let n = env_usize("PARLEY_BENCH_BACKUP_N", 100_000);
    let nw = env_usize("PARLEY_BENCH_BACKUP_WRITERS", 64);
    let base_secs = env_usize("PARLEY_BENCH_BACKUP_BASE_SECS", 10) as u64;
    let root = match std::env::var("PARLEY_BENCH_DIR") {
        Ok(d) => tempfile::tempdir_in(d).unwrap(),
        Err(_) => tempfile::tempdir().unwrap(),
    };
    println!(
        "backup bench: {n} conversations, {nw} writers; load before: {}",
        loadavg()
    );
    let dir = root.path().join("node");
    let svc = open(&dir).await;
    let (ids, token) = load(&svc, n).await;
    let ids = Arc::new(ids);
    println!("database {:.0} MB", file_mb(&dir.join("parley.redb")));

    // Writers alone.
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&svc, &ids, nw, &stop);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(base_secs)).await;
    let to = Instant::now();
    stop.store(true, Ordering::Relaxed);
    let base = rate(&collect(tasks).await, from, to);
    println!("writers alone: {base:.0} durable replies/s over {base_secs} s");

    // Writers while a backup runs (twice).
    for run in 1..=2 {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(&svc, &ids, nw, &stop);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let file = root.path().join(format!("run{run}.backup"));
        let from = Instant::now();
        let m = svc.backup_to(&admin(), file.clone()).await.expect("backup");
        let to = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let acked = collect(tasks).await;
        let during = rate(&acked, from, to);
        println!(
            "backup {run}: {:.1} s for {} conversations, {:.0} MB file; writers meanwhile {during:.0} replies/s = {:.0} % of alone; load {}",
            (to - from).as_secs_f64(),
            m.conversations,
            file_mb(&file),
            100.0 * during / base,
            loadavg()
        );
    }
    close(svc).await;

    // Restore to serving: the real binary, as an operator runs it.
    let file = root.path().join("run2.backup");
    let target = root.path().join("restored");
    let t = Instant::now();
    let said = bin::cli_ok(&target, &["restore", file.to_str().unwrap()]);
    let restored = t.elapsed();
    let s = bin::start(&target).await.expect("parley serve");
    let listening = t.elapsed();
    let page = reqwest::Client::new()
        .get(s.url("/conversations?limit=50"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let first_page = t.elapsed();
    println!("{}", said.lines().next().unwrap_or_default());
    println!(
        "restore to serving: restore (with index rebuild) {:.1} s, listening {:.1} s, first inbox page {:.1} s; load {}",
        restored.as_secs_f64(),
        listening.as_secs_f64(),
        first_page.as_secs_f64(),
        loadavg()
    );
    bin::stop(s).await;
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}
