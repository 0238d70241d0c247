//! Partner sync between real nodes on loopback: first sync of a large backlog, reconnecting with
//! nothing or a little changed, live propagation of one reply, and the memory of a node that
//! serves several syncing peers. Bytes, messages and timings are read off a TCP proxy between
//! the nodes that decodes the WebSocket and sync frames it forwards. Results and their
//! reading are in BENCHMARKS.md ("Partner sync").
//!
//! Run: `cargo bench --bench sync`. Scale with environment variables:
//!
//! - `PARLEY_BENCH_SYNC_N` conversations shared by the two nodes (default 10000)
//! - `PARLEY_BENCH_SYNC_MSGS` messages per conversation (default 20)
//! - `PARLEY_BENCH_SYNC_CHANGED` conversations changed before a reconnect (default 100)
//! - `PARLEY_BENCH_SYNC_RECONNECTS` repetitions of each reconnect measurement (default 5)
//! - `PARLEY_BENCH_SYNC_REPLIES` live replies timed (default 200)
//! - `PARLEY_BENCH_SYNC_MEM_N` conversations at the node whose memory is measured
//!   (default 100000; 0 skips the memory run)
//! - `PARLEY_BENCH_SYNC_PEERS` peers syncing from that node at once (default 5)
//! - `PARLEY_BENCH_DIR` where to put the data directories (default the system temp dir)

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use parley::config::{Config, Overrides};
use parley::domain::{Kind, Role};
use parley::service::{Clock, CreateInput, NewToken, Principal, Service};
use parley_sync::{Record, decode_frame};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

// The WebSocket reader of the proxy tests, shared rather than copied.
#[allow(dead_code)]
#[path = "../tests/common/wstap.rs"]
mod wstap;
use wstap::{Dir, WsTap};

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A deterministic pseudo-random sequence (splitmix64).
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
    /// `k` distinct indexes below `n`.
    fn distinct(&mut self, k: usize, n: usize) -> Vec<usize> {
        let mut seen = HashSet::new();
        while seen.len() < k.min(n) {
            seen.insert(self.below(n));
        }
        seen.into_iter().collect()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn kb(b: u64) -> String {
    format!("{:.1} KB", b as f64 / 1024.0)
}

fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / (1024.0 * 1024.0))
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((p / 100.0) * (v.len() - 1) as f64).round() as usize]
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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

/// CPU time on a CPU per thread of this process: tid → (name, time).
fn thread_cpu() -> HashMap<u32, (String, Duration)> {
    let mut out = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let st = std::fs::read_to_string(e.path().join("schedstat")).unwrap_or_default();
        let ns = st
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        out.insert(tid, (comm.trim().to_string(), Duration::from_nanos(ns)));
    }
    out
}

fn writer_tids() -> HashSet<u32> {
    thread_cpu()
        .into_iter()
        .filter(|(_, (name, _))| name == "parley-writer")
        .map(|(tid, _)| tid)
        .collect()
}

/// Where CPU went between two snapshots: the two writers named, everything else summed.
fn cpu_report(
    before: &HashMap<u32, (String, Duration)>,
    wall: Duration,
    named: &[(&str, &HashSet<u32>)],
) -> String {
    let after = thread_cpu();
    let delta = |tid: &u32| {
        let a = after.get(tid).map_or(Duration::ZERO, |x| x.1);
        let b = before.get(tid).map_or(Duration::ZERO, |x| x.1);
        a.saturating_sub(b)
    };
    let mut parts = Vec::new();
    let mut counted = HashSet::new();
    for (label, tids) in named {
        let d: Duration = tids.iter().map(delta).sum();
        counted.extend(tids.iter().copied());
        parts.push(format!("{label} {:.1} s", d.as_secs_f64()));
    }
    let rest: Duration = after
        .keys()
        .filter(|t| !counted.contains(t))
        .map(delta)
        .sum();
    let total: Duration = after.keys().map(delta).sum();
    parts.push(format!(
        "other threads (runtime, blocking pool, proxy) {:.1} s",
        rest.as_secs_f64()
    ));
    format!(
        "CPU {:.1} s over {:.1} s wall ({:.0}% of 2 cores): {}",
        total.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * total.as_secs_f64() / wall.as_secs_f64() / 2.0,
        parts.join(", ")
    )
}

