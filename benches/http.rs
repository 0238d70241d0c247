//! HTTP benchmarks: the real server (`parley::server`) on 127.0.0.1:0 and a reqwest client in
//! the same process, so client and server share the machine's cores. Measures sequential reply
//! latency, durable replies per second with many concurrent requests, and inbox page latency.
//! Results and their reading are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench http`. Scale with environment variables:
//!
//! - `PARLEY_BENCH_HTTP_N` conversations stored before measuring (default 1000)
//! - `PARLEY_BENCH_ACKS` sequential replies timed (default 1000)
//! - `PARLEY_BENCH_WRITERS` concurrent requests (default 64)
//! - `PARLEY_BENCH_SECS` seconds of the concurrent run (default 5)
//! - `PARLEY_BENCH_DIR` where to put the data directory (default the system temp dir)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parley::config::{Config, Overrides};
use parley::domain::{Kind, Role};
use parley::service::{Clock, CreateInput, NewToken, Principal};
use uuid::Uuid;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    assert!(!v.is_empty(), "no samples");
    v.sort();
    let at = |p: f64| v[((p / 100.0) * (v.len() - 1) as f64).round() as usize];
    Stats {
        n: v.len(),
        p50: at(50.0),
        p99: at(99.0),
        max: *v.last().unwrap(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn show(label: &str, s: &Stats) {
    println!(
        "{label:<44} n={:<6} p50={:<12} p99={:<12} max={}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.max)
    );
}

/// CPU time (user + system) used so far by this process's thread named `name`.
fn thread_cpu(name: &str) -> Option<Duration> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        return Some(Duration::from_secs_f64(ticks as f64 / 100.0));
    }
    None
}

/// Whole-process CPU time (user + system), to compare with the writer thread's.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let Some(i) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    let t = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_secs_f64((t(11) + t(12)) as f64 / 100.0)
}

/// This process's resident memory in MB (VmRSS).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// A deterministic pseudo-random sequence (splitmix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

