//! Team inbox benchmarks through HTTP: a bulk resolve of 1,000 conversations, and the CSV
//! export of 100,000 rows with the node's peak memory above idle. Results and their reading
//! are in BENCHMARKS.md.
//!
//! The bulk run uses `tests/common`'s node (in this process, real sockets). The export runs
//! against `parley serve` as its own process, so the memory read from its
//! `/proc/<pid>/status` is the node's alone: the data set is written first through the
//! service in this process, which then closes the store and starts the binary on it. Peak
//! RSS is VmHWM after resetting it (`/proc/<pid>/clear_refs`) at idle, checked against
//! VmRSS sampled every 5 ms while the body streams.
//!
//! Run: `cargo bench --bench team`. Scale with:
//!
//! - `PARLEY_BENCH_BULK_N` conversations resolved in one request (default 1000)
//! - `PARLEY_BENCH_BULK_REPS` timed bulk requests, each resolving or reopening all (default 5)
//! - `PARLEY_BENCH_EXPORT_N` conversations exported (default 100000)
//! - `PARLEY_BENCH_DIR` where to put the export's data directory (default the system temp dir)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::TestNode;
use common::bench::{env_usize, loadavg};
use futures_util::StreamExt;
use parley::domain::{Kind, Role};
use parley::service::{Clock, CreateInput, Principal, Service};
use parley::store::{Store, StoreOptions};
use serde_json::json;