// ---------------------------------------------------------------------------------------------
// A counting, decoding, cutting TCP proxy.

/// What one sync frame carried.
#[derive(Clone, Copy, Default, Debug)]
struct Tally {
    frames: u64,
    hello: u64,
    feed: u64,
    feed_entries: u64,
    ack: u64,
    /// SYNC records carrying changes, and their bytes.
    content: u64,
    content_bytes: u64,
    /// SYNC records without changes (requests, acknowledgements), and their bytes.
    control: u64,
    control_bytes: u64,
    other: u64,
    /// Bytes of the sync frames (WebSocket payloads).
    frame_bytes: u64,
}

impl Tally {
    fn of(message: &[u8]) -> Tally {
        let mut t = Tally {
            frames: 1,
            frame_bytes: message.len() as u64,
            ..Tally::default()
        };
        let Ok(frame) = decode_frame(message) else {
            t.other += 1;
            return t;
        };
        for r in frame.records {
            match r {
                Record::Hello { .. } => t.hello += 1,
                Record::Feed { entries, .. } => {
                    t.feed += 1;
                    t.feed_entries += entries.len() as u64;
                }
                Record::Ack { .. } => t.ack += 1,
                Record::Sync { message, .. } => {
                    let changes = automerge::sync::Message::decode(&message)
                        .map(|m| !m.changes.is_empty())
                        .unwrap_or(false);
                    if changes {
                        t.content += 1;
                        t.content_bytes += message.len() as u64;
                    } else {
                        t.control += 1;
                        t.control_bytes += message.len() as u64;
                    }
                }
                _ => t.other += 1,
            }
        }
        t
    }

    fn add(&mut self, o: &Tally) {
        self.frames += o.frames;
        self.hello += o.hello;
        self.feed += o.feed;
        self.feed_entries += o.feed_entries;
        self.ack += o.ack;
        self.content += o.content;
        self.content_bytes += o.content_bytes;
        self.control += o.control;
        self.control_bytes += o.control_bytes;
        self.other += o.other;
        self.frame_bytes += o.frame_bytes;
    }

    fn show(&self) -> String {
        format!(
            "{} frames ({}), records: {} HELLO, {} FEED ({} entries), {} ACK, {} SYNC with changes ({}), {} SYNC without ({}), {} other",
            self.frames,
            kb(self.frame_bytes),
            self.hello,
            self.feed,
            self.feed_entries,
            self.ack,
            self.content,
            kb(self.content_bytes),
            self.control,
            kb(self.control_bytes),
            self.other
        )
    }
}

struct Msg {
    at: Instant,
    dir: Dir,
    tally: Tally,
}

struct ConnLog {
    accepted: Instant,
    /// When the server's `101 Switching Protocols` went through.
    upgraded: Option<Instant>,
    bytes_up: u64,
    bytes_down: u64,
    msgs: Vec<Msg>,
}

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    conns: Mutex<Vec<Arc<Mutex<ConnLog>>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if s.down.load(Ordering::SeqCst) {
                    continue;
                }
                let accepted = Instant::now();
                let Ok(up) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let _ = (client.set_nodelay(true), up.set_nodelay(true));
                let log = Arc::new(Mutex::new(ConnLog {
                    accepted,
                    upgraded: None,
                    bytes_up: 0,
                    bytes_down: 0,
                    msgs: Vec::new(),
                }));
                s.conns.lock().unwrap().push(log.clone());
                let (cr, cw) = client.into_split();
                let (ur, uw) = up.into_split();
                let t1 = tokio::spawn(pipe(cr, uw, Dir::Up, log.clone()));
                let t2 = tokio::spawn(pipe(ur, cw, Dir::Down, log));
                let mut tasks = s.tasks.lock().unwrap();
                tasks.retain(|t| !t.is_finished());
                tasks.extend([t1, t2]);
            }
        });
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Drops every live connection, as a network failure would.
    fn cut(&self) {
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Connections that became WebSockets, oldest first.
    fn ws_conns(&self) -> Vec<Arc<Mutex<ConnLog>>> {
        self.shared
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.lock().unwrap().upgraded.is_some())
            .cloned()
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: Dir, log: Arc<Mutex<ConnLog>>) {
    let mut tap = WsTap::new(dir);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        let was_upgraded = tap.upgraded;
        let messages = tap.push(&buf[..n]);
        let now = Instant::now();
        let mut l = log.lock().unwrap();
        match dir {
            Dir::Up => l.bytes_up += n as u64,
            Dir::Down => l.bytes_down += n as u64,
        }
        if dir == Dir::Down && tap.upgraded && !was_upgraded {
            l.upgraded = Some(now);
        }
        for m in messages {
            l.msgs.push(Msg {
                at: now,
                dir,
                tally: Tally::of(&m),
            });
        }
    }
    let _ = to.shutdown().await;
}

