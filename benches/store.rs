//! Store and service benchmarks, without HTTP: durable reply latency against a raw redb commit,
//! reply throughput with many concurrent writers, inbox pages at 100,000 conversations, cold
//! start and memory. Results and their reading are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench store`. Scale with environment variables:
//!
//! - `PARLEY_BENCH_N` conversations to store (default 100000; the 10k checkpoint is
//!   `min(10000, N)`)
//! - `PARLEY_BENCH_ACKS` sequential replies timed for the latency figure (default 2000)
//! - `PARLEY_BENCH_WRITERS` concurrent writers (default 64)
//! - `PARLEY_BENCH_SECS` seconds per throughput run (default 5)
//! - `PARLEY_BENCH_QUERIES` inbox pages timed per filter and kind of page (default 200),
//!   each filter capped at `PARLEY_BENCH_QUERY_SECS` seconds (default 4)
//! - `PARLEY_BENCH_DIR` where to put the data directory (default the system temp dir)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::AutoCommit;
use chrono::{Days, Utc};
use parley::domain::commands::{self, Command as Cmd, NewConversation};
use parley::domain::summary::Folder;
use parley::domain::{
    Author, Facet, Kind, OrgId, Progress, Role, State, Summary, Topic, TopicKind, doc, new_id,
};
use parley::service::{Clock, CreateInput, InboxFilter, InboxView, NewToken, Principal, Service};
use parley::store::query::Sort;
use parley::store::{Store, StoreOptions};
use redb::TableDefinition;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Small helpers shared by the measurements.

/// Counts live heap bytes, so memory held can be told apart from RSS the allocator has not
/// returned to the system. Costs two relaxed atomic operations per allocation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) };
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            grew(l.size());
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            grew(new);
            LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Live heap in kB.
fn heap_kb() -> u64 {
    (LIVE.load(Ordering::Relaxed) / 1024) as u64
}

