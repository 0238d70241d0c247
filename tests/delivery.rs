//! "Not yet delivered" and a partner's away time, between real nodes on loopback.
//!
//! A change written here is marked until a node of the partner org holds it; the partner's
//! own changes are never marked; neither another site of our org nor a peer of a third org
//! can clear the mark, and forgetting the partner's node leaves it in place.

mod common;

use common::{TestNode, eventually, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn detail(n: &TestNode, id: &str) -> Option<Value> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(v)
}

async fn row(n: &TestNode, id: &str) -> Option<Value> {
    let (_, page) = n.get("/api/v1/conversations?limit=200").await;
    page["items"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)
        .cloned()
}

/// Whether the conversation reads as delivered (`true`) or not, in its inbox row, its detail
/// and each of its messages alike; `None` while they disagree or it is not there.
async fn delivered(n: &TestNode, id: &str) -> Option<bool> {
    let r = row(n, id).await?;
    let d = detail(n, id).await?;
    let rows = !r["undelivered"].as_bool()?;
    let conv = !d["undelivered"].as_bool()?;
    let msgs: Vec<bool> = d["messages"]
        .as_array()?
        .iter()
        .filter(|m| m["author"]["org"] == n.org.as_str())
        .map(|m| m["delivered"].as_bool())
        .collect::<Option<_>>()?;
    (rows == conv && msgs.iter().all(|m| *m == conv)).then_some(conv)
}

async fn peer_row(n: &TestNode, org: &str) -> Option<Value> {
    let (_, peers) = n.get("/api/v1/peers").await;
    peers
        .as_array()?
        .iter()
        .find(|p| p["org_id"] == org)
        .cloned()
}