/// One connection's traffic, summarised.
struct ConnStats {
    bytes_up: u64,
    bytes_down: u64,
    up: Tally,
    down: Tally,
    /// Runs of consecutive sync frames in one direction, in time order.
    flights: usize,
    /// TCP accept to the `101` answer.
    handshake: Duration,
    /// TCP accept to the last sync frame.
    last_frame: Duration,
    /// The sequence of frames: direction and record kinds, for small exchanges.
    sequence: String,
}

impl ConnStats {
    fn of(log: &Arc<Mutex<ConnLog>>) -> ConnStats {
        let l = log.lock().unwrap();
        let (mut up, mut down) = (Tally::default(), Tally::default());
        let mut flights = 0;
        let mut last_dir = None;
        let mut seq = Vec::new();
        for m in &l.msgs {
            match m.dir {
                Dir::Up => up.add(&m.tally),
                Dir::Down => down.add(&m.tally),
            }
            if last_dir != Some(m.dir) {
                flights += 1;
                last_dir = Some(m.dir);
            }
            let t = &m.tally;
            let mut kinds = Vec::new();
            for (n, name) in [
                (t.hello, "HELLO"),
                (t.feed_entries, "FEED entries"),
                (t.ack, "ACK"),
                (t.content, "SYNC+changes"),
                (t.control, "SYNC"),
            ] {
                if n > 0 {
                    kinds.push(format!("{n} {name}"));
                }
            }
            seq.push(format!(
                "{} +{:.1}ms {}B [{}]",
                if m.dir == Dir::Up { "B→A" } else { "A→B" },
                (m.at - l.accepted).as_secs_f64() * 1e3,
                t.frame_bytes,
                kinds.join(", ")
            ));
        }
        ConnStats {
            bytes_up: l.bytes_up,
            bytes_down: l.bytes_down,
            up,
            down,
            flights,
            handshake: l.upgraded.map_or(Duration::ZERO, |u| u - l.accepted),
            last_frame: l.msgs.last().map_or(Duration::ZERO, |m| m.at - l.accepted),
            sequence: seq.join("; "),
        }
    }

