//! Notification benchmarks on real parts: a node (`tests/common`'s harness, real sockets), a
//! real SMTP server (aiosmtpd) and webhook receivers (a minimal HTTP server here that stamps
//! each request as it arrives). Measures commit → SMTP accepted, commit → webhook received,
//! durable replies per second with email and two webhooks against none, and a dead receiver
//! under a sustained write load. Results and their reading are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench notify` (needs `NOTIFY_PYTHON` or `.ci/run`'s venv). Scale with:
//!
//! - `PARLEY_BENCH_MAIL_N` replies timed to the SMTP server (default 40)
//! - `PARLEY_BENCH_HOOK_N` replies timed to the webhook receiver (default 200)
//! - `PARLEY_BENCH_WRITERS` concurrent writers of the throughput runs (default 32)
//! - `PARLEY_BENCH_SECS` seconds of each throughput run (default 10)
//! - `PARLEY_BENCH_DEAD_SECS` seconds of writing with a dead receiver (default 120)

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::TestNode;
use common::smtp::SmtpServer;
use parley::domain::Role;
use serde_json::{Value, json};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(mut v: Vec<Duration>, p: f64) -> Duration {
    v.sort();
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn show(label: &str, v: &[Duration]) {
    println!(
        "{label:<48} n={:<5} p50={:>9.1} ms  p99={:>9.1} ms  max={:>9.1} ms",
        v.len(),
        pct(v.to_vec(), 50.0).as_secs_f64() * 1e3,
        pct(v.to_vec(), 99.0).as_secs_f64() * 1e3,
        pct(v.to_vec(), 100.0).as_secs_f64() * 1e3
    );
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A webhook receiver (the tests' one): the wall time each body arrived, with the body.
async fn receiver() -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(SystemTime, Value)>,
) {
    let (port, mut rx) = common::sink::start().await;
    let (tx, out) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(r) = rx.recv().await {
            let _ = tx.send((r.at, r.body));
        }
    });
    (port, out)
}

async fn add_hook(n: &TestNode, port: u16) -> String {
    let (s, v) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["message.created", "conversation.created"]}),
        )
        .await;
    assert!(s.is_success(), "{v}");
    v["id"].as_str().unwrap().to_string()
}

