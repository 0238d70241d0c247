//! A simulated hub: a real `parley serve` (acme, a retailer) on loopback and N light peers
//! (`tests/common/hub.rs`), each a supplier org of its own, paired with its own key and
//! speaking the real protocol over its own socket. Measures:
//!
//! - (a) the hub's memory (VmRSS, and per peer over the hub before anyone connected) with N
//!   idle connected peers;
//! - (b) a restart storm: the hub stops (SIGTERM) and starts again on the same address while
//!   every peer redials with the node's own backoff; the time until every peer's session has
//!   completed its first exchange again, and the new process's peak RSS (VmHWM);
//! - (c) the most first syncs seen waiting their turn at once (`waiting_turn` in
//!   `GET /api/v1/peers`, polled every second), at the first connect and in the storm.
//!
//! Run: `cargo bench --bench hub`. Scale with environment variables:
//!
//! - `PARLEY_BENCH_HUB_PEERS` light peers (default 1000; `10000` for the hub goal)
//! - `PARLEY_BENCH_HUB_CONVS` conversations the hub writes to each supplier (default 1)
//! - `PARLEY_BENCH_HUB_FIRST_SYNCS` the hub's `[sync] first_syncs` (default 4)
//! - `PARLEY_BENCH_HUB_PAIRING` pairings run at once (default 32)

#[allow(dead_code)]
#[path = "../tests/common/bench.rs"]
mod bench;
#[allow(dead_code)]
#[path = "../tests/common/bin.rs"]
mod bin;
#[path = "../tests/common/hub.rs"]
mod hub;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bench::{env_usize, loadavg};
use futures_util::StreamExt;
use hub::LightPeer;
use serde_json::{Value, json};