/// Highest live heap so far in kB.
fn heap_peak_kb() -> u64 {
    (PEAK.load(Ordering::Relaxed) / 1024) as u64
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic pseudo-random sequence (splitmix64), so runs pick the same rows.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Stats {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    mean: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    assert!(!v.is_empty(), "no samples");
    v.sort();
    let at = |p: f64| v[((p / 100.0) * (v.len() - 1) as f64).round() as usize];
    let sum: Duration = v.iter().sum();
    Stats {
        n: v.len(),
        p50: at(50.0),
        p99: at(99.0),
        max: *v.last().unwrap(),
        mean: sum / v.len() as u32,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn show(label: &str, s: &Stats) {
    println!(
        "{label:<44} n={:<6} p50={:<12} p99={:<12} mean={:<12} max={}",
        s.n,
        ms(s.p50),
        ms(s.p99),
        ms(s.mean),
        ms(s.max)
    );
}

/// (VmRSS, VmHWM) in kB of a process (`None`: this one).
fn rss_kb(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Scheduler accounting of one thread: time on a CPU, and time runnable but waiting for one.
#[derive(Clone, Copy)]
struct Sched {
    cpu: Duration,
    wait: Duration,
}

/// The accounting of this process's thread named `name` (from /proc/self/task/*/schedstat).
fn thread_sched(name: &str) -> Option<Sched> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let st = std::fs::read_to_string(path.join("schedstat")).ok()?;
        let mut f = st.split_whitespace().map(|v| v.parse::<u64>().ok());
        return Some(Sched {
            cpu: Duration::from_nanos(f.next()??),
            wait: Duration::from_nanos(f.next()??),
        });
    }
    None
}

fn writer_sched() -> Option<Sched> {
    thread_sched("parley-writer")
}

/// Where the writer thread's wall time went since `before`: on a CPU, waiting for a CPU (other
/// processes), or off CPU (blocked in the commit's fsync, or idle waiting for jobs).
fn show_writer(before: Option<Sched>, elapsed: Duration, writes: usize, what: &str) {
    let (Some(a), Some(b)) = (before, writer_sched()) else {
        return;
    };
    let cpu = b.cpu.saturating_sub(a.cpu);
    let wait = b.wait.saturating_sub(a.wait);
    let off = elapsed.saturating_sub(cpu + wait);
    let pct = |d: Duration| 100.0 * d.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "  writer thread: on CPU {:.0}%, waiting for a CPU {:.0}%, off CPU (fsync or idle) {:.0}%; CPU {} per {what}",
        pct(cpu),
        pct(wait),
        pct(off),
        ms(cpu / writes.max(1) as u32)
    );
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// The data set.

const PARTNERS: [&str; 5] = ["bolt", "nut", "gear", "spring", "washer"];
const TOPIC_KINDS: [(TopicKind, &str); 6] = [
    (TopicKind::Order, "PO"),
    (TopicKind::Item, "SKU"),
    (TopicKind::Return, "RMA"),
    (TopicKind::Shipment, "SHP"),
    (TopicKind::Invoice, "INV"),
    (TopicKind::Account, "ACC"),
];

/// Conversation number `i` of the data set: half tasks; of the tasks a third due in the past,
/// a third due later; partners skewed (40/30/20/5/5 %); six in seven with a topic of one of six
/// kinds (about seven conversations per topic ref at 100k); a third with a reference ID.
fn conversation(i: usize) -> CreateInput {
    let kind = if i.is_multiple_of(2) {
        Kind::Task
    } else {
        Kind::Message
    };
    let partner = match i % 20 {
        0..=7 => PARTNERS[0],
        8..=13 => PARTNERS[1],
        14..=17 => PARTNERS[2],
        18 => PARTNERS[3],
        _ => PARTNERS[4],
    };
    let topic = match (i / 2) % 7 {
        6 => None,
        k => Some(Topic {
            kind: TOPIC_KINDS[k].0,
            reference: format!("{}-{}", TOPIC_KINDS[k].1, (i / 14) % 2000),
            label: Some(format!("{} {}", TOPIC_KINDS[k].1, (i / 14) % 2000)),
            url: None,
        }),
    };
    let today = Utc::now().date_naive();
    let due_date = match (kind, (i / 2) % 3) {
        (Kind::Task, 0) => today.checked_sub_days(Days::new((i % 60) as u64 + 1)),
        (Kind::Task, 1) => today.checked_add_days(Days::new((i % 60) as u64 + 1)),
        _ => None,
    };
    CreateInput {
        id: None,
        kind,
        partner: partner.into(),
        subject: format!("Conversation {i}: the item description needs more detail"),
        topic,
        reference_id: i
            .is_multiple_of(3)
            .then(|| format!("REF-{}", (i / 3) % 5000)),
        due_date,
        body: Some(format!(
            "Hello, about conversation {i}: please check the attached details and reply."
        )),
        idempotency_key: None,
    }
}

/// Writes after the create for some rows, so progress and state filters have something.
fn follow_up(i: usize) -> Option<Cmd> {
    if i.is_multiple_of(13) {
        Some(Cmd::Resolve)
    } else if i % 10 == 2 {
        Some(Cmd::SetProgress(Progress::Completed))
    } else if i % 10 == 4 {
        Some(Cmd::SetProgress(Progress::InProgress))
    } else {
        None
    }
}

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

/// Creates conversations `from..to` with `conc` concurrent tasks; returns (elapsed, writes).
async fn load(
    svc: &Arc<Service>,
    from: usize,
    to: usize,
    conc: usize,
    ids: &Arc<Mutex<Vec<Uuid>>>,
) -> (Duration, usize) {
    let next = Arc::new(AtomicUsize::new(from));
    let writes = Arc::new(AtomicUsize::new(0));
    let sched0 = writer_sched();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (svc, next, writes, ids) = (svc.clone(), next.clone(), writes.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let p = admin();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    break;
                }
                let (c, _) = svc.create(&p, conversation(i)).await.expect("create");
                writes.fetch_add(1, Ordering::Relaxed);
                if let Some(cmd) = follow_up(i) {
                    let cmd = match (cmd, c.kind) {
                        (Cmd::SetProgress(_), Kind::Message) => continue,
                        (cmd, _) => cmd,
                    };
                    svc.command(&p, c.id, cmd).await.expect("follow-up");
                    writes.fetch_add(1, Ordering::Relaxed);
                }
                ids.lock().unwrap().push(c.id);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    let writes = writes.load(Ordering::Relaxed);
    show_writer(sched0, elapsed, writes, "write");
    (elapsed, writes)
}

// ---------------------------------------------------------------------------------------------
// Cold start of the real binary.

struct ColdStart {
    listening: Duration,
    healthz: Duration,
    first_page: Duration,
    rss_first_kb: u64,
    rss_after_kb: u64,
    hwm_kb: u64,
}

async fn cold_start(dir: &Path, token: &str) -> ColdStart {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
        .arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("PARLEY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning parley serve");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Reads the "listening on" line, then keeps draining stdout.
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut tx = Some(tx);
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(i) = line.find("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((
                    start.elapsed(),
                    line[i + "listening on ".len()..].trim().to_string(),
                ));
            }
        }
    });
    let (listening, base) = tokio::time::timeout(Duration::from_secs(120), rx)
        .await
        .expect("parley serve did not start within 120 s")
        .expect("parley serve exited before listening");
    let http = reqwest::Client::new();
    let healthz = loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let inbox = |q: &str| {
        http.get(format!("{base}/api/v1/conversations?limit=50{q}"))
            .bearer_auth(token)
            .send()
    };
    let r = inbox("").await.expect("first inbox page");
    assert!(r.status().is_success(), "inbox: {}", r.status());
    r.bytes().await.unwrap();
    let first_page = start.elapsed();
    let rss_first_kb = rss_kb(Some(pid)).0;
    for q in HTTP_QUERIES {
        let r = inbox(q).await.expect("inbox page");
        assert!(r.status().is_success(), "inbox {q}: {}", r.status());
        r.bytes().await.unwrap();
    }
    let (rss_after_kb, hwm_kb) = rss_kb(Some(pid));
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    ColdStart {
        listening,
        healthz,
        first_page,
        rss_first_kb,
        rss_after_kb,
        hwm_kb,
    }
}

