//! Encrypted links (feature `tls`): two nodes that serve peers over TLS pair with an invite that
//! pins the inviting node's certificate, sync both ways over it, and refuse a node whose
//! certificate is not the pinned one. Run with `cargo test --features tls --test tls`.
#![cfg(feature = "tls")]

mod common;

use common::{TestNode, decode_invite, encode_invite, eventually, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

async fn message_count(n: &TestNode, id: &str) -> Option<usize> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then(|| v["messages"].as_array().map_or(0, |m| m.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_pair_and_sync_over_tls_with_a_pinned_certificate() {
    let acme = TestNode::start_tls("acme", Role::Retailer).await;
    let bolt = TestNode::start_tls("bolt", Role::Supplier).await;

    // The invite names the TLS address and the certificate to pin.
    let (s, inv) = acme
        .post("/api/v1/peers/invites", common::invite_for(&acme, &bolt))
        .await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    let code = decode_invite(inv["code"].as_str().unwrap());
    let tls_addr = acme.tls_addr.unwrap();
    assert_eq!(code["url"], format!("https://{tls_addr}"));
    let pin = code["tls"].as_str().expect("the invite pins a certificate");
    assert!(pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit()));

    pair(&acme, &bolt).await;
    let (_, peers) = bolt.get("/api/v1/peers").await;
    assert_eq!(peers[0]["url"], format!("https://{tls_addr}"));
    assert_eq!(peers[0]["tls"], pin);
    let (_, peers) = acme.get("/api/v1/peers").await;
    assert_eq!(
        peers[0]["url"],
        format!("https://{}", bolt.tls_addr.unwrap()),
        "bolt told acme its TLS address"
    );
    assert!(peers[0]["tls"].is_string(), "and its certificate: {peers}");

    // Both ways, over the encrypted link.
    let c = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Pallet labels", "body": "Which size?"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, "the task at bolt", || message_count(&bolt, &id)).await;
    let (s, _) = bolt
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "100 x 150 mm"}),
        )
        .await;
    assert!(s.is_success());
    eventually(15, "bolt's reply at acme", || async {
        (message_count(&acme, &id).await? == 2).then_some(())
    })
    .await;

    // Plain HTTP to the TLS port is not answered as HTTP.
    let plain = reqwest::Client::new()
        .get(format!("http://{tls_addr}/healthz"))
        .send()
        .await;
    assert!(
        plain.is_err() || !plain.unwrap().status().is_success(),
        "the TLS port speaks only TLS"
    );
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_pinned_certificate_is_refused() {
    let acme = TestNode::start_tls("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let (_, inv) = acme
        .post("/api/v1/peers/invites", common::invite_for(&acme, &bolt))
        .await;
    let mut code = decode_invite(inv["code"].as_str().unwrap());
    // An invite whose pin names another certificate: as if someone stood between the nodes.
    code["tls"] = json!("0".repeat(64));
    let (s, v) = bolt
        .post("/api/v1/peers", json!({"code": encode_invite(&code)}))
        .await;
    assert!(!s.is_success(), "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("certificate"), "{v}");
    for n in [&acme, &bolt] {
        let (_, peers) = n.get("/api/v1/peers").await;
        assert_eq!(peers, json!([]), "nothing was paired");
    }
    // A pin that is not a fingerprint at all is refused before anything is sent.
    code["tls"] = json!("not-a-fingerprint");
    let (s, v) = bolt
        .post("/api/v1/peers", json!({"code": encode_invite(&code)}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    bolt.stop().await;
    acme.stop().await;
}