/// (VmRSS, VmHWM) in kB of process `pid`.
fn rss_kb(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// (a) Bulk resolve through HTTP.

async fn bench_bulk(n: usize, reps: usize) {
    println!("\n== Bulk resolve of {n} conversations in one request (HTTP, durable) ==");
    let node = TestNode::start("acme", Role::Retailer).await;
    let p = Principal {
        user: "admin".into(),
        admin: true,
    };
    let mut ids = Vec::with_capacity(n);
    let created = futures_util::stream::iter(0..n)
        .map(|i| {
            let (svc, p) = (node.svc().clone(), p.clone());
            async move {
                svc.create(&p, message(i, "bolt"))
                    .await
                    .expect("create")
                    .0
                    .id
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    ids.extend(created.into_iter().map(|id| id.to_string()));
    let http = reqwest::Client::new();
    let mut times = Vec::new();
    for rep in 0..reps {
        let action = if rep % 2 == 0 { "resolve" } else { "reopen" };
        let t = Instant::now();
        let r = http
            .post(format!("{}/api/v1/conversations/bulk", node.base))
            .bearer_auth(&node.token)
            .json(&json!({"action": action, "ids": ids}))
            .send()
            .await
            .expect("bulk request");
        assert!(r.status().is_success(), "bulk: {}", r.status());
        let v: serde_json::Value = r.json().await.expect("bulk answer");
        let took = t.elapsed();
        assert_eq!(v["changed"].as_u64(), Some(n as u64), "{action}: {v}");
        println!(
            "bulk {action:<8} n={n}  {:>8.1} ms  ({:.0} conversations/s)",
            took.as_secs_f64() * 1e3,
            n as f64 / took.as_secs_f64()
        );
        times.push(took);
    }
    times.sort();
    println!(
        "bulk of {n}: p50 {:.1} ms, max {:.1} ms over {reps} requests (goal: 1,000 in ≤ 2 s)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// (b) Export of 100,000 rows from `parley serve`.

const PARTNERS: [&str; 3] = ["bolt", "gear", "nuts"];

fn message(i: usize, partner: &str) -> CreateInput {
    CreateInput {
        id: None,
        kind: if i.is_multiple_of(2) {
            Kind::Task
        } else {
            Kind::Message
        },
        partner: partner.into(),
        subject: format!("Conversation {i}: the item description, as sent, needs more detail"),
        topic: None,
        reference_id: i.is_multiple_of(3).then(|| format!("REF-{i}")),
        due_date: None,
        body: Some(format!(
            "Hello, about conversation {i}: please check the attached details and reply, \"soon\"."
        )),
        idempotency_key: None,
    }
}

/// Writes `n` conversations into a fresh data directory; returns an admin token.
async fn load(dir: &std::path::Path, n: usize) -> String {
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&d, StoreOptions::default()))
        .await
        .unwrap()
        .expect("open store");
    let svc = Service::new(store, Clock::System);
    let op = Principal::operator();
    let token = common::bench::set_up_acme(&svc, &PARTNERS).await;
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..128 {
        let (svc, next, op) = (svc.clone(), next.clone(), op.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                svc.create(&op, message(i, PARTNERS[i % PARTNERS.len()]))
                    .await
                    .expect("create");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "loaded {n} conversations in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let store = svc.store().clone();
    drop(svc);
    tokio::task::spawn_blocking(move || {
        store.shutdown();
        drop(store);
    })
    .await
    .unwrap();
    token
}

async fn bench_export(n: usize) {
    println!("\n== CSV export of {n} rows from `parley serve` (a process of its own) ==");
    let base = std::env::var_os("PARLEY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let dir = tmp.path().join("data");
    let token = load(&dir, n).await;

    let server = common::bin::start(&dir)
        .await
        .expect("parley serve on the loaded data directory");
    let pid = server.pid();
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let url = |q: &str| format!("{base}/api/v1/conversations{q}");

    // Idle: started, one inbox page answered (the first read warms the same paths).
    let r = http
        .get(url("?limit=50"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("inbox page");
    assert!(r.status().is_success());
    r.bytes().await.unwrap();
    let (idle_kb, _) = rss_kb(pid);
    // Resets VmHWM to the current RSS, so the peak read afterwards is the export's.
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();

    let sampled = Arc::new(AtomicU64::new(idle_kb));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (sampled, stop) = (sampled.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sampled.fetch_max(rss_kb(pid).0, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    for query in ["?folder=inbox", "?folder=all&sort=due"] {
        let t = Instant::now();
        let r = http
            .get(url(&format!("/export.csv{query}")))
            .bearer_auth(&token)
            .send()
            .await
            .expect("export");
        assert!(r.status().is_success(), "export: {}", r.status());
        let first_byte = t.elapsed();
        let (mut bytes, mut lines) = (0usize, 0usize);
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.expect("export body");
            bytes += chunk.len();
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        let took = t.elapsed();
        let rows = lines.saturating_sub(1);
        assert_eq!(rows, n, "export{query}: every row once");
        println!(
            "export.csv{query:<22} rows={rows:<7} {:>7.1} MB in {:>7.1} ms (first byte {:.1} ms; {:.0} rows/s)",
            bytes as f64 / 1e6,
            took.as_secs_f64() * 1e3,
            first_byte.as_secs_f64() * 1e3,
            rows as f64 / took.as_secs_f64()
        );
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let (after_kb, hwm_kb) = rss_kb(pid);
    let peak_kb = sampled
        .load(Ordering::Relaxed)
        .max(if reset { hwm_kb } else { 0 });
    println!(
        "node RSS: idle {}, peak during the exports {} ({} above idle; VmHWM {}), after {}; goal ≤ 64 MB above idle",
        mb(idle_kb),
        mb(peak_kb),
        mb(peak_kb.saturating_sub(idle_kb)),
        if reset {
            mb(hwm_kb)
        } else {
            "not reset (clear_refs refused): sampled peak only".into()
        },
        mb(after_kb)
    );
    common::bin::stop(server).await;
}

async fn run() {
    println!(
        "parley team bench: {} CPUs, load average at start {}, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    bench_bulk(
        env_usize("PARLEY_BENCH_BULK_N", 1000),
        env_usize("PARLEY_BENCH_BULK_REPS", 5).max(1),
    )
    .await;
    bench_export(env_usize("PARLEY_BENCH_EXPORT_N", 100_000)).await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