/// Where and how to send replies.
#[derive(Clone)]
struct Target {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Target {
    /// POSTs one reply with a client-chosen id and checks it was acknowledged (201).
    async fn reply(&self, id: Uuid, body: String) {
        let r = self
            .http
            .post(format!("{}/conversations/{id}/messages", self.base))
            .bearer_auth(&self.token)
            .json(&serde_json::json!({ "id": Uuid::now_v7(), "body": body }))
            .send()
            .await
            .expect("send");
        let status = r.status();
        r.bytes().await.expect("body");
        assert_eq!(status.as_u16(), 201, "reply status");
    }
}

async fn run() {
    let n = env_usize("PARLEY_BENCH_HTTP_N", 1000);
    let acks = env_usize("PARLEY_BENCH_ACKS", 1000);
    let writers = env_usize("PARLEY_BENCH_WRITERS", 64);
    let secs = env_usize("PARLEY_BENCH_SECS", 5) as u64;
    let base = std::env::var_os("PARLEY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    println!(
        "parley http bench: conversations={n} acks={acks} writers={writers} secs={secs} dir={}",
        tmp.path().display()
    );

    let cfg = Config::load(Overrides {
        data_dir: Some(tmp.path().join("data")),
        listen: Some("127.0.0.1:0".into()),
        log: Some("warn".into()),
        ..Default::default()
    })
    .expect("config");
    let svc = parley::server::open(&cfg, Clock::System)
        .await
        .expect("open");
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    svc.add_partner(
        &parley::service::Principal::operator(),
        "bolt",
        "Bolt Supplies",
        Role::Supplier,
    )
    .await
    .unwrap();
    svc.add_user(
        &parley::service::Principal::operator(),
        "admin",
        Some("password123".into()),
        true,
    )
    .await
    .unwrap();
    let token = svc
        .create_token(
            &parley::service::Principal::operator(),
            NewToken {
                name: "bench".into(),
                user: Some("admin".into()),
            },
        )
        .await
        .unwrap()
        .secret;

    // Conversations to reply to, made directly through the service.
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (svc, next) = (svc.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let p = Principal {
                user: "admin".into(),
                admin: true,
            };
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break ids;
                }
                let input = CreateInput {
                    id: None,
                    kind: if i % 2 == 0 {
                        Kind::Task
                    } else {
                        Kind::Message
                    },
                    partner: "bolt".into(),
                    subject: format!("Conversation {i}"),
                    topic: None,
                    reference_id: None,
                    due_date: None,
                    body: Some("Hello, please check this.".into()),
                    idempotency_key: None,
                };
                ids.push(svc.create(&p, input).await.expect("create").0.id);
            }
        }));
    }
    let mut ids: Vec<Uuid> = Vec::with_capacity(n);
    for t in tasks {
        ids.extend(t.await.unwrap());
    }
    let ids = Arc::new(ids);
    println!(
        "RSS after creating {n} conversations: {:.1} MB (server and client in one process)",
        rss_mb()
    );

    let acceptor = parley::server::bind(&cfg).await.expect("bind");
    let addr = parley::server::local_addr(&acceptor).expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(parley::server::run(svc.clone(), acceptor, async {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(writers * 2)
        .build()
        .unwrap();

    let target = Target {
        http,
        base: base.clone(),
        token: token.clone(),
    };
    println!("\n== Sequential replies over HTTP ==");
    let mut rng = Rng(7);
    for _ in 0..50 {
        target
            .reply(ids[rng.below(ids.len())], "warm-up".into())
            .await;
    }
    let mut lat = Vec::with_capacity(acks);
    for k in 0..acks {
        let id = ids[rng.below(ids.len())];
        let t = Instant::now();
        target.reply(id, format!("Sequential reply {k}")).await;
        lat.push(t.elapsed());
    }
    let seq = stats(lat);
    show("POST reply, one at a time", &seq);

    println!("\n== {writers} concurrent requests for {secs} s ==");
    let (wcpu0, pcpu0) = (thread_cpu("parley-writer"), process_cpu());
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (target, ids) = (target.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(100 + w as u64);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let id = ids[rng.below(ids.len())];
                let t = Instant::now();
                target
                    .reply(id, format!("Reply {} from client {w}", lat.len()))
                    .await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "{} replies acknowledged (201) in {:.2} s: {rate:.0} durable replies/s",
        all.len(),
        elapsed.as_secs_f64()
    );
    if let (Some(a), Some(b)) = (wcpu0, thread_cpu("parley-writer")) {
        let (w, p) = (b.saturating_sub(a), process_cpu().saturating_sub(pcpu0));
        println!(
            "  CPU per reply: writer thread {} ({:.0}% of wall time), whole process (server and client) {}",
            ms(w / all.len().max(1) as u32),
            100.0 * w.as_secs_f64() / elapsed.as_secs_f64(),
            ms(p / all.len().max(1) as u32)
        );
    }
    let conc = stats(all);
    show("  latency under load", &conc);

    println!("\n== Inbox page of 50 over HTTP at {n} conversations ==");
    let mut lat = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        let r = target
            .http
            .get(format!("{base}/conversations?limit=50"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("inbox");
        assert!(r.status().is_success());
        r.bytes().await.unwrap();
        lat.push(t.elapsed());
    }
    let inbox = stats(lat);
    show("GET inbox page, one at a time", &inbox);

    println!("RSS at the end: {:.1} MB", rss_mb());
    let _ = stop.send(());
    server.await.unwrap().expect("server");

    println!("\n== Summary ==");
    println!(
        "HTTP reply one at a time: p50 {} p99 {}",
        ms(seq.p50),
        ms(seq.p99)
    );
    println!("HTTP {writers} concurrent: {rate:.0} durable replies/s  goal >= 20000/s");
    println!(
        "HTTP inbox page: p50 {} p99 {}",
        ms(inbox.p50),
        ms(inbox.p99)
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
