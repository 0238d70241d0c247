//! Bulk actions against the real binary (`parley serve`, as a user runs it): kill -9 in the
//! middle of a bulk request, and a damaged document among the conversations of one.
//!
//! The story: a bulk action is many conversations' changes answered together. If they were
//! written as one unit, one bad conversation would sink the rest; if their index rows were
//! written apart from their documents, a crash part way would leave rows that disagree with
//! the documents they list. Each conversation is its own write job instead, so after a crash
//! each one is resolved or open, its row agreeing with its document.

mod common;

use std::collections::HashSet;

use common::bin::{self, Node, cli_ok};
use common::eventually;
use futures_util::stream::{self, StreamExt};
use serde_json::{Value, json};

fn outcomes(v: &Value) -> Vec<(String, String, Option<String>)> {
    v["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {v}"))
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["code"].as_str().map(String::from),
            )
        })
        .collect()
}

/// A conversation whose stored bytes are damaged fails alone, with the single endpoint's
/// `damaged`; its neighbour in the same request is resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_conversation_fails_alone() {
    let node = Node::new();
    let s = bin::start(&node.dir).await.unwrap();
    let marker = format!("bulkmark{}", uuid::Uuid::new_v4().simple());
    let victim = node.create(&s, "Victim of a bad sector", None).await;
    assert_eq!(
        node.reply(&s, victim, &format!("damaged here: {marker}"))
            .await
            .0,
        201
    );
    assert_eq!(
        node.reply(&s, victim, "a later reply in its own chunk")
            .await
            .0,
        201
    );
    let healthy = node.create(&s, "Healthy neighbour", None).await;
    bin::stop(s).await;
    assert!(
        bin::flip(&node.db(), &marker) >= 1,
        "the marker must be in the file"
    );

    let s = bin::start(&node.dir).await.unwrap();
    let (st, v) = node
        .call(
            &s,
            "POST",
            "/conversations/bulk",
            Some(json!({"action": "resolve", "ids": [victim, healthy]})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        outcomes(&v),
        vec![
            (victim.to_string(), "failed".into(), Some("damaged".into())),
            (healthy.to_string(), "changed".into(), None),
        ],
        "{v}"
    );
    let (_, h) = node
        .call(&s, "GET", &format!("/conversations/{healthy}"), None)
        .await;
    assert_eq!(h["state"], "resolved", "{h}");
    bin::stop(s).await;
}

async fn resolved_total(node: &Node, s: &bin::Server) -> usize {
    let (st, v) = node
        .call(s, "GET", "/conversations?folder=resolved&limit=1", None)
        .await;
    assert_eq!(st, 200, "{v}");
    v["total"].as_u64().unwrap() as usize
}

/// kill -9 in the middle of a bulk resolve of 2,000 conversations: afterwards each one is
/// resolved or open, its inbox row agrees with its document (`parley check`), and the
/// Resolved folder's count is the number of documents that say resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_leaves_each_conversation_changed_or_not() {
    const N: usize = 2000;
    let node = Node::new();
    let s = bin::start(&node.dir).await.unwrap();
    let ids: Vec<uuid::Uuid> = stream::iter(0..N)
        .map(|i| {
            let (node, s) = (&node, &s);
            async move {
                let body =
                    json!({"kind": "message", "partner": "bolt", "subject": format!("Pallet {i}")});
                let (st, v) = node.call(s, "POST", "/conversations", Some(body)).await;
                assert_eq!(st, 201, "{v}");
                v["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    // The request runs on its own connection; the progress is watched on another. Should the
    // whole request finish between two looks, everything is reopened and it runs again.
    let mut seen = 0;
    for round in 0..5 {
        let base = s.url("/conversations/bulk");
        let token = node.token.clone();
        let request = tokio::spawn(async move {
            reqwest::Client::new()
                .post(base)
                .bearer_auth(token)
                .json(&json!({"action": "resolve", "filter": {"folder": "inbox"}}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        let (node, s) = (&node, &s);
        seen = eventually(120, "some resolved, or all", || async move {
            let n = resolved_total(node, s).await;
            (n > 0).then_some(n)
        })
        .await;
        if seen < N {
            break;
        }
        eprintln!("round {round}: the bulk request finished before a look; again");
        assert_eq!(request.await.unwrap().ok(), Some(200));
        let (st, v) = node
            .call(
                s,
                "POST",
                "/conversations/bulk",
                Some(json!({"action": "reopen", "filter": {"folder": "resolved"}})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    assert!(
        seen > 0 && seen < N,
        "never saw the request part way: {seen}"
    );
    bin::crash(s).await;

    // The crashed directory as it is: every index agrees with its document.
    let out = cli_ok(&node.dir, &["check"]);
    assert!(
        out.contains("all indexes agree with the documents"),
        "parley check after kill -9:\n{out}"
    );
    let s = bin::start(&node.dir).await.unwrap();
    let mut resolved_docs = HashSet::new();
    for id in &ids {
        let (st, v) = node
            .call(&s, "GET", &format!("/conversations/{id}"), None)
            .await;
        assert_eq!(st, 200, "{v}");
        match v["state"].as_str() {
            Some("resolved") => {
                resolved_docs.insert(*id);
            }
            Some("open") => {}
            other => panic!("{id}: state {other:?}"),
        }
    }
    assert!(resolved_docs.len() >= seen, "a committed resolve was lost");
    assert!(resolved_docs.len() < N, "the crash came after the end");
    assert_eq!(resolved_total(&node, &s).await, resolved_docs.len());
    let (_, open) = node
        .call(&s, "GET", "/conversations?folder=inbox&limit=1", None)
        .await;
    assert_eq!(
        open["total"].as_u64(),
        Some((N - resolved_docs.len()) as u64)
    );
    eprintln!(
        "{} of {N} resolved at the crash ({seen} seen before it)",
        resolved_docs.len()
    );
    bin::stop(s).await;
}
