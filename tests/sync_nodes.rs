//! Partner sync between real nodes on loopback: pairing, live push, offline work on both sides
//! that converges on reconnect, isolation from a third org, revocation, and forged changes.

mod common;

use common::{TestNode, eventually, inbox_ids, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn conversation(n: &TestNode, id: &str) -> Option<Value> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(v)
}

/// The parts of a conversation that must be identical on every node.
fn shared_view(v: &Value) -> Value {
    json!({
        "id": v["id"], "kind": v["kind"], "subject": v["subject"], "participants": v["participants"],
        "messages": v["messages"], "history": v["history"], "state": v["state"], "progress": v["progress"],
        "reference_id": v["reference_id"], "due_date": v["due_date"], "topic": v["topic"],
    })
}

async fn same_on(a: &TestNode, b: &TestNode, id: &str) -> Option<Value> {
    let (x, y) = (conversation(a, id).await?, conversation(b, id).await?);
    (shared_view(&x) == shared_view(&y)).then_some(x)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_sync_live_and_after_working_offline() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;

    // Live: a task made at acme shows up at bolt, a reply at bolt shows up at acme.
    let c = acme.create(json!({"kind": "task", "partner": "bolt", "subject": "Thin description", "body": "Add detail", "due_date": "2030-01-01"})).await;
    let id = c["id"].as_str().unwrap().to_string();
    let at_bolt = eventually(10, "the task at bolt", || conversation(&bolt, &id)).await;
    assert_eq!(at_bolt["partner"], "acme");
    assert_eq!(at_bolt["messages"][0]["body"], "Add detail");
    let (s, _) = bolt
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Will do"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let seen = eventually(10, "bolt's reply at acme", || async {
        conversation(&acme, &id)
            .await
            .filter(|v| v["messages"].as_array().unwrap().len() == 2)
    })
    .await;
    assert_eq!(seen["messages"][1]["author"]["org"], "bolt");
    // A partner's message is unread for acme's users.
    let (_, inbox) = acme.get("/api/v1/conversations").await;
    assert_eq!(inbox["items"][0]["unread"], true);

    // Peer status shows the live link.
    let (_, peers) = acme.get("/api/v1/peers").await;
    assert_eq!(peers[0]["connected"], true, "{peers}");
    assert_eq!(peers[0]["org_id"], "bolt");

    // bolt goes offline; both sides keep working.
    bolt.pause().await;
    acme.post(
        &format!("/api/v1/conversations/{id}/messages"),
        json!({"body": "acme offline reply"}),
    )
    .await;
    let c2 = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Order 1001 late?"}))
        .await;
    let id2 = c2["id"].as_str().unwrap().to_string();
    // While bolt is away, acme shows what is waiting for it: the two conversations it changed.
    let waiting = eventually(10, "bolt shown as away", || async {
        let (_, peers) = acme.get("/api/v1/peers").await;
        (peers[0]["connected"] == false).then(|| peers[0]["pending"].as_u64())
    })
    .await;
    assert_eq!(waiting, Some(2));
    bolt.resume().await;
    // bolt's edits before it reconnects: its own reply and progress.
    bolt.post(
        &format!("/api/v1/conversations/{id}/messages"),
        json!({"body": "bolt offline reply"}),
    )
    .await;
    bolt.put(
        &format!("/api/v1/conversations/{id}/progress"),
        json!({"progress": "in_progress"}),
    )
    .await;
    let c3 = bolt
        .create(json!({"kind": "message", "partner": "acme", "subject": "New catalogue"}))
        .await;
    let id3 = c3["id"].as_str().unwrap().to_string();

    for cid in [&id, &id2, &id3] {
        let v = eventually(20, "convergence", || same_on(&acme, &bolt, cid)).await;
        if cid == &id {
            let bodies: Vec<&str> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["body"].as_str().unwrap())
                .collect();
            assert_eq!(bodies.len(), 4, "{bodies:?}");
            assert!(
                bodies.contains(&"acme offline reply") && bodies.contains(&"bolt offline reply")
            );
            assert_eq!(v["progress"], "in_progress");
        }
    }
    assert_eq!(inbox_ids(&acme).await, inbox_ids(&bolt).await);
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_org_never_sees_another_pairs_conversations() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let zeta = TestNode::start("zeta", Role::Retailer).await;
    pair(&acme, &bolt).await;
    pair(&zeta, &bolt).await;

    let ab = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "acme and bolt only"}))
        .await;
    let zb = zeta
        .create(json!({"kind": "message", "partner": "bolt", "subject": "zeta and bolt only"}))
        .await;
    let (ab, zb) = (
        ab["id"].as_str().unwrap().to_string(),
        zb["id"].as_str().unwrap().to_string(),
    );
    eventually(10, "acme's at bolt", || conversation(&bolt, &ab)).await;
    eventually(10, "zeta's at bolt", || conversation(&bolt, &zb)).await;
    // bolt replies to both; each reply reaches only its own partner.
    bolt.post(
        &format!("/api/v1/conversations/{ab}/messages"),
        json!({"body": "to acme"}),
    )
    .await;
    bolt.post(
        &format!("/api/v1/conversations/{zb}/messages"),
        json!({"body": "to zeta"}),
    )
    .await;
    eventually(10, "reply at acme", || async {
        conversation(&acme, &ab)
            .await
            .filter(|v| v["messages"].as_array().unwrap().len() == 1)
    })
    .await;
    eventually(10, "reply at zeta", || async {
        conversation(&zeta, &zb)
            .await
            .filter(|v| v["messages"].as_array().unwrap().len() == 1)
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(conversation(&zeta, &ab).await.is_none());
    assert!(conversation(&acme, &zb).await.is_none());
    assert_eq!(inbox_ids(&acme).await, vec![ab.clone()]);
    assert_eq!(inbox_ids(&zeta).await, vec![zb.clone()]);
    for n in [&acme, &zeta] {
        let (_, feed) = n.get("/api/v1/changes?since=0").await;
        assert_eq!(feed["changes"].as_array().unwrap().len(), 1);
    }
    zeta.stop().await;
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_changes_are_rejected_and_revoked_peers_cut_off() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let c = acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Original", "body": "acme wrote this"})).await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(10, "at bolt", || conversation(&bolt, &id)).await;

    // bolt's node is tampered with: it rewrites acme's message and renames the subject,
    // bypassing its own rules, and then pushes the change as usual.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let (seq, _) = bolt
        .svc()
        .store()
        .write(move |ctx| -> Result<_, parley::store::StoreError> {
            use automerge::{ROOT, ReadDoc, transaction::Transactable};
            let d = ctx.doc_mut(uuid.as_u128())?.unwrap();
            let (_, msgs) = d.get(ROOT, "messages").unwrap().unwrap();
            let first = d.keys(&msgs).next().unwrap();
            let (_, m) = d.get(&msgs, first.as_str()).unwrap().unwrap();
            d.put(&m, "body", "acme never wrote this").unwrap();
            d.put(ROOT, "subject", "Forged").unwrap();
            ctx.save_doc(uuid.as_u128())?;
            parley::store::index::reindex_doc(ctx, uuid, None, None, chrono::Utc::now())
        })
        .await
        .map(|(_, seq)| (seq, ()))
        .unwrap();
    bolt.svc().notify(uuid, seq);
    // Then an honest reply, which must still flow.
    let c2 = bolt
        .create(json!({"kind": "message", "partner": "acme", "subject": "Honest"}))
        .await;
    let id2 = c2["id"].as_str().unwrap().to_string();
    eventually(10, "the honest conversation at acme", || {
        conversation(&acme, &id2)
    })
    .await;
    let at_acme = conversation(&acme, &id).await.unwrap();
    assert_eq!(at_acme["subject"], "Original");
    assert_eq!(at_acme["messages"][0]["body"], "acme wrote this");

    // Revocation: acme removes bolt; bolt's changes stop arriving.
    let (_, peers) = acme.get("/api/v1/peers").await;
    let bolt_id = peers[0]["node_id"].as_str().unwrap().to_string();
    let (s, _) = acme
        .call(
            "DELETE",
            &format!("/api/v1/peers/{bolt_id}"),
            None,
            Some(&acme.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let c3 = bolt
        .create(json!({"kind": "message", "partner": "acme", "subject": "After revocation"}))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert!(
        conversation(&acme, c3["id"].as_str().unwrap())
            .await
            .is_none()
    );
    let (_, peers) = acme.get("/api/v1/peers").await;
    assert_eq!(peers.as_array().unwrap().len(), 0);
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sites_of_one_org_see_all_of_its_conversations() {
    let site1 = TestNode::start("acme", Role::Retailer).await;
    let site2 = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&site1, &site2).await;
    pair(&site1, &bolt).await;
    let (_, peers) = site2.get("/api/v1/peers").await;
    assert_eq!(peers[0]["own_org"], true);

    // bolt writes to acme; site1 relays it to site2, and site2's reply reaches bolt via site1.
    let c = bolt.create(json!({"kind": "task", "partner": "acme", "subject": "Return RMA-7", "body": "Please approve"})).await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(10, "bolt's task at site2", || conversation(&site2, &id)).await;
    site2
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Approved at the warehouse"}),
        )
        .await;
    let v = eventually(10, "site2's reply at bolt", || async {
        conversation(&bolt, &id)
            .await
            .filter(|v| v["messages"].as_array().unwrap().len() == 2)
    })
    .await;
    assert_eq!(v["messages"][1]["author"]["org"], "acme");
    // A conversation started at site2 reaches site1 and bolt.
    let c2 = site2
        .create(json!({"kind": "message", "partner": "bolt", "subject": "From the warehouse"}))
        .await;
    let id2 = c2["id"].as_str().unwrap().to_string();
    eventually(10, "site2's conversation at bolt", || {
        same_on(&bolt, &site2, &id2)
    })
    .await;
    eventually(10, "everything everywhere", || async {
        let a = inbox_ids(&site1).await;
        (a == inbox_ids(&site2).await && a == inbox_ids(&bolt).await && a.len() == 2).then_some(())
    })
    .await;
    bolt.stop().await;
    site2.stop().await;
    site1.stop().await;
}
