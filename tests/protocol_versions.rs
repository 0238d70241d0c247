//! Link protocol versions between nodes of different releases: a node talks to a partner one
//! protocol version behind it, and refuses one it cannot talk to with a message that says
//! which side to upgrade. The dialing node's offer is rewritten on the wire by a proxy, as a
//! node of another release would send it.

mod common;

use common::{TestNode, eventually};
use parley::domain::Role;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What this release offers when it dials (`replicator::dial`).
const OFFER: &[u8] = b"parley-sync.2, parley-sync.1";

/// A proxy to `upstream` that replaces the dialer's protocol offer with `offer` (same length).
async fn rewriting_proxy(upstream: std::net::SocketAddr, offer: &'static [u8]) -> String {
    assert_eq!(offer.len(), OFFER.len());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let Ok(mut up) = TcpStream::connect(upstream).await else {
                continue;
            };
            tokio::spawn(async move {
                let (mut cr, mut cw) = client.split();
                let (mut ur, mut uw) = up.split();
                let to_up = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &mut buf[..n];
                        if let Some(i) = chunk.windows(OFFER.len()).position(|w| w == OFFER) {
                            chunk[i..i + OFFER.len()].copy_from_slice(offer);
                        }
                        if uw.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                    let _ = uw.shutdown().await;
                };
                let to_client = async {
                    let _ = tokio::io::copy(&mut ur, &mut cw).await;
                    let _ = cw.shutdown().await;
                };
                tokio::join!(to_up, to_client);
            });
        }
    });
    format!("http://{addr}")
}

async fn last_error(n: &TestNode) -> String {
    eventually(60, "the link to fail with a reason", || async {
        let (_, v) = n.get("/api/v1/peers").await;
        v[0]["last_error"].as_str().map(String::from)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_one_protocol_version_behind_still_syncs() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let url = rewriting_proxy(acme.addr(), b"parley-sync.1, parley-sync.1").await;
    let bolt = common::node_behind(&acme, &url, "bolt", Role::Supplier).await;
    let v = bolt
        .create(json!({"kind": "message", "partner": "acme", "subject": "From an older release", "body": "hi"}))
        .await;
    let id = v["id"].as_str().unwrap().to_string();
    eventually(
        60,
        "the conversation to reach acme over parley-sync.1",
        || async {
            let (s, _) = acme.get(&format!("/api/v1/conversations/{id}")).await;
            (s == 200).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_of_a_newer_protocol_is_told_to_upgrade_the_node_it_dialed() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let url = rewriting_proxy(acme.addr(), b"parley-sync.4, parley-sync.3").await;
    let bolt = common::node_behind(&acme, &url, "bolt", Role::Supplier).await;
    let e = last_error(&bolt).await;
    assert!(e.contains("426"), "{e}");
    assert!(e.contains("speaks parley-sync.1 and parley-sync.2"), "{e}");
    assert!(e.contains("upgrade this node (the one dialed)"), "{e}");
    let (_, p) = bolt.get("/api/v1/peers").await;
    assert_eq!(p[0]["connected"], false, "{p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialer_of_an_unknown_older_protocol_is_told_to_upgrade_itself() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let url = rewriting_proxy(acme.addr(), b"parley-sync.0, parley-beta.7").await;
    let bolt = common::node_behind(&acme, &url, "bolt", Role::Supplier).await;
    let e = last_error(&bolt).await;
    assert!(e.contains("upgrade the dialing node"), "{e}");
}