async fn connected(n: &TestNode, org: &str) -> Option<()> {
    (peer_row(n, org).await?["connected"] == true).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_while_the_partner_is_away_is_undelivered_until_it_arrives() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    eventually(30, "the link", || connected(&acme, "bolt")).await;

    // Live: delivered as soon as bolt's node has it.
    let live = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Live", "body": "hello"}))
        .await;
    let live_id = live["id"].as_str().unwrap().to_string();
    eventually(30, "the live conversation delivered", || async {
        delivered(&acme, &live_id).await.filter(|d| *d)
    })
    .await;
    let p = peer_row(&acme, "bolt").await.unwrap();
    assert_eq!(p["disconnected_since"], Value::Null, "{p}");

    bolt.pause().await;
    let away = eventually(30, "bolt shown as away", || async {
        let p = peer_row(&acme, "bolt").await?;
        (p["connected"] == false).then_some(p)
    })
    .await;
    assert!(away["disconnected_since"].is_string(), "{away}");
    let since: chrono::DateTime<chrono::Utc> = away["disconnected_since"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(since <= chrono::Utc::now());

    // Three conversations and a reply to the delivered one, while bolt is down.
    let mut ids = Vec::new();
    for n in 0..3 {
        let c = acme
            .create(json!({"kind": "task", "partner": "bolt", "subject": format!("Offline {n}"), "body": "while you were away"}))
            .await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{live_id}/messages"),
            json!({"body": "written offline"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for id in &ids {
        assert_eq!(delivered(&acme, id).await, Some(false), "{id}");
    }
    // The old message is still delivered; only the new one is not.
    let d = detail(&acme, &live_id).await.unwrap();
    assert_eq!(d["undelivered"], true);
    let flags: Vec<(String, bool)> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["body"].as_str().unwrap().to_string(),
                m["delivered"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        vec![("hello".into(), true), ("written offline".into(), false)]
    );
    let p = peer_row(&acme, "bolt").await.unwrap();
    assert!(p["pending"].as_u64().unwrap() >= 4, "{p}");
    assert!(p["disconnected_since"].is_string(), "{p}");

    // bolt is back: everything flips to delivered, and nothing waits.
    bolt.resume().await;
    for id in ids.iter().chain([&live_id]) {
        eventually(60, "delivered after the partner is back", || async {
            delivered(&acme, id).await.filter(|d| *d)
        })
        .await;
    }
    let p = eventually(60, "nothing waiting for bolt", || async {
        let p = peer_row(&acme, "bolt").await?;
        (p["connected"] == true && p["pending"] == 0).then_some(p)
    })
    .await;
    assert_eq!(p["disconnected_since"], Value::Null, "{p}");
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_partners_change_is_not_undelivered_here() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let c = bolt
        .create(json!({"kind": "message", "partner": "acme", "subject": "From bolt", "body": "catalogue attached"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let at_acme = eventually(30, "bolt's conversation at acme", || detail(&acme, &id)).await;
    assert_eq!(at_acme["undelivered"], false);
    assert_eq!(at_acme["messages"][0]["delivered"], true);
    assert_eq!(row(&acme, &id).await.unwrap()["undelivered"], false);
    // And at bolt it is delivered once acme's node holds it.
    eventually(30, "delivered at bolt", || async {
        delivered(&bolt, &id).await.filter(|d| *d)
    })
    .await;
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_our_own_site_nor_a_forgotten_partner_clears_the_mark() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let site2 = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &site2).await;
    pair(&acme, &bolt).await;
    eventually(30, "the link to bolt", || connected(&acme, "bolt")).await;
    bolt.pause().await;
    eventually(30, "bolt shown as away", || async {
        (peer_row(&acme, "bolt").await?["connected"] == false).then_some(())
    })
    .await;

    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Only our sites have it", "body": "hi"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    // Our other site holds every change of it (and its sync state with us says so) ...
    let at_site2 = eventually(30, "the conversation at site2", || detail(&site2, &id)).await;
    assert_eq!(at_site2["messages"].as_array().unwrap().len(), 1);
    // ... and acme hears back from site2 (a reply written there arrives), yet it stays
    // undelivered: only a node of the partner org counts.
    site2
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "from the warehouse"}),
        )
        .await;
    eventually(30, "site2's reply at acme", || async {
        detail(&acme, &id)
            .await
            .filter(|v| v["messages"].as_array().unwrap().len() == 2)
    })
    .await;
    assert_eq!(delivered(&acme, &id).await, Some(false));

    // acme forgets bolt's node: the conversation stays undelivered.
    let node = peer_row(&acme, "bolt").await.unwrap()["node_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = acme
        .call(
            "DELETE",
            &format!("/api/v1/peers/{node}"),
            None,
            Some(&acme.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(delivered(&acme, &id).await, Some(false));
    bolt.stop().await;
    site2.stop().await;
    acme.stop().await;
}

/// A peer record as pairing would have stored it (the key is never used here).
fn peer_of(org: &str, role: &str) -> parley::store::peers::Peer {
    serde_json::from_value(json!({
        "node_id": uuid::Uuid::new_v4(),
        "org_id": org,
        "org_name": format!("{org} Co"),
        "role": role,
        "url": null,
        "key": "unused",
        "created_at": chrono::Utc::now(),
        "last_sync_at": null,
    }))
    .unwrap()
}

/// How a peer tells us what it holds.
#[derive(Clone, Copy, PartialEq)]
enum Claim {
    /// It announces exactly our heads in its feed.
    Announce,
    /// Its sync state with us shares our heads.
    State,
    Both,
}

/// `peer` claims, through the real sync host and flush, to hold exactly our heads of `id`.
async fn claim_heads(n: &TestNode, peer: parley::store::peers::Peer, id: uuid::Uuid, how: Claim) {
    use parley::store::sync_host::{PeerScope, SyncHost};
    use parley::store::{StoreError, docs, peers};
    use parley_sync::{DocId, Host};
    let store = n.svc().store().clone();
    let p = peer.clone();
    store
        .write(move |ctx| peers::put_peer(ctx.tx(), &p))
        .await
        .unwrap();
    let heads = store
        .read(move |tx| -> Result<_, StoreError> {
            Ok(docs::load_automerge(tx, id.as_u128())?.unwrap().get_heads())
        })
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let scope = PeerScope {
            peer,
            me: parley::domain::OrgId::parse("acme").unwrap(),
        };
        let now = chrono::Utc::now();
        let mut host = SyncHost::new(&store, &scope, now).unwrap();
        let doc = DocId(*id.as_bytes());
        if how != Claim::State {
            let _ = host.has_heads(doc, &heads).unwrap();
        }
        if how != Claim::Announce {
            let mut state = automerge::sync::State::new();
            state.shared_heads = heads;
            host.save_sync_state(doc, &state.encode()).unwrap();
        }
        store
            .flush_sync(scope.peer.node_id, host.into_pending(), now)
            .unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_node_of_the_partner_org_can_acknowledge_delivery() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let mut ids = Vec::new();
    for how in ["announced", "state"] {
        let c = acme
            .create(json!({"kind": "message", "partner": "bolt", "subject": format!("For bolt only ({how})"), "body": "hi"}))
            .await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let uuids: Vec<uuid::Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
    for id in &ids {
        assert_eq!(delivered(&acme, id).await, Some(false));
    }
    // A hostile node of a third org, and a node of our own org, both claim to hold it all.
    for u in &uuids {
        claim_heads(&acme, peer_of("zeta", "retailer"), *u, Claim::Both).await;
        claim_heads(&acme, peer_of("acme", "retailer"), *u, Claim::Both).await;
    }
    for id in &ids {
        assert_eq!(
            delivered(&acme, id).await,
            Some(false),
            "cleared by a non-partner: {id}"
        );
    }
    // The same claim from a node of the partner org is what delivery means, either way.
    let bolt = peer_of("bolt", "supplier");
    claim_heads(&acme, bolt.clone(), uuids[0], Claim::Announce).await;
    assert_eq!(delivered(&acme, &ids[0]).await, Some(true));
    assert_eq!(delivered(&acme, &ids[1]).await, Some(false));
    claim_heads(&acme, bolt, uuids[1], Claim::State).await;
    assert_eq!(delivered(&acme, &ids[1]).await, Some(true));
    acme.stop().await;
}