/// `VmRSS` and `VmHWM` of a process, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Waits until `done` holds for every peer, polling the hub's peer list every second for the
/// most links waiting their turn at once. Returns the time taken and that peak.
async fn until_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    peers: &[Arc<LightPeer>],
    done: impl Fn(&LightPeer) -> bool,
    bound: Duration,
) -> (Duration, usize) {
    let start = Instant::now();
    let mut peak = 0;
    let mut last_poll = Instant::now() - Duration::from_secs(1);
    loop {
        if peers.iter().all(|p| done(p)) {
            return (start.elapsed(), peak);
        }
        assert!(
            start.elapsed() < bound,
            "not every peer got there within {bound:?}"
        );
        if last_poll.elapsed() >= Duration::from_secs(1) {
            last_poll = Instant::now();
            if let Ok(r) = http
                .get(format!("{base}/api/v1/peers"))
                .bearer_auth(token)
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
            {
                let waiting = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["waiting_turn"] == json!(true))
                    .count();
                peak = peak.max(waiting);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run());
}

async fn run() {
    let n = env_usize("PARLEY_BENCH_HUB_PEERS", 1000);
    let convs = env_usize("PARLEY_BENCH_HUB_CONVS", 1);
    let first_syncs = env_usize("PARLEY_BENCH_HUB_FIRST_SYNCS", 4);
    let pairing = env_usize("PARLEY_BENCH_HUB_PAIRING", 32);
    // This process holds one socket per peer too.
    parley::server::fdlimit::raise();
    let node = bin::Node::of("acme", "retailer", &[]);
    std::fs::write(
        node.dir.join(parley::config::CONFIG_FILE),
        format!("[sync]\nfirst_syncs = {first_syncs}\n"),
    )
    .expect("writing parley.toml");
    let server = bin::Server::start(&node.dir).expect("parley serve");
    let base = server.base.clone();
    let listen = base.trim_start_matches("http://").to_string();
    let http = reqwest::Client::new();
    println!(
        "hub bench: {n} peers, {convs} conversation(s) each, first_syncs = {first_syncs}, load {}",
        loadavg()
    );

    let t = Instant::now();
    let peers: Vec<Arc<LightPeer>> = futures_util::stream::iter(0..n)
        .map(|i| {
            let (http, base, token) = (&http, &base, &node.token);
            async move { Arc::new(hub::pair(http, base, token, &format!("sup-{i:05}")).await) }
        })
        .buffer_unordered(pairing)
        .collect()
        .await;
    let paired = t.elapsed();
    let t = Instant::now();
    let writes: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (0..convs).map(move |k| (i, k)))
        .collect();
    futures_util::stream::iter(writes)
        .map(|(i, k)| {
            let (http, base, token, org) = (&http, &base, &node.token, peers[i].org.as_str().to_string());
            async move {
                let r = http
                    .post(format!("{base}/api/v1/conversations"))
                    .bearer_auth(token)
                    .json(&json!({"kind": "message", "partner": org, "subject": format!("Order {k}"), "body": "Please confirm"}))
                    .send()
                    .await
                    .expect("create");
                assert_eq!(r.status(), 201);
            }
        })
        .buffer_unordered(pairing)
        .collect::<Vec<_>>()
        .await;
    let written = t.elapsed();
    let (base_rss, _) = memory(server.pid());

    let tasks: Vec<_> = peers.iter().map(|p| p.spawn()).collect();
    let (first, first_peak) = until_all(
        &http,
        &base,
        &node.token,
        &peers,
        |p| p.status.caught_up.load(Ordering::Acquire),
        Duration::from_secs(600),
    )
    .await;
    // Idle: every link open, nothing to say but pings.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (idle_rss, idle_hwm) = memory(server.pid());

    // The storm: the hub stops and comes back on the same address; everyone redials.
    server.stop();
    let cut = until_all(
        &http,
        &base,
        &node.token,
        &peers,
        |p| !p.status.connected.load(Ordering::Acquire),
        Duration::from_secs(120),
    )
    .await;
    let t = Instant::now();
    let server = bin::Server::start_on(&node.dir, &listen).expect("parley serve again");
    let (storm, storm_peak) = until_all(
        &http,
        &base,
        &node.token,
        &peers,
        |p| {
            p.status.caught_up.load(Ordering::Acquire)
                && p.status.links.load(Ordering::Relaxed) >= 2
        },
        Duration::from_secs(600),
    )
    .await;
    let storm_total = t.elapsed();
    let (storm_rss, storm_hwm) = memory(server.pid());
    let busy: u64 = peers
        .iter()
        .map(|p| p.status.busy.load(Ordering::Relaxed))
        .sum();
    for t in tasks {
        t.abort();
    }
    let per_peer = |kb: u64| (kb.saturating_sub(base_rss) * 1024) / n.max(1) as u64;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| peers | {n} |");
    println!(
        "| pairing (invite + accept) | {:.1} s ({:.1} ms per peer, {pairing} at once) |",
        paired.as_secs_f64(),
        paired.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "| conversations written at the hub | {} in {:.1} s |",
        n * convs,
        written.as_secs_f64()
    );
    println!(
        "| first connect: all caught up | {:.2} s |",
        first.as_secs_f64()
    );
    println!("| first connect: most waiting their turn | {first_peak} |");
    println!(
        "| hub RSS before peers connect | {:.1} MB |",
        base_rss as f64 / 1024.0
    );
    println!(
        "| (a) hub RSS, {n} idle peers | {:.1} MB ({} B per peer) |",
        idle_rss as f64 / 1024.0,
        per_peer(idle_rss)
    );
    println!(
        "| (a) hub peak RSS so far (VmHWM) | {:.1} MB |",
        idle_hwm as f64 / 1024.0
    );
    println!("| links noticed the stop | {:.2} s |", cut.0.as_secs_f64());
    println!(
        "| (b) restart storm: all caught up after start | {:.2} s (of which the loop saw {:.2} s) |",
        storm_total.as_secs_f64(),
        storm.as_secs_f64()
    );
    println!(
        "| (b) hub RSS after the storm / peak (VmHWM) | {:.1} MB / {:.1} MB |",
        storm_rss as f64 / 1024.0,
        storm_hwm as f64 / 1024.0
    );
    println!("| (c) storm: most waiting their turn | {storm_peak} |");
    println!("| upgrades answered 503 (both connects) | {busy} |");
    println!("| load after | {} |", loadavg());
    server.stop();
}