/// One inbox page per filter, as the cold-start child answers them before its RSS is read.
const HTTP_QUERIES: &[&str] = &[
    "&kind=task",
    "&state=open",
    "&progress=completed",
    "&overdue=true",
    "&overdue=false",
    "&partner=bolt",
    "&topic_kind=order",
    "&topic_ref=PO-17",
    "&reference_id=REF-42",
    "&kind=task&state=open",
];

// ---------------------------------------------------------------------------------------------
// Inbox queries.

fn filters() -> Vec<(&'static str, Vec<Facet>, Option<bool>)> {
    let bolt = OrgId::parse("bolt").unwrap();
    let gear = OrgId::parse("gear").unwrap();
    vec![
        ("none", vec![], None),
        ("kind=task", vec![Facet::Kind(Kind::Task)], None),
        ("state=open", vec![Facet::State(State::Open)], None),
        ("state=resolved", vec![Facet::State(State::Resolved)], None),
        (
            "progress=completed",
            vec![Facet::Progress(Progress::Completed)],
            None,
        ),
        ("overdue=true", vec![], Some(true)),
        ("overdue=false", vec![], Some(false)),
        ("partner=bolt", vec![Facet::Partner(bolt)], None),
        (
            "topic_kind=order",
            vec![Facet::TopicKind(TopicKind::Order)],
            None,
        ),
        (
            "topic_ref=PO-17",
            vec![Facet::TopicRef("PO-17".into())],
            None,
        ),
        (
            "reference_id=REF-42",
            vec![Facet::ReferenceId("REF-42".into())],
            None,
        ),
        (
            "kind=task&state=open",
            vec![Facet::Kind(Kind::Task), Facet::State(State::Open)],
            None,
        ),
        (
            "partner=gear&overdue=true",
            vec![Facet::Partner(gear)],
            Some(true),
        ),
    ]
}

/// Folders and the due-date order, each over the filters it is used with most.
fn views() -> Vec<(&'static str, Vec<Facet>, Option<bool>, InboxView)> {
    let view = |folder, sort| InboxView {
        folder: Some(folder),
        sort,
    };
    vec![
        (
            "folder=tasks",
            vec![],
            None,
            view(Folder::Tasks, Sort::Activity),
        ),
        (
            "folder=action",
            vec![],
            None,
            view(Folder::Action, Sort::Activity),
        ),
        (
            "folder=unread",
            vec![],
            None,
            view(Folder::Unread, Sort::Activity),
        ),
        (
            "folder=tasks&sort=due",
            vec![],
            None,
            view(Folder::Tasks, Sort::Due),
        ),
        (
            "folder=all&sort=due",
            vec![],
            None,
            view(Folder::All, Sort::Due),
        ),
    ]
}

