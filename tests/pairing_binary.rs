//! Pairing through the real binary: three orgs and impostors, each its own `parley serve`
//! process on loopback. An invite made at the retailer for one supplier is tried by a node of
//! the retailer's own org, by another partner's org and by a third org, then by the supplier
//! it was made for: only the last pairs, and the impostors receive nothing.

mod common;

use std::time::{Duration, Instant};

use common::bin::*;
use serde_json::{Value, json};

async fn invite(n: &Node, s: &Server, body: Value) -> String {
    let (st, v) = n.call(s, "POST", "/peers/invites", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    v["code"].as_str().unwrap().to_string()
}

async fn peers(n: &Node, s: &Server) -> Vec<Value> {
    let (st, v) = n.call(s, "GET", "/peers", None).await;
    assert_eq!(st, 200, "{v}");
    v.as_array().cloned().unwrap_or_default()
}

async fn inbox_len(n: &Node, s: &Server) -> usize {
    let (st, v) = n.call(s, "GET", "/conversations", None).await;
    assert_eq!(st, 200, "{v}");
    v["items"].as_array().map_or(0, |a| a.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_org_an_invite_names_pairs_through_the_real_binary() {
    let acme = Node::of(
        "acme",
        "retailer",
        &[("bolt", "supplier"), ("zenith", "supplier")],
    );
    let a = start(&acme.dir).await.unwrap();
    // Conversations with both partners, which no impostor may ever see.
    for (partner, subject) in [("bolt", "Late order PO-1"), ("zenith", "Bank details")] {
        let (st, v) = acme
            .call(
                &a,
                "POST",
                "/conversations",
                Some(json!({"kind": "message", "partner": partner, "subject": subject, "body": "hello"})),
            )
            .await;
        assert_eq!(st, 201, "{v}");
    }
    let code = invite(
        &acme,
        &a,
        json!({"org_id": "bolt", "org_name": "Bolt Co", "role": "supplier"}),
    )
    .await;
    // Impostors: our own org, another partner, a third org, and bolt's id in the wrong role.
    for (org, role, partners) in [
        ("acme", "retailer", vec![("bolt", "supplier")]),
        ("zenith", "supplier", vec![("acme", "retailer")]),
        ("mallory", "supplier", vec![("acme", "retailer")]),
    ] {
        let imp = Node::of(org, role, &partners);
        let s = start(&imp.dir).await.unwrap();
        let (st, v) = imp
            .call(&s, "POST", "/peers", Some(json!({"code": code})))
            .await;
        assert!(
            st == 403 || st == 422,
            "{org} ({role}) paired with an invite for bolt: {st} {v}"
        );
        assert!(
            v["detail"].as_str().unwrap_or("").contains("bolt"),
            "the refusal says whom the invite is for: {v}"
        );
        assert!(peers(&imp, &s).await.is_empty(), "{org} stored a peer");
        // Give a wrongly accepted link time to deliver, then look: nothing arrived.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(inbox_len(&imp, &s).await, 0, "{org} received conversations");
        stop(s).await;
    }
    assert!(peers(&acme, &a).await.is_empty(), "acme paired an impostor");
    // The org it was made for pairs, and gets its own conversation only.
    let bolt = Node::of("bolt", "supplier", &[("acme", "retailer")]);
    let b = start(&bolt.dir).await.unwrap();
    let (st, v) = bolt
        .call(&b, "POST", "/peers", Some(json!({"code": code})))
        .await;
    assert_eq!(st, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbox_len(&bolt, &b).await < 1 {
        assert!(
            Instant::now() < deadline,
            "bolt never received its conversation"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = bolt.call(&b, "GET", "/conversations", None).await;
    let subjects: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["subject"].as_str())
        .collect();
    assert_eq!(subjects, vec!["Late order PO-1"]);
    // The used invite is refused for good, even to the org it named.
    let again = Node::of("bolt", "supplier", &[("acme", "retailer")]);
    let s = start(&again.dir).await.unwrap();
    let (st, v) = again
        .call(&s, "POST", "/peers", Some(json!({"code": code})))
        .await;
    assert_eq!(st, 403, "{v}");
    stop(s).await;
    stop(b).await;
    stop(a).await;
}

/// The data directory holds the node's identity key: only its owner may read it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_its_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let n = Node::of("acme", "retailer", &[]);
    let s = start(&n.dir).await.unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&n.dir), 0o700, "data directory");
    assert_eq!(mode(&n.db()), 0o600, "database file");
    stop(s).await;
}
