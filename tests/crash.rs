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
//! fsync'd commit (`Durability::Immediate`) is for, and `tests/power_loss.rs` tests it on a
//! disk that loses power.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bin::{Server, cli_ok};

use serde_json::{Value, json};
use uuid::Uuid;

const CLIENTS: usize = 32;
const CONVERSATIONS: usize = 8;

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
        let url = server.url(&format!("/conversations/{conv}/messages"));
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
            .get(server.url(&format!("/conversations/{conv}")))
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

    let out = cli_ok(
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
    cli_ok(
        &dir,
        &[
            "partner", "add", "--id", "bolt", "--name", "Bolt", "--role", "supplier",
        ],
    );
    let http = client(&token);

    let server = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || Server::start(&dir).unwrap_or_else(|e| panic!("{e}"))
    })
    .await
    .unwrap();
    let mut convs = Vec::new();
    for i in 0..CONVERSATIONS {
        let r = http
            .post(server.url("/conversations"))
            .json(&json!({ "kind": "message", "partner": "bolt", "subject": format!("Crash test {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201, "create");
        let v: Value = r.json().await.unwrap();
        let id: Uuid = v["id"].as_str().unwrap().parse().unwrap();
        let r = http
            .post(server.url(&format!("/conversations/{id}/messages")))
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
        let out = cli_ok(&dir, &["check"]);
        assert!(
            out.contains("all indexes agree with the documents"),
            "parley check after kill -9:\n{out}"
        );
        server = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || Server::start(&dir).unwrap_or_else(|e| panic!("{e}"))
        })
        .await
        .unwrap();
        assert_all_present(&server, &http, &all_acked).await;
    }

    // The node still takes writes after two crashes.
    let r = http
        .post(server.url(&format!("/conversations/{}/messages", convs[0])))
        .json(&json!({ "body": "after the crashes" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);

    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    let out = cli_ok(&dir, &["check"]);
    assert!(
        out.contains("all indexes agree with the documents"),
        "parley check:\n{out}"
    );
}