/// A node of bolt with a writer `wes` (whose replies the admin is told of) and, when
/// `notify`, mail to aiosmtpd and webhooks to receivers on `ports`.
async fn node(smtp: Option<&SmtpServer>, extra: &str) -> (TestNode, String) {
    let toml = match smtp {
        Some(s) => format!(
            "{}\n[webhooks]\nallow = [\"loopback\"]\n{extra}",
            s.toml("summary_after = 100000\n")
        ),
        None => String::new(),
    };
    let n = TestNode::start_configured("bolt", Role::Supplier, &toml).await;
    let (s, _) = n
        .post(
            "/api/v1/users",
            json!({"name": "wes", "password": "wes-password-1", "admin": false}),
        )
        .await;
    assert!(s.is_success());
    let (_, t) = n
        .post("/api/v1/tokens", json!({"name": "wes", "user": "wes"}))
        .await;
    if smtp.is_some() {
        let (s, v) = n
            .put(
                "/api/v1/users/admin/notifications",
                json!({"email": "admin@bolt.test", "preferences": {"colleague_activity": "immediate"}}),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    (n, t["token"].as_str().unwrap().to_string())
}

async fn conversations(n: &TestNode, wes: &str, k: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..k {
        let (_, v) = n
            .call(
                "POST",
                "/api/v1/conversations",
                Some(
                    json!({"kind": "message", "partner": "acme", "subject": format!("Bench {i}")}),
                ),
                Some(wes),
            )
            .await;
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Replies from `writers` concurrent clients for `secs`; answers durable replies per second.
async fn throughput(n: &TestNode, wes: &str, ids: &[String], writers: usize, secs: u64) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (http, done, wes) = (http.clone(), done.clone(), wes.to_string());
        let url = format!(
            "{}/api/v1/conversations/{}/messages",
            n.base,
            ids[w % ids.len()]
        );
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while Instant::now() < until {
                let r = http
                    .post(&url)
                    .bearer_auth(&wes)
                    .json(&json!({"body": format!("w{w} r{k}")}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                done.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / secs as f64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let mail_n = env_usize("PARLEY_BENCH_MAIL_N", 40);
    let hook_n = env_usize("PARLEY_BENCH_HOOK_N", 200);
    let writers = env_usize("PARLEY_BENCH_WRITERS", 32);
    let secs = env_usize("PARLEY_BENCH_SECS", 10) as u64;
    let dead_secs = env_usize("PARLEY_BENCH_DEAD_SECS", 120) as u64;
    let phases =
        std::env::var("PARLEY_BENCH_PHASES").unwrap_or_else(|_| "mail,hook,throughput,dead".into());
    let on = |p: &str| phases.split(',').any(|x| x.trim() == p);
    println!(
        "notify bench: mail_n={mail_n} hook_n={hook_n} writers={writers} secs={secs} dead_secs={dead_secs} phases={phases}"
    );
    let smtp = SmtpServer::start(&py).await;
    if on("mail") {
        mail_phase(&smtp, mail_n).await;
    }
    if on("hook") {
        hook_phase(&smtp, hook_n).await;
    }
    if on("throughput") {
        throughput_phase(&smtp, writers, secs).await;
    }
    if on("dead") {
        dead_phase(&smtp, writers, dead_secs).await;
    }
}

async fn mail_phase(smtp: &SmtpServer, mail_n: usize) {
    // Commit (the reply's 2xx) → the SMTP server has the mail (its Maildir file's time).
    let (n, wes) = node(Some(smtp), "").await;
    let ids = conversations(&n, &wes, 4).await;
    smtp.wait_for("admin@bolt.test", 4, 60).await;
    let maildir = smtp.dir.path().join("mail/new");
    let mut lat = Vec::new();
    for i in 0..mail_n {
        let marker = format!("mail-probe-{i}-end");
        let (s, _) = n
            .call(
                "POST",
                &format!("/api/v1/conversations/{}/messages", ids[i % ids.len()]),
                Some(json!({"body": marker})),
                Some(&wes),
            )
            .await;
        assert!(s.is_success());
        let committed = SystemTime::now();
        let t = Instant::now();
        let got = loop {
            let hit = std::fs::read_dir(&maildir)
                .unwrap()
                .flatten()
                .find_map(|e| {
                    let b = std::fs::read(e.path()).ok()?;
                    let needle = marker.as_bytes();
                    b.windows(needle.len())
                        .any(|w| w == needle)
                        .then(|| e.metadata().ok()?.modified().ok())
                        .flatten()
                });
            if let Some(at) = hit {
                break at;
            }
            assert!(t.elapsed() < Duration::from_secs(60), "mail {i} never came");
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        lat.push(got.duration_since(committed).unwrap_or_default());
        // Apart from the next one by more than the settle time: one mail per reply.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    show("commit -> SMTP accepted (settle_ms 300)", &lat);
    n.stop().await;
}

async fn hook_phase(smtp: &SmtpServer, hook_n: usize) {
    // Commit → webhook receiver got it.
    let (port, mut rx) = receiver().await;
    let (n, wes) = node(Some(smtp), "").await;
    add_hook(&n, port).await;
    let ids = conversations(&n, &wes, 4).await;
    for _ in 0..4 {
        rx.recv().await.unwrap();
    }
    let mut lat = Vec::new();
    for i in 0..hook_n {
        let marker = format!("hook-probe-{i}");
        let (s, _) = n
            .call(
                "POST",
                &format!("/api/v1/conversations/{}/messages", ids[i % ids.len()]),
                Some(json!({"body": marker})),
                Some(&wes),
            )
            .await;
        assert!(s.is_success());
        let committed = SystemTime::now();
        let at = loop {
            let (at, body) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("a delivery within 60 s")
                .unwrap();
            if body["data"]["message"]["body"] == json!(marker) {
                break at;
            }
        };
        lat.push(at.duration_since(committed).unwrap_or_default());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    show("commit -> webhook received", &lat);
    n.stop().await;
}

async fn throughput_phase(smtp: &SmtpServer, writers: usize, secs: u64) {
    // Durable replies per second: none configured, then email and two webhooks.
    let (n, wes) = node(None, "").await;
    let ids = conversations(&n, &wes, writers).await;
    let plain = throughput(&n, &wes, &ids, writers, secs).await;
    n.stop().await;
    let (p1, mut r1) = receiver().await;
    let (p2, mut r2) = receiver().await;
    tokio::spawn(async move { while r1.recv().await.is_some() {} });
    tokio::spawn(async move { while r2.recv().await.is_some() {} });
    let (n, wes) = node(Some(smtp), "").await;
    add_hook(&n, p1).await;
    add_hook(&n, p2).await;
    let ids = conversations(&n, &wes, writers).await;
    let notified = throughput(&n, &wes, &ids, writers, secs).await;
    println!(
        "durable replies/s, {writers} writers, {secs} s: none {plain:.0}, email + 2 webhooks {notified:.0} ({:.0} %)",
        notified / plain * 100.0
    );
    n.stop().await;
}

async fn dead_phase(smtp: &SmtpServer, writers: usize, dead_secs: u64) {
    // A dead receiver (nothing listens on its port) under a sustained write load.
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (n, wes) = node(Some(smtp), "").await;
    let hook = add_hook(&n, dead_port).await;
    let rss0 = rss_kb();
    let mut samples = Vec::new();
    let start = Instant::now();
    let mut total = 0.0;
    while start.elapsed() < Duration::from_secs(dead_secs) {
        // Fresh conversations each window, as in the throughput phase: what slows down then is
        // the queue's doing, not threads grown to thousands of messages.
        let ids = conversations(&n, &wes, writers).await;
        let rate = throughput(&n, &wes, &ids, writers, 10).await;
        total += rate * 10.0;
        let (_, h) = n.get(&format!("/api/v1/webhooks/{hook}")).await;
        samples.push((
            start.elapsed().as_secs(),
            rate,
            h["pending"].clone(),
            rss_kb(),
        ));
    }
    for (t, rate, pending, rss) in &samples {
        println!(
            "dead receiver t={t:>4}s  replies/s={rate:>6.0}  pending={pending}  rss={} MB",
            rss / 1024
        );
    }
    println!(
        "dead receiver: {total:.0} replies in {} s; RSS {} MB -> {} MB",
        start.elapsed().as_secs(),
        rss0 / 1024,
        rss_kb() / 1024
    );
    n.stop().await;
}