async fn bench_inbox(svc: &Arc<Service>, per: usize, budget: Duration) -> Vec<(String, Stats)> {
    let p = admin();
    let mut out = Vec::new();
    let cases = filters()
        .into_iter()
        .map(|(n, f, o)| (n, f, o, InboxView::default()))
        .chain(views());
    for (name, facets, overdue, view) in cases {
        let f = |cursor: Option<String>| InboxFilter {
            filters: facets.clone(),
            overdue,
            cursor,
            limit: 50,
            ..Default::default()
        };
        // Warm-up, and the totals for the record.
        let page = svc.inbox_view(&p, f(None), view).await.expect("inbox");
        let (total, rows) = (page.total, page.items.len());
        let started = Instant::now();
        let mut first = Vec::new();
        while first.len() < per && (first.len() < 20 || started.elapsed() < budget) {
            let t = Instant::now();
            let page = svc.inbox_view(&p, f(None), view).await.expect("inbox");
            first.push(t.elapsed());
            std::hint::black_box(page);
        }
        // Following pages: walk the cursor, starting over at the end.
        let started = Instant::now();
        let mut next = Vec::new();
        let second = page.next_cursor.map(|c| c.encode());
        let mut cursor = second.clone();
        while cursor.is_some()
            && next.len() < per
            && (next.len() < 20 || started.elapsed() < budget)
        {
            let t = Instant::now();
            let page = svc
                .inbox_view(&p, f(cursor.clone()), view)
                .await
                .expect("inbox");
            next.push(t.elapsed());
            // At the end, start over from the second page.
            cursor = page
                .next_cursor
                .map(|c| c.encode())
                .or_else(|| second.clone());
        }
        let all: Vec<Duration> = first.iter().chain(next.iter()).copied().collect();
        println!("inbox {name}: total={total} first page rows={rows}");
        let s1 = stats(first);
        show(&format!("  inbox {name} first page"), &s1);
        if !next.is_empty() {
            show(&format!("  inbox {name} following pages"), &stats(next));
        }
        let s = stats(all);
        show(&format!("  inbox {name} all pages"), &s);
        out.push((format!("{name} (total {total})"), s));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Writes.

const RAW: TableDefinition<u64, &[u8]> = TableDefinition::new("raw");

/// Sequential replies through the service, each sample alternating with one raw redb durable
/// commit of one small row in a database in the same directory.
async fn bench_ack(svc: &Arc<Service>, dir: &Path, targets: &[Uuid], n: usize) -> (Stats, Stats) {
    let p = admin();
    let raw = redb::Database::create(dir.join("raw-baseline.redb")).expect("raw redb");
    // The same commit as the store makes it: two-phase with quick repair (two flushes).
    let quick = redb::Database::create(dir.join("raw-quick.redb")).expect("raw redb");
    let value = [7u8; 100];
    let commit = |db: &redb::Database, k: u64, quick_repair: bool| {
        let t = Instant::now();
        let mut tx = db.begin_write().unwrap();
        tx.set_quick_repair(quick_repair);
        tx.open_table(RAW)
            .unwrap()
            .insert(k, value.as_slice())
            .unwrap();
        tx.commit().unwrap();
        t.elapsed()
    };
    let quick_commit = |k: u64| commit(&quick, k, true);
    let raw_commit = |k: u64| commit(&raw, k, false);
    let body = || "Thanks, we are on it and will update the listing today.".to_string();
    // Warm-up: the documents the timed loop uses get loaded into the writer's cache.
    for (k, id) in targets.iter().enumerate() {
        raw_commit(k as u64);
        svc.reply(&p, *id, body(), None, None).await.expect("reply");
    }
    let (mut raw_s, mut par_s) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut quick_s = Vec::with_capacity(n);
    let (mut writer_cpu, mut writer_wait) = (Duration::ZERO, Duration::ZERO);
    for k in 0..n {
        raw_s.push(raw_commit((targets.len() + k) as u64));
        quick_s.push(quick_commit(k as u64));
        let s0 = writer_sched();
        let t = Instant::now();
        svc.reply(&p, targets[k % targets.len()], body(), None, None)
            .await
            .expect("reply");
        par_s.push(t.elapsed());
        if let (Some(a), Some(b)) = (s0, writer_sched()) {
            writer_cpu += b.cpu.saturating_sub(a.cpu);
            writer_wait += b.wait.saturating_sub(a.wait);
        }
    }
    let total: Duration = par_s.iter().sum();
    println!(
        "writer thread per sequential reply: on CPU {} ({:.0}% of the latency), waiting for a CPU {} ({:.0}%)",
        ms(writer_cpu / n as u32),
        100.0 * writer_cpu.as_secs_f64() / total.as_secs_f64(),
        ms(writer_wait / n as u32),
        100.0 * writer_wait.as_secs_f64() / total.as_secs_f64()
    );
    let (quick, par) = (stats(quick_s), stats(par_s));
    show("raw redb, quick repair (the store's commit)", &quick);
    println!(
        "ratio parley/raw with quick repair: p50 {:.2}x, p99 {:.2}x",
        par.p50.as_secs_f64() / quick.p50.as_secs_f64(),
        par.p99.as_secs_f64() / quick.p99.as_secs_f64()
    );
    (stats(raw_s), par)
}

/// Sequential replies to conversations picked at random among all stored ones: most are not
/// in the writer's document cache, so each reply loads its document from redb first.
async fn bench_ack_random(svc: &Arc<Service>, ids: &[Uuid], n: usize) -> Stats {
    let p = admin();
    let mut rng = Rng(42);
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let id = ids[rng.below(ids.len())];
        let t = Instant::now();
        svc.reply(&p, id, "Noted, thanks.".into(), None, None)
            .await
            .expect("reply");
        v.push(t.elapsed());
    }
    stats(v)
}

/// `writers` tasks reply in a loop for `secs`; each to its own conversation (`own`) or to
/// random ones among all stored. Returns (replies per second, latency stats).
async fn bench_throughput(
    svc: &Arc<Service>,
    ids: &Arc<Vec<Uuid>>,
    writers: usize,
    dur: Duration,
    own: bool,
) -> (f64, Stats) {
    let sched0 = writer_sched();
    let start = Instant::now();
    let deadline = start + dur;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (svc, ids) = (svc.clone(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let p = admin();
            let mut rng = Rng(1000 + w as u64);
            let mine = ids[(w * 7919) % ids.len()];
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let id = if own { mine } else { ids[rng.below(ids.len())] };
                let t = Instant::now();
                svc.reply(
                    &p,
                    id,
                    format!("Update {} from writer {w}", lat.len()),
                    None,
                    None,
                )
                .await
                .expect("reply");
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
    show_writer(sched0, elapsed, all.len(), "reply");
    (all.len() as f64 / elapsed.as_secs_f64(), stats(all))
}

// ---------------------------------------------------------------------------------------------
// Where the writer thread's time goes: the CPU steps of one reply, without redb.

fn time_it<T>(reps: usize, mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(f());
    }
    t.elapsed() / reps as u32
}

fn phases() {
    let me = OrgId::parse("acme").unwrap();
    let partner = OrgId::parse("bolt").unwrap();
    let by = Author {
        org: me.clone(),
        user: "admin".into(),
    };
    let now = Utc::now();
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "The item description needs more detail".into(),
        topic: Some(Topic {
            kind: TopicKind::Item,
            reference: "SKU-12345".into(),
            label: None,
            url: None,
        }),
        reference_id: Some("REF-1".into()),
        due_date: None,
        body: Some("Please add dimensions and materials.".into()),
        message_id: new_id(),
        attachments: Vec::new(),
    };
    let conv =
        commands::new_conversation(n, by.clone(), Role::Retailer, &partner, Role::Supplier, now)
            .unwrap();
    let mut d = AutoCommit::new();
    doc::create(&mut d, &conv).unwrap();
    let create_t = time_it(200, || {
        let mut d = AutoCommit::new();
        doc::create(&mut d, &conv).unwrap();
        d.save()
    });
    println!(
        "phase create+save of a new conversation document        {}",
        ms(create_t)
    );
    // Memory held by documents, as the writer's cache holds them (live heap, not RSS).
    let held = 500;
    let h0 = heap_kb();
    let unsaved: Vec<AutoCommit> = (0..held)
        .map(|_| {
            let mut d = AutoCommit::new();
            doc::create(&mut d, &conv).unwrap();
            d
        })
        .collect();
    let h1 = heap_kb();
    let fresh: Vec<AutoCommit> = (0..held)
        .map(|_| {
            let mut d = AutoCommit::new();
            doc::create(&mut d, &conv).unwrap();
            d.save();
            d
        })
        .collect();
    let h2 = heap_kb();
    let bytes = fresh[0].clone().save();
    let loaded: Vec<AutoCommit> = (0..held)
        .map(|_| AutoCommit::load(&bytes).unwrap())
        .collect();
    let h3 = heap_kb();
    let view = doc::read(&loaded[0]).unwrap();
    let replied: Vec<AutoCommit> = (0..held)
        .map(|_| {
            let mut d = AutoCommit::load(&bytes).unwrap();
            let cmd = Cmd::Reply {
                id: new_id(),
                body: "Thanks, we will update the listing today.".into(),
                attachments: Vec::new(),
            };
            commands::apply(&mut d, &view, &cmd, &by, now).unwrap();
            d.save_incremental();
            d
        })
        .collect();
    let h4 = heap_kb();
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / held as f64;
    println!(
        "size_of::<AutoCommit>() = {} B (held inline by value in the writer's cache map)",
        std::mem::size_of::<AutoCommit>()
    );
    println!(
        "heap per document held: created {:.0} KB | created and saved {:.0} KB | loaded from a {} B save {:.0} KB | loaded, then one reply {:.0} KB",
        per(h0, h1),
        per(h1, h2),
        bytes.len(),
        per(h2, h3),
        per(h3, h4)
    );
    drop((unsaved, fresh, loaded, replied));
    let mut messages = 1;
    for target in [1usize, 10, 50, 100, 200] {
        while messages < target {
            let view = doc::read(&d).unwrap();
            let cmd = Cmd::Reply {
                id: new_id(),
                body: "Thanks, we will update the listing today.".into(),
                attachments: Vec::new(),
            };
            commands::apply(&mut d, &view, &cmd, &by, now).unwrap();
            d.save_incremental();
            messages += 1;
        }
        let saved = d.save();
        let read_t = time_it(50, || doc::read(&d).unwrap());
        let view = doc::read(&d).unwrap();
        let apply_t = time_it(50, || {
            let cmd = Cmd::Reply {
                id: new_id(),
                body: "Thanks, we will update the listing today.".into(),
                attachments: Vec::new(),
            };
            commands::apply(&mut d, &view, &cmd, &by, now).unwrap();
            d.rollback();
        });
        let mut d2 = d.fork();
        let view2 = doc::read(&d2).unwrap();
        d2.save_incremental();
        let incr_t = time_it(50, || {
            let cmd = Cmd::Reply {
                id: new_id(),
                body: "Thanks, we will update the listing today.".into(),
                attachments: Vec::new(),
            };
            commands::apply(&mut d2, &view2, &cmd, &by, now).unwrap();
            d2.save_incremental()
        });
        let load_t = time_it(50, || AutoCommit::load(&saved).unwrap());
        let s = Summary::of(&view, &me);
        let json = serde_json::to_vec(&s).unwrap();
        let enc_t = time_it(500, || serde_json::to_vec(&s).unwrap());
        let dec_t = time_it(500, || serde_json::from_slice::<Summary>(&json).unwrap());
        let sum_t = time_it(500, || Summary::of(&view, &me));
        println!(
            "phase @{target:>3} msgs: doc::read {} | apply reply {} | apply+save_incremental {} | \
             load from save ({} B) {} | Summary::of {} | summary JSON ({} B) encode {} decode {}",
            ms(read_t),
            ms(apply_t),
            ms(incr_t),
            saved.len(),
            ms(load_t),
            ms(sum_t),
            json.len(),
            ms(enc_t),
            ms(dec_t)
        );
    }
}

// ---------------------------------------------------------------------------------------------

async fn open_service(dir: &Path) -> (Arc<Service>, Duration) {
    let t = Instant::now();
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&d, StoreOptions::default()))
        .await
        .unwrap()
        .expect("open store");
    (Service::new(store, Clock::System), t.elapsed())
}

