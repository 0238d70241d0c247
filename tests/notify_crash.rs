//! kill -9 during a storm of replies, with email (a real SMTP server) and a webhook (a real
//! HTTP receiver) configured: after the restart every committed reply is mailed and delivered
//! at least once, nothing is mailed or delivered that was not committed, and a duplicate
//! carries the same `Message-ID` / `webhook-id` as the first copy, with the same content.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bin::{Node, Server};
use common::smtp::SmtpServer;
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const CONVERSATIONS: usize = 6;

fn client(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn start(dir: &std::path::Path) -> Server {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || Server::start(&dir).unwrap_or_else(|e| panic!("{e}")))
        .await
        .unwrap()
}

/// The reply markers (`c{client}r{k}`) a text holds.
fn markers(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.starts_with("crashmark"))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_neither_loses_nor_invents_a_notification() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let smtp = SmtpServer::start(&py).await;
    let (port, mut hooks) = common::sink::start().await;
    // Acme, set up through the CLI (`parley init`, `parley partner add bolt`).
    let node = Node::of("acme", "retailer", &[("bolt", "supplier")]);
    let dir = node.dir.clone();
    let admin = node.token.clone();
    std::fs::write(
        dir.join("parley.toml"),
        format!(
            "{}\n[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n",
            smtp.toml("settle_ms = 100\nsummary_after = 100000\n")
        ),
    )
    .unwrap();
    let admin = client(&admin);
    let server = start(&dir).await;
    let r = admin
        .post(server.url("/users"))
        .json(&json!({"name": "wes", "password": "wes-password-1", "admin": false}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let t: Value = admin
        .post(server.url("/tokens"))
        .json(&json!({"name": "wes", "user": "wes"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wes = client(t["token"].as_str().unwrap());
    let r = admin
        .put(server.url("/me/notifications"))
        .json(&json!({"email": "admin@acme.test", "preferences": {"colleague_activity": "immediate"}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = admin
        .post(server.url("/webhooks"))
        .json(
            &json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["message.created"]}),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut convs = Vec::new();
    for i in 0..CONVERSATIONS {
        let v: Value = wes
            .post(server.url("/conversations"))
            .json(&json!({"kind": "message", "partner": "bolt", "subject": format!("Storm {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        convs.push(v["id"].as_str().unwrap().to_string());
    }

    // The storm, then kill -9 while replies are in flight.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let dead = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (wes, acked, count, dead) = (wes.clone(), acked.clone(), count.clone(), dead.clone());
        let url = server.url(&format!(
            "/conversations/{}/messages",
            convs[c % convs.len()]
        ));
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            while !dead.load(Ordering::Acquire) {
                let m = format!("crashmark{c}x{k}");
                k += 1;
                match wes.post(&url).json(&json!({"body": m})).send().await {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().push(m);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => panic!("refused before the crash: {}", r.status()),
                    Err(_) => break,
                }
            }
        }));
    }
    let t = Instant::now();
    while count.load(Ordering::Relaxed) < 150 && t.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::task::spawn_blocking(move || server.crash())
        .await
        .unwrap();
    dead.store(true, Ordering::Release);
    for t in tasks {
        t.await.unwrap();
    }
    let acked: Vec<String> = std::mem::take(&mut *acked.lock().unwrap());
    assert!(
        acked.len() >= 20,
        "only {} replies before the crash",
        acked.len()
    );

    let server = start(&dir).await;
    // What was committed: every reply in the conversations after the restart.
    let mut committed = HashSet::new();
    for id in &convs {
        let v: Value = admin
            .get(server.url(&format!("/conversations/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for m in v["messages"].as_array().unwrap() {
            committed.extend(markers(m["body"].as_str().unwrap_or("")));
        }
    }
    for a in &acked {
        assert!(committed.contains(a), "acknowledged reply {a} lost");
    }

    // Every committed reply reaches the mailbox and the receiver, at least once.
    let mut delivered: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let t = Instant::now();
    let mails = loop {
        while let Ok(r) = hooks.try_recv() {
            let body = r.body["data"]["message"]["body"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let id = r.headers.get("webhook-id").cloned().unwrap_or_default();
            for m in markers(&body) {
                delivered
                    .entry(m)
                    .or_default()
                    .push((id.clone(), r.body["data"].to_string()));
            }
        }
        let mails = smtp.mails_to("admin@acme.test");
        let mailed: HashSet<String> = mails.iter().flat_map(|m| markers(&m.text)).collect();
        let all_mailed = committed.iter().all(|c| mailed.contains(c));
        let all_hooked = committed.iter().all(|c| delivered.contains_key(c));
        if all_mailed && all_hooked {
            break mails;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "after the restart {} of {} committed replies were mailed and {} delivered",
            committed.iter().filter(|c| mailed.contains(*c)).count(),
            committed.len(),
            committed
                .iter()
                .filter(|c| delivered.contains_key(*c))
                .count()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    // Nothing invented; duplicates are the same notification, recognisably: each reply is in
    // mails of one Message-ID only (a re-composed copy would have another).
    let mut by_id: HashMap<String, String> = HashMap::new();
    let mut ids_of: HashMap<String, HashSet<String>> = HashMap::new();
    for m in &mails {
        let id = m.header("message-id").unwrap().to_string();
        for mk in markers(&m.text) {
            assert!(
                committed.contains(&mk),
                "mail about {mk}, which was never committed"
            );
            ids_of.entry(mk).or_default().insert(id.clone());
        }
        if let Some(prev) = by_id.insert(id.clone(), m.text.clone()) {
            assert_eq!(prev, m.text, "two different mails share {id}");
        }
    }
    for (mk, ids) in &ids_of {
        assert_eq!(
            ids.len(),
            1,
            "{mk} was mailed under several Message-IDs: {ids:?}"
        );
    }
    for (mk, copies) in &delivered {
        assert!(
            committed.contains(mk),
            "delivery about {mk}, never committed"
        );
        let first = &copies[0];
        for c in copies {
            assert_eq!(
                c, first,
                "every copy of {mk}'s delivery carries the same webhook-id and data"
            );
        }
    }
    let dup_mails = mails.len() - by_id.len();
    let dup_hooks: usize = delivered.values().map(|v| v.len() - 1).sum();
    eprintln!(
        "{} committed replies; {} mails ({dup_mails} repeated), {} deliveries ({dup_hooks} repeated)",
        committed.len(),
        mails.len(),
        delivered.values().map(Vec::len).sum::<usize>()
    );
    tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
}