    fn round_trips(&self) -> usize {
        self.flights.div_ceil(2)
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes.

struct Node {
    base: String,
    addr: SocketAddr,
    token: String,
    svc: Arc<Service>,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

fn bench_dir() -> PathBuf {
    std::env::var_os("PARLEY_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

/// Opens a data directory with an identity, an admin token and `partners`.
async fn prepare(
    dir: &Path,
    org: &str,
    role: Role,
    partners: &[(&str, Role)],
) -> (Arc<Service>, String) {
    let cfg = Config::load(Overrides {
        data_dir: Some(dir.to_path_buf()),
        listen: Some("127.0.0.1:0".into()),
        allow_loopback_peers: Some(true),
        ..Default::default()
    })
    .unwrap();
    let svc = parley::server::open(&cfg, Clock::System).await.unwrap();
    svc.init_identity(org, &format!("{org} Inc"), role)
        .await
        .unwrap();
    svc.add_user(
        &parley::service::Principal::operator(),
        "admin",
        Some("correct-horse".into()),
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
    for (id, r) in partners {
        svc.add_partner(
            &parley::service::Principal::operator(),
            id,
            &format!("{id} Co"),
            *r,
        )
        .await
        .unwrap();
    }
    (svc, token)
}

impl Node {
    async fn start(org: &str, role: Role, partners: &[(&str, Role)]) -> Node {
        let dir = tempfile::tempdir_in(bench_dir()).unwrap();
        let (svc, token) = prepare(dir.path(), org, role, partners).await;
        let cfg = Config::load(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            allow_loopback_peers: Some(true),
            ..Default::default()
        })
        .unwrap();
        let acceptor = parley::server::bind(&cfg).await.unwrap();
        let addr = parley::server::local_addr(&acceptor).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let s = svc.clone();
        let task = tokio::spawn(async move {
            parley::server::run(s, acceptor, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        // `run` sets the public URL to the bound address first thing.
        while svc.public_url().is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Node {
            base: format!("http://{addr}"),
            addr,
            token,
            svc,
            _dir: dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

async fn http_get(http: &reqwest::Client, base: &str, token: &str, path: &str) -> Value {
    http.get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

async fn http_post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Pairs `b` with the node at `a_base` through an invite made there.
async fn pair(http: &reqwest::Client, a_base: &str, a_token: &str, b: &Node) {
    let me = b.svc.identity().await.unwrap().unwrap();
    let body = json!({"org_id": me.org_id.to_string(), "org_name": me.org_name, "role": me.role.to_string()});
    let (s, inv) = http_post(http, a_base, a_token, "/api/v1/peers/invites", body).await;
    assert_eq!(s, 200, "{inv}");
    let (s, p) = http_post(
        &b.http,
        &b.base,
        &b.token,
        "/api/v1/peers",
        json!({"code": inv["code"]}),
    )
    .await;
    assert_eq!(s, 201, "{p}");
}

/// Conversations this node has stored from elsewhere or made (its feed's end).
async fn feed_high(svc: &Arc<Service>) -> u64 {
    svc.changes(u64::MAX - 1, 1).await.unwrap().1
}

async fn peer_status(n: &Node) -> Value {
    let v = http_get(&n.http, &n.base, &n.token, "/api/v1/peers").await;
    v[0].clone()
}

async fn wait_until<F, Fut>(secs: u64, what: &str, every: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The data.

fn conversation(i: usize, partner: &str) -> CreateInput {
    CreateInput {
        id: None,
        kind: if i.is_multiple_of(2) {
            Kind::Task
        } else {
            Kind::Message
        },
        partner: partner.into(),
        subject: format!("Conversation {i}: the item description needs more detail"),
        topic: None,
        reference_id: i.is_multiple_of(3).then(|| format!("REF-{i}")),
        due_date: None,
        body: Some(format!(
            "Hello, about conversation {i}: please check the attached details and reply."
        )),
        idempotency_key: None,
    }
}

fn reply_body(i: usize, k: usize) -> String {
    format!("Reply {k} on conversation {i}: noted, we will update the listing by Friday.")
}

/// Creates `n` conversations of `msgs` messages each (the first with the create), `conc` at a
/// time; partner of conversation `i` is `partners[i % len]`. Returns the ids in order.
async fn load(
    svc: &Arc<Service>,
    n: usize,
    msgs: usize,
    partners: &[&'static str],
    conc: usize,
) -> Vec<Uuid> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(Mutex::new(vec![Uuid::nil(); n]));
    let started = Instant::now();
    let partners: Arc<Vec<&'static str>> = Arc::new(partners.to_vec());
    let mut tasks = Vec::new();
    for _ in 0..conc {
        let (svc, next, done, ids, partners) = (
            svc.clone(),
            next.clone(),
            done.clone(),
            ids.clone(),
            partners.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let p = admin();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let (c, _) = svc
                    .create(&p, conversation(i, partners[i % partners.len()]))
                    .await
                    .expect("create");
                for k in 1..msgs {
                    svc.reply(&p, c.id, reply_body(i, k), None, None)
                        .await
                        .expect("reply");
                }
                ids.lock().unwrap()[i] = c.id;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % (n / 5).max(1) == 0 {
                    println!(
                        "  loaded {d}/{n} conversations × {msgs} messages in {:.1} s",
                        started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let ids = ids.lock().unwrap().clone();
    let el = started.elapsed();
    println!(
        "  load: {n} conversations × {msgs} messages = {} writes in {:.1} s ({:.0} writes/s)",
        n * msgs,
        el.as_secs_f64(),
        (n * msgs) as f64 / el.as_secs_f64()
    );
    ids
}

// ---------------------------------------------------------------------------------------------
// The measurements.

struct Figures {
    rows: Vec<(String, String, String, bool)>,
}

impl Figures {
    fn add(&mut self, what: impl Into<String>, value: impl Into<String>, goal: &str, met: bool) {
        let (what, value) = (what.into(), value.into());
        println!(
            ">> {what}: {value} (goal {goal}: {})",
            if met { "met" } else { "NOT met" }
        );
        self.rows.push((what, value, goal.to_string(), met));
    }
}

/// Cuts the link, runs `change` while it is down, lets the dialing node reconnect, and
/// measures the new connection until `b` has `target` in its feed and the link is quiet.
async fn reconnect<F, Fut>(proxy: &Proxy, b: &Node, target: u64, change: F) -> (ConnStats, Duration)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = proxy.ws_conns().len();
    proxy.set_down(true);
    proxy.cut();
    wait_until(20, "the link to drop", Duration::from_millis(5), || async {
        peer_status(b).await["connected"] == false
    })
    .await;
    change().await;
    proxy.set_down(false);
    wait_until(60, "a new connection", Duration::from_millis(1), || async {
        proxy.ws_conns().len() > before
    })
    .await;
    let conn = proxy.ws_conns()[before].clone();
    let accepted = conn.lock().unwrap().accepted;
    wait_until(60, "caught up", Duration::from_millis(1), || async {
        peer_status(b).await["caught_up"] == true
    })
    .await;
    let caught_up = accepted.elapsed();
    wait_until(
        60,
        "the changes to arrive",
        Duration::from_millis(2),
        || async { feed_high(&b.svc).await >= target },
    )
    .await;
    // Quiet: no sync frame for 300 ms.
    wait_until(60, "a quiet link", Duration::from_millis(20), || async {
        let l = conn.lock().unwrap();
        l.msgs
            .last()
            .is_none_or(|m| m.at.elapsed() > Duration::from_millis(300))
    })
    .await;
    (ConnStats::of(&conn), caught_up)
}

async fn pair_sync(figs: &mut Figures) {
    let n = env_usize("PARLEY_BENCH_SYNC_N", 10_000);
    let msgs = env_usize("PARLEY_BENCH_SYNC_MSGS", 20).max(1);
    let changed = env_usize("PARLEY_BENCH_SYNC_CHANGED", 100).min(n);
    let reps = env_usize("PARLEY_BENCH_SYNC_RECONNECTS", 5).max(1);
    let replies = env_usize("PARLEY_BENCH_SYNC_REPLIES", 200).max(1);

    println!("== two nodes, {n} shared conversations × {msgs} messages");
    let writers0 = writer_tids();
    let a = Node::start("acme", Role::Retailer, &[("bolt", Role::Supplier)]).await;
    let a_writer: HashSet<u32> = writer_tids().difference(&writers0).copied().collect();
    let ids = load(&a.svc, n, msgs, &["bolt"], 64).await;
    // A hub's history is quiet conversations, which its background compactor has folded into
    // one full save each (`service::compact`); the bench does that work ahead, timed, unless
    // `PARLEY_BENCH_SYNC_COMPACT=0` (then every conversation takes the loading path).
    if env_usize("PARLEY_BENCH_SYNC_COMPACT", 1) == 1 {
        let store = a.svc.store().clone();
        let t = Instant::now();
        let folded = tokio::task::spawn_blocking(move || {
            store.compact_quiet(chrono::Utc::now(), chrono::Duration::zero(), usize::MAX)
        })
        .await
        .unwrap()
        .unwrap();
        println!(
            "  compacted {folded} conversations in {:.1} s (the background compactor's work, done ahead)",
            t.elapsed().as_secs_f64()
        );
    }
    let b = Node::start("bolt", Role::Supplier, &[("acme", Role::Retailer)]).await;
    let b_writer: HashSet<u32> = writer_tids()
        .difference(&writers0)
        .filter(|t| !a_writer.contains(t))
        .copied()
        .collect();

    // ---- First sync. `b` has no public address: it dials `a` through the proxy.
    let proxy = Proxy::start(a.addr).await;
    b.svc.set_public_url(None);
    a.svc.set_public_url(Some(proxy.url()));
    println!("  load average before the first sync: {}", loadavg());
    let cpu0 = thread_cpu();
    let t = Instant::now();
    pair(&a.http, &a.base, &a.token, &b).await;
    let mut marks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let h = feed_high(&b.svc).await as usize;
        while marks.len() < 4 && h >= n * (marks.len() + 1) / 4 {
            marks.push((h, t.elapsed()));
        }
        if h >= n {
            break;
        }
        assert!(Instant::now() < deadline, "the first sync did not finish");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = t.elapsed();
    let cpu = cpu_report(
        &cpu0,
        first,
        &[("acme writer", &a_writer), ("bolt writer", &b_writer)],
    );
    let conn = proxy.ws_conns()[0].clone();
    let st = ConnStats::of(&conn);
    println!(
        "  first sync: {n} conversations in {:.2} s ({:.0}/s); progress {}",
        first.as_secs_f64(),
        n as f64 / first.as_secs_f64(),
        marks
            .iter()
            .map(|(h, d)| format!("{h} at {:.1} s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  first sync bytes (TCP): A→B {} , B→A {}; per conversation A→B {:.0} B",
        mb(st.bytes_down),
        kb(st.bytes_up),
        st.bytes_down as f64 / n as f64
    );
    println!("  A→B {}", st.down.show());
    println!("  B→A {}", st.up.show());
    println!(
        "  handshake {}, flights {}, last frame at {}",
        ms(st.handshake),
        st.flights,
        ms(st.last_frame)
    );
    println!("  {cpu}");
    println!("  load average after: {}", loadavg());
    figs.add(
        format!("first sync, {n} conversations × {msgs} messages: time"),
        format!("{:.2} s", first.as_secs_f64()),
        "≤ 2 s",
        first <= Duration::from_secs(2),
    );
    figs.add(
        format!("first sync, {n} × {msgs}: bytes on the wire"),
        format!(
            "A→B {}, B→A {} ({:.0} B per conversation)",
            mb(st.bytes_down),
            kb(st.bytes_up),
            (st.bytes_down + st.bytes_up) as f64 / n as f64
        ),
        "(measured, no goal)",
        true,
    );
    // Let the first session settle: both sides' acknowledgements through.
    wait_until(
        60,
        "caught up after the first sync",
        Duration::from_millis(5),
        || async { peer_status(&b).await["caught_up"] == true },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // ---- Reconnect with nothing changed.
    let mut runs = Vec::new();
    for _ in 0..reps {
        let target = feed_high(&b.svc).await;
        runs.push(reconnect(&proxy, &b, target, || async {}).await);
    }
    for (i, (s, c)) in runs.iter().enumerate() {
        println!(
            "  reconnect, nothing changed #{i}: TCP A→B {} B, B→A {} B (sync frames {} B + {} B); {} flights = {} round trips; handshake {}, last frame {}, caught_up seen {}",
            s.bytes_down,
            s.bytes_up,
            s.down.frame_bytes,
            s.up.frame_bytes,
            s.flights,
            s.round_trips(),
            ms(s.handshake),
            ms(s.last_frame),
            ms(*c)
        );
        if i == 0 {
            println!("    frames: {}", s.sequence);
        }
    }
    let worst_rt = runs.iter().map(|(s, _)| s.round_trips()).max().unwrap();
    let worst_bytes = runs
        .iter()
        .map(|(s, _)| s.bytes_down + s.bytes_up)
        .max()
        .unwrap();
    let mut sync_times: Vec<Duration> = runs.iter().map(|(s, _)| s.last_frame).collect();
    let mut seen: Vec<Duration> = runs.iter().map(|(_, c)| *c).collect();
    let med_last = pct(&mut sync_times, 50.0);
    let max_last = pct(&mut sync_times, 100.0);
    let med_seen = pct(&mut seen, 50.0);
    figs.add(
        format!("reconnect, nothing changed, {n} shared: round trips"),
        format!("{worst_rt} (worst of {reps})"),
        "≤ 2",
        worst_rt <= 2,
    );
    figs.add(
        format!("reconnect, nothing changed, {n} shared: bytes"),
        format!("{worst_bytes} B both ways incl. WebSocket handshake (worst of {reps})"),
        "≤ 64 KB",
        worst_bytes <= 64 * 1024,
    );
    figs.add(
        format!("reconnect, nothing changed, {n} shared: time"),
        format!(
            "TCP accept → last sync frame: median {}, max {}; → caught_up seen by polling: median {}",
            ms(med_last),
            ms(max_last),
            ms(med_seen)
        ),
        "≤ 100 ms",
        max_last <= Duration::from_millis(100),
    );

    // ---- Reconnect with `changed` conversations changed at `a` while the link was down.
    let mut rng = Rng(42);
    let mut runs = Vec::new();
    for r in 0..reps.min(3) {
        let target = feed_high(&b.svc).await + changed as u64;
        let pick: Vec<Uuid> = rng
            .distinct(changed, n)
            .into_iter()
            .map(|i| ids[i])
            .collect();
        let svc = a.svc.clone();
        runs.push(
            reconnect(&proxy, &b, target, || async move {
                let mut tasks = Vec::new();
                for id in pick {
                    let svc = svc.clone();
                    tasks.push(tokio::spawn(async move {
                        svc.reply(&admin(), id, format!("Offline reply {r}"), None, None)
                            .await
                            .expect("reply")
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .await,
        );
    }
    for (i, (s, c)) in runs.iter().enumerate() {
        println!(
            "  reconnect, {changed} changed #{i}: TCP A→B {} B, B→A {} B; {} flights = {} round trips; handshake {}, last frame {}, caught_up seen {}",
            s.bytes_down,
            s.bytes_up,
            s.flights,
            s.round_trips(),
            ms(s.handshake),
            ms(s.last_frame),
            ms(*c)
        );
        println!("    A→B {}", s.down.show());
        println!("    B→A {}", s.up.show());
        if i == 0 {
            println!("    frames: {}", s.sequence);
        }
    }
    let worst = runs
        .iter()
        .map(|(s, _)| s.bytes_down + s.bytes_up)
        .max()
        .unwrap();
    let goal = 64 * 1024 + 1536 * changed as u64;
    let mut last: Vec<Duration> = runs.iter().map(|(s, _)| s.last_frame).collect();
    figs.add(
        format!("reconnect, {changed} of {n} changed: bytes"),
        format!(
            "{} both ways incl. handshake, {:.0} B per changed conversation (worst of {}); {} round trips; all stored {} after accept (median)",
            kb(worst),
            worst as f64 / changed as f64,
            runs.len(),
            runs.iter().map(|(s, _)| s.round_trips()).max().unwrap(),
            ms(pct(&mut last, 50.0))
        ),
        &format!("≤ 64 KB + 1.5 KB × {changed} = {}", kb(goal)),
        worst <= goal,
    );

    // ---- Live propagation of one reply.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = b.svc.subscribe();
    let mut from_call = Vec::new();
    let mut from_ack = Vec::new();
    for k in 0..replies {
        let id = ids[rng.below(n)];
        let t0 = Instant::now();
        a.svc
            .reply(&admin(), id, format!("Live reply {k}"), None, None)
            .await
            .expect("reply");
        let acked = Instant::now();
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("the reply did not arrive within 10 s");
            match ev {
                Ok(e) if e.conversation == id => break,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        from_call.push(t0.elapsed());
        from_ack.push(acked.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (p50, p99) = (pct(&mut from_call, 50.0), pct(&mut from_call, 99.0));
    let (a50, a99) = (pct(&mut from_ack, 50.0), pct(&mut from_ack, 99.0));
    println!(
        "  live: {replies} replies; from the reply call at A to stored at B: p50 {}, p99 {}, max {}; from A's acknowledgement: p50 {}, p99 {}",
        ms(p50),
        ms(p99),
        ms(pct(&mut from_call, 100.0)),
        ms(a50),
        ms(a99)
    );
    figs.add(
        format!("live propagation of one reply ({replies} replies): p50"),
        ms(p50),
        "≤ 50 ms",
        p50 <= Duration::from_millis(50),
    );
    figs.add(
        format!("live propagation of one reply ({replies} replies): p99"),
        ms(p99),
        "≤ 250 ms",
        p99 <= Duration::from_millis(250),
    );
    drop(proxy);
    b.stop().await;
    a.stop().await;
}

/// The node under test runs as its own process (`parley serve`) so its RSS is its own.
async fn memory(figs: &mut Figures) {
    let m = env_usize("PARLEY_BENCH_SYNC_MEM_N", 100_000);
    let peers = env_usize("PARLEY_BENCH_SYNC_PEERS", 5).clamp(1, 5);
    if m == 0 {
        return;
    }
    const SUPPLIERS: [&str; 5] = ["bolt", "nut", "gear", "spring", "washer"];
    let names = &SUPPLIERS[..peers];
    println!("== one node with {m} conversations, {peers} peers syncing from it");
    let dir = tempfile::tempdir_in(bench_dir()).unwrap();
    let partners: Vec<(&str, Role)> = names.iter().map(|s| (*s, Role::Supplier)).collect();
    let (svc, token) = prepare(dir.path(), "acme", Role::Retailer, &partners).await;
    load(&svc, m, 1, names, 64).await;
    let store = svc.store().clone();
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .unwrap();
    drop(svc);

    // Start it as a process; the store's file lock may take a moment to go.
    let (mut child, base) = loop {
        let mut child = Command::new(env!("CARGO_BIN_EXE_parley"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .env("PARLEY_LOG", "warn")
            // Every node of the bench runs on this machine.
            .env("PARLEY_ALLOW_LOOPBACK_PEERS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning parley serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                }
            }
        });
        match tokio::time::timeout(Duration::from_secs(120), rx).await {
            Ok(Ok(base)) => break (child, base),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let pid = child.id();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_kb, _) = rss_kb(Some(pid));
    println!("  node started; RSS idle {}", mb(idle_kb * 1024));

    let mut nodes = Vec::new();
    for p in names {
        nodes.push(Node::start(p, Role::Supplier, &[("acme", Role::Retailer)]).await);
    }
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicUsize::new(0));
    let (s2, p2) = (sampling.clone(), peak.clone());
    let sampler = tokio::spawn(async move {
        while s2.load(Ordering::Relaxed) {
            let (rss, _) = rss_kb(Some(pid));
            p2.fetch_max(rss as usize, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let t = Instant::now();
    for node in &nodes {
        pair(&http, &base, &token, node).await;
    }
    let per: Vec<u64> = (0..peers)
        .map(|k| (0..m).filter(|i| i % peers == k).count() as u64)
        .collect();
    wait_until(
        1800,
        "the peers' first syncs",
        Duration::from_millis(100),
        || async {
            let mut all = true;
            for (node, want) in nodes.iter().zip(&per) {
                all &= feed_high(&node.svc).await >= *want;
            }
            all
        },
    )
    .await;
    let took = t.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.await.unwrap();
    let (after_kb, hwm_kb) = rss_kb(Some(pid));
    let peak_kb = peak.load(Ordering::Relaxed) as u64;
    println!(
        "  {peers} peers synced {m} conversations in {:.1} s; RSS of the node: idle {}, peak sampled during sync {}, VmHWM {}, after {}",
        took.as_secs_f64(),
        mb(idle_kb * 1024),
        mb(peak_kb * 1024),
        mb(hwm_kb * 1024),
        mb(after_kb * 1024)
    );
    figs.add(
        format!("memory of a node with {m} conversations and {peers} peers syncing"),
        format!(
            "peak RSS {} (VmHWM {}); idle {}",
            mb(peak_kb * 1024),
            mb(hwm_kb * 1024),
            mb(idle_kb * 1024)
        ),
        "≤ 256 MB",
        hwm_kb <= 256 * 1024,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
    for node in nodes {
        node.stop().await;
    }
}

async fn run() {
    println!(
        "machine: {} cores, {}; load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("?")
            .trim(),
        loadavg()
    );
    let started = Instant::now();
    let mut figs = Figures { rows: Vec::new() };
    pair_sync(&mut figs).await;
    memory(&mut figs).await;
    println!("\n== summary ({:.0} s)", started.elapsed().as_secs_f64());
    for (what, value, goal, met) in &figs.rows {
        println!(
            "| {what} | {value} | {goal} | {} |",
            if *met { "met" } else { "**not met**" }
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}
