//! Crash consistency: "a 2xx means durable".
//!
//! Parley answers a write only after the redb commit that holds it has been fsync'd, and many
//! concurrent writers share one commit (group commit). Two things could go wrong without anyone
//! noticing in ordinary tests, because they only show when the process dies mid-flight:
//!
//! - an acknowledged reply could be lost, if the answer were sent before its commit was
//!   durable (say, a batch answered early, or a cache written back later), and
//! - the derived indexes (inbox rows, facets and counts, changes feed, unread marks) could
//!   disagree with the Automerge documents, if they were ever written in a different
//!   transaction from the document they derive from.
//!
//! This test runs the real binary as a user would: `parley init`, `parley partner add`,
//! `parley serve`. It starts a storm of concurrent replies, each with a client-chosen message
//! id, and kills the server with SIGKILL while requests are in flight, twice. After each crash
//! it restarts the server on the same data directory and checks that every reply that got a
//! 2xx is in its conversation, and (before the restart, on the crashed directory) that
//! `parley check` finds every index in agreement with the documents; again at the end, after a
//! graceful stop.
//!
//! What this cannot show: a SIGKILL leaves the kernel's page cache intact, so it catches an
//! answer sent before its commit was written, not a missing fsync. Losing power is the case the
//! fsync'd commit (`Durability::Immediate`) is for, and needs a fault-injecting disk to test.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

const BIN: &str = env!("CARGO_BIN_EXE_parley");
const CLIENTS: usize = 32;
const CONVERSATIONS: usize = 8;

/// Runs a one-off CLI command to completion and returns its stdout; panics if it failed.
fn cli(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("PARLEY_LOG", "warn")
        .output()
        .expect("running parley");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "parley {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A running `parley serve`; killed with SIGKILL if dropped while still running.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("PARLEY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning parley serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Finds the "listening on" line, then keeps draining stdout so the server never blocks.
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
        let base = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(b) => b,
            Err(_) => {
                let _ = child.kill();
                panic!("parley serve did not print its address within 30 s");
            }
        };
        Server { child, base }
    }

    fn api(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// SIGKILL: no graceful shutdown, no flush, nothing after the last commit.
    fn crash(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaping the server");
    }

    /// SIGTERM, then waits for the graceful shutdown to finish.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the server") {
                assert!(status.success(), "server exited with {status} on SIGTERM");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "server did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Replies from `CLIENTS` concurrent clients until the server dies; SIGKILLs it once at least
/// `min_acks` replies were acknowledged (or after 10 s). Returns the acknowledged
/// (conversation, message id) pairs.
async fn storm_and_crash(
    server: Server,
    http: &reqwest::Client,
    convs: &[Uuid],
    min_acks: usize,
) -> Vec<(Uuid, Uuid)> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, acked, count, dead) = (http.clone(), acked.clone(), count.clone(), dead.clone());
        let conv = convs[c % convs.len()];
        let url = server.api(&format!("/conversations/{conv}/messages"));
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while !dead.load(Ordering::Acquire) {
                let mid = Uuid::new_v4();
                let body = json!({ "id": mid, "body": format!("client {c} reply {k}") });
                k += 1;
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push((conv, mid));
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("reply refused before the crash: {}", r.status()),
                    // The server is gone: this reply was never acknowledged.
                    Err(_) => break,
                }
            }
        }));
    }
    let start = Instant::now();
    while count.load(Ordering::Relaxed) < min_acks && start.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Requests are in flight right now: die in the middle of them.
    tokio::task::spawn_blocking(move || server.crash())
        .await
        .unwrap();
    dead.store(true, Ordering::Release);
    for t in tasks {
        t.await.expect("a client task failed");
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= min_acks.min(20),
        "too few replies were acknowledged before the crash ({}) for the test to mean anything",
        acked.len()
    );
    acked
}

/// Every acknowledged reply is in its conversation, once.
async fn assert_all_present(server: &Server, http: &reqwest::Client, acked: &[(Uuid, Uuid)]) {
    let mut by_conv: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (c, m) in acked {
        by_conv.entry(*c).or_default().push(*m);
    }
    for (conv, mids) in by_conv {
        let r = http
            .get(server.api(&format!("/conversations/{conv}")))
            .send()
            .await
            .expect("GET conversation after restart");
        assert!(r.status().is_success(), "GET {conv}: {}", r.status());
        let v: Value = r.json().await.unwrap();
        let present: Vec<Uuid> = v["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| m["id"].as_str().unwrap().parse().unwrap())
            .collect();
        for m in &mids {
            let n = present.iter().filter(|p| *p == m).count();
            assert_eq!(
                n, 1,
                "acknowledged reply {m} of conversation {conv} appears {n} times after kill -9"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_replies_survive_kill_9_and_indexes_stay_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    let out = cli(
        &dir,
        &[
            "init",
            "--org-id",
            "acme",
            "--org-name",
            "Acme",
            "--role",
            "retailer",
        ],
    );
    let token = out
        .lines()
        .find_map(|l| l.split("created API token for admin (shown once): ").nth(1))
        .unwrap_or_else(|| panic!("no token in `parley init` output:\n{out}"))
        .trim()
        .to_string();
    cli(
        &dir,
        &[
            "partner", "add", "--id", "bolt", "--name", "Bolt", "--role", "supplier",
        ],
    );
    let http = client(&token);

    let server = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Server::start(&dir)
    })
    .await
    .unwrap();
    let mut convs = Vec::new();
    for i in 0..CONVERSATIONS {
        let r = http
            .post(server.api("/conversations"))
            .json(&json!({ "kind": "message", "partner": "bolt", "subject": format!("Crash test {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "create");
        let v: Value = r.json().await.unwrap();
        let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
        let r = http
            .post(server.api(&format!("/conversations/{id}/messages")))
            .json(&json!({ "body": "first reply" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "reply");
        convs.push(id);
    }

    let mut all_acked = Vec::new();
    let mut server = server;
    for round in 0..2 {
        let acked = storm_and_crash(server, &http, &convs, 150).await;
        eprintln!(
            "round {round}: {} replies acknowledged before kill -9",
            acked.len()
        );
        all_acked.extend(acked);
        // The crashed directory, as it is: redb recovers it on open, and every index must
        // already agree with its document.
        let out = cli(&dir, &["check"]);
        assert!(
            out.contains("all indexes agree with the documents"),
            "parley check after kill -9:\n{out}"
        );
        server = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || Server::start(&dir)
        })
        .await
        .unwrap();
        assert_all_present(&server, &http, &all_acked).await;
    }

    // The node still takes writes after two crashes.
    let r = http
        .post(server.api(&format!("/conversations/{}/messages", convs[0])))
        .json(&json!({ "body": "after the crashes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let out = cli(&dir, &["check"]);
    assert!(
        out.contains("all indexes agree with the documents"),
        "parley check:\n{out}"
    );
}