async fn close_service(svc: Arc<Service>) {
    let store = svc.store().clone();
    drop(svc);
    tokio::task::spawn_blocking(move || {
        store.shutdown();
        assert_eq!(
            Arc::strong_count(&store),
            1,
            "the store is still referenced elsewhere"
        );
        drop(store);
    })
    .await
    .unwrap();
}

async fn run() {
    let n = env_usize("PARLEY_BENCH_N", 100_000);
    let n10 = n.min(10_000);
    let acks = env_usize("PARLEY_BENCH_ACKS", 2000);
    let writers = env_usize("PARLEY_BENCH_WRITERS", 64);
    let secs = env_usize("PARLEY_BENCH_SECS", 5) as u64;
    let per = env_usize("PARLEY_BENCH_QUERIES", 200);
    let qbudget = Duration::from_secs(env_usize("PARLEY_BENCH_QUERY_SECS", 4) as u64);
    let base = std::env::var_os("PARLEY_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let dir = tmp.path().join("data");
    let bench_start = Instant::now();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    println!(
        "machine: {} CPUs ({cpu}), {} RAM; load average at start {}; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mb(std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)),
        loadavg(),
        Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    println!(
        "parley store bench: N={n} acks={acks} writers={writers} secs={secs} queries={per} dir={}",
        dir.display()
    );

    let (svc, _) = open_service(&dir).await;
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    for p in PARTNERS {
        svc.add_partner(
            &parley::service::Principal::operator(),
            p,
            &format!("{p} supplies"),
            Role::Supplier,
        )
        .await
        .unwrap();
    }
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

    let ids = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let small = 100.min(n10);
    load(&svc, 0, small, small, &ids).await;
    println!("\n== Durable ack of one reply (sequential) on a store of {small} conversations ==");
    let targets: Vec<Uuid> = ids.lock().unwrap().clone();
    let (raw0, par0) = bench_ack(&svc, &dir, &targets, acks).await;
    show("raw redb: 1 insert + durable commit", &raw0);
    show("parley reply (100 cached conversations)", &par0);
    println!(
        "ratio parley/raw: p50 {:.2}x, p99 {:.2}x",
        par0.p50.as_secs_f64() / raw0.p50.as_secs_f64(),
        par0.p99.as_secs_f64() / raw0.p99.as_secs_f64()
    );

    println!("\n== Bulk load (128 concurrent creates; group commit) ==");
    let (t, w) = load(&svc, small, n10, 128, &ids).await;
    println!(
        "loaded {small}..{n10} ({w} writes) in {:.2} s: {:.0} writes/s; heap {} (peak {}), RSS {} (peak {}); db {}",
        t.as_secs_f64(),
        w as f64 / t.as_secs_f64(),
        mb(heap_kb()),
        mb(heap_peak_kb()),
        mb(rss_kb(None).0),
        mb(rss_kb(None).1),
        mb(dir_size(&dir) / 1024)
    );
    close_service(svc).await;
    println!(
        "store closed: heap {}, RSS {}",
        mb(heap_kb()),
        mb(rss_kb(None).0)
    );
    let cs10 = cold_start(&dir, &token).await;
    println!(
        "cold start @{n10}: listening {} | /healthz {} | first inbox page {} | RSS after first page {} | after 11 pages {} (peak {})",
        ms(cs10.listening),
        ms(cs10.healthz),
        ms(cs10.first_page),
        mb(cs10.rss_first_kb),
        mb(cs10.rss_after_kb),
        mb(cs10.hwm_kb)
    );

    let (svc, _) = open_service(&dir).await;
    let mut cs_n = None;
    if n > n10 {
        let mut done = n10;
        while done < n {
            let to = (done + 10_000).min(n);
            let (t, w) = load(&svc, done, to, 128, &ids).await;
            println!(
                "loaded {done}..{to} ({w} writes) in {:.2} s: {:.0} writes/s; heap {} (peak {}), RSS {} (peak {}); db {}",
                t.as_secs_f64(),
                w as f64 / t.as_secs_f64(),
                mb(heap_kb()),
                mb(heap_peak_kb()),
                mb(rss_kb(None).0),
                mb(rss_kb(None).1),
                mb(dir_size(&dir) / 1024)
            );
            done = to;
        }
        close_service(svc).await;
        println!(
            "store closed: heap {}, RSS {}",
            mb(heap_kb()),
            mb(rss_kb(None).0)
        );
        let cs = cold_start(&dir, &token).await;
        println!(
            "cold start @{n}: listening {} | /healthz {} | first inbox page {} | RSS after first page {} | after 11 pages {} (peak {})",
            ms(cs.listening),
            ms(cs.healthz),
            ms(cs.first_page),
            mb(cs.rss_first_kb),
            mb(cs.rss_after_kb),
            mb(cs.hwm_kb)
        );
        cs_n = Some(cs);
    } else {
        close_service(svc).await;
    }

    println!("\n== In-process reopen at {n} ==");
    let (svc, open_t) = open_service(&dir).await;
    let t = Instant::now();
    let page = svc
        .inbox(
            &admin(),
            InboxFilter {
                limit: 50,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    println!(
        "Store::open {} + first inbox page {} (total {}, unread {})",
        ms(open_t),
        ms(t.elapsed()),
        page.total,
        page.unread
    );

    println!("\n== Inbox page of 50 at {n} conversations ==");
    let inbox = bench_inbox(&svc, per, qbudget).await;

    let ids: Arc<Vec<Uuid>> = Arc::new(std::mem::take(&mut *ids.lock().unwrap()));
    println!("\n== Durable ack of one reply (sequential) at {n} conversations ==");
    let targets: Vec<Uuid> = ids
        .iter()
        .step_by((ids.len() / 100).max(1))
        .take(100)
        .copied()
        .collect();
    let (raw, par) = bench_ack(&svc, &dir, &targets, acks).await;
    show("raw redb: 1 insert + durable commit", &raw);
    show("parley reply (100 cached conversations)", &par);
    println!(
        "ratio parley/raw: p50 {:.2}x, p99 {:.2}x",
        par.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        par.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
    let rnd = bench_ack_random(&svc, &ids, (acks / 4).max(10)).await;
    show("parley reply (random of all, mostly uncached)", &rnd);

    println!("\n== {writers} concurrent writers, {secs} s each ==");
    let dur = Duration::from_secs(secs);
    let (rate_r, lat_r) = bench_throughput(&svc, &ids, writers, dur, false).await;
    println!("random conversations: {rate_r:.0} durable replies/s");
    show("  latency under load (random)", &lat_r);
    let (rate_o, lat_o) = bench_throughput(&svc, &ids, writers, dur, true).await;
    println!("own conversation per writer: {rate_o:.0} durable replies/s");
    show("  latency under load (own)", &lat_o);
    println!(
        "in-process heap {} (peak {}), RSS {} (peak {}); db {}",
        mb(heap_kb()),
        mb(heap_peak_kb()),
        mb(rss_kb(None).0),
        mb(rss_kb(None).1),
        mb(dir_size(&dir) / 1024)
    );
    close_service(svc).await;

    // Last, so that its allocations do not show in the RSS figures above.
    println!("\n== CPU steps of one reply on the writer thread (no I/O) ==");
    phases();

    println!("\n== Summary ==");
    println!(
        "ack on a small store: p50 parley {} vs raw {} ({:.2}x); p99 {} vs {} ({:.2}x)  goal <= 1.5x",
        ms(par0.p50),
        ms(raw0.p50),
        par0.p50.as_secs_f64() / raw0.p50.as_secs_f64(),
        ms(par0.p99),
        ms(raw0.p99),
        par0.p99.as_secs_f64() / raw0.p99.as_secs_f64()
    );
    println!(
        "ack at {n}: p50 parley {} vs raw {} ({:.2}x); p99 {} vs {} ({:.2}x)  goal <= 1.5x",
        ms(par.p50),
        ms(raw.p50),
        par.p50.as_secs_f64() / raw.p50.as_secs_f64(),
        ms(par.p99),
        ms(raw.p99),
        par.p99.as_secs_f64() / raw.p99.as_secs_f64()
    );
    println!("{writers} writers: {rate_r:.0}/s random, {rate_o:.0}/s own  goal >= 20000/s");
    for (name, s) in &inbox {
        println!(
            "inbox {name}: p50 {} p99 {}  goal p99 <= 10 ms",
            ms(s.p50),
            ms(s.p99)
        );
    }
    for (at, cs) in [(n10, Some(&cs10)), (n, cs_n.as_ref())] {
        if let Some(cs) = cs {
            println!(
                "cold start @{at}: /healthz {} first page {} RSS {} (peak {})  goal <= 1 s, <= 256 MB",
                ms(cs.healthz),
                ms(cs.first_page),
                mb(cs.rss_after_kb),
                mb(cs.hwm_kb)
            );
        }
    }
    println!(
        "whole bench took {:.1} s",
        bench_start.elapsed().as_secs_f64()
    );
}

fn main() {
    // As `parley serve` does (src/malloc.rs), unless PARLEY_BENCH_MALLOC=default measures
    // glibc's defaults.
    let bounded =
        std::env::var("PARLEY_BENCH_MALLOC").as_deref() != Ok("default") && parley::malloc::bound();
    println!(
        "malloc: {}",
        if bounded {
            "mmap threshold fixed at 128 KiB, one arena per core (as parley serve)"
        } else {
            "glibc defaults"
        }
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
