//! Recovering from a partner when there is no backup: a supplier's node died, a new node of
//! the same org pairs with its retailer. Paired normally, it refuses its own org's history
//! from the retailer (the retailer cannot write as us); paired with `recover`, it takes it
//! back once, and then the normal rules apply again.

mod common;

use common::{TestNode, eventually};
use parley::domain::Role;
use serde_json::{Value, json};

async fn create(n: &TestNode, partner: &str, subject: &str) -> String {
    let v = n
        .create(json!({"kind": "task", "partner": partner, "subject": subject, "body": "first", "due_date": "2030-01-31"}))
        .await;
    v["id"].as_str().unwrap().to_string()
}

async fn reply(n: &TestNode, id: &str, body: &str) {
    n.reply_ok(id, body).await;
}

async fn bodies(n: &TestNode, id: &str) -> Vec<String> {
    n.bodies(id).await
}

/// `b` pairs with an invite from `a`, recovering or not; returns `b`'s peer record of `a`.
async fn pair_with(a: &TestNode, b: &TestNode, recover: bool) -> Value {
    let (s, inv) = a
        .post("/api/v1/peers/invites", common::invite_for(a, b))
        .await;
    assert_eq!(s, 200, "{inv}");
    let (s, p) = b
        .post(
            "/api/v1/peers",
            json!({"code": inv["code"], "recover": recover}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    p
}

/// `n`'s link with its only peer, once the first exchange after connecting completed.
async fn caught_up(n: &TestNode) -> Value {
    eventually(60, "the first exchange to complete", || async {
        let (_, v) = n.get("/api/v1/peers").await;
        (v[0]["caught_up"] == json!(true)).then(|| v[0].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_lost_its_data_gets_its_history_back_only_through_a_recovery_pairing() {
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let old = TestNode::start("acme", Role::Retailer).await;
    common::pair(&old, &bolt).await;
    let ours = create(&old, "bolt", "PO 7781 has not shipped").await;
    let theirs = create(&bolt, "acme", "Return RMA-55 received").await;
    eventually(60, "bolt to hold acme's task", || async {
        (bodies(&bolt, &ours).await.len() == 1).then_some(())
    })
    .await;
    eventually(60, "acme to hold bolt's task", || async {
        (bodies(&old, &theirs).await.len() == 1).then_some(())
    })
    .await;
    reply(&bolt, &ours, "ships Friday").await;
    reply(&old, &theirs, "credit note please").await;
    // acme's own file, which bolt fetches from acme.
    let pdf = common::random_pdf(200_000);
    let (s, up) = old.upload("po-7781.pdf", pdf.clone()).await;
    assert_eq!(s, 201, "{up}");
    let sha = up["sha256"].as_str().unwrap().to_string();
    let (s, v) = old
        .post(
            &format!("/api/v1/conversations/{ours}/messages"),
            json!({"body": "thanks", "attachments": [sha]}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    eventually(60, "bolt to fetch acme's file", || async {
        let (s, _, _) = bolt.download(&sha).await;
        (s == 200).then_some(())
    })
    .await;
    for (id, n) in [(&ours, 3), (&theirs, 2)] {
        eventually(60, "bolt to hold every reply", || async {
            (bodies(&bolt, id).await.len() == n).then_some(())
        })
        .await;
    }
    // acme's disk dies. No backup.
    old.stop().await;

    // A new node of acme, paired the usual way: both conversations carry acme's own
    // messages, which bolt may not write, so neither is taken.
    let plain = TestNode::start("acme", Role::Retailer).await;
    let p = pair_with(&bolt, &plain, false).await;
    assert_eq!(p["recovering"], false, "{p}");
    caught_up(&plain).await;
    assert!(bodies(&plain, &ours).await.is_empty());
    assert!(bodies(&plain, &theirs).await.is_empty());
    let (_, inbox) = plain.get("/api/v1/conversations").await;
    assert_eq!(inbox["items"], json!([]), "{inbox}");

    // Another new node of acme, paired for recovery: it gets everything back.
    let back = TestNode::start("acme", Role::Retailer).await;
    let p = pair_with(&bolt, &back, true).await;
    assert_eq!(p["recovering"], true, "{p}");
    for (id, want) in [
        (&ours, vec!["first", "ships Friday", "thanks"]),
        (&theirs, vec!["first", "credit note please"]),
    ] {
        let got = eventually(60, "the history to come back", || async {
            let b = bodies(&back, id).await;
            (b.len() == want.len()).then_some(b)
        })
        .await;
        assert_eq!(got, want);
    }
    let (_, d) = back.get(&format!("/api/v1/conversations/{ours}")).await;
    assert_eq!(d["kind"], "task");
    assert_eq!(d["due_date"], "2030-01-31");
    // acme's own file comes back too: bolt got it from acme, so it may give it back.
    let (_, _, bytes) = eventually(60, "acme's lost file to come back", || async {
        let got = back.download(&sha).await;
        (got.0 == 200).then_some(got)
    })
    .await;
    assert_eq!(bytes, pdf);
    // Once the first exchange completed, the window is closed, for good.
    eventually(60, "the recovery window to close", || async {
        let (_, v) = back.get("/api/v1/peers").await;
        (v[0]["recovering"] == json!(false)).then_some(())
    })
    .await;
    // And sync goes on both ways under the normal rules.
    reply(&back, &ours, "acme is back").await;
    reply(&bolt, &theirs, "credit note sent").await;
    eventually(60, "bolt to hold the restored node's reply", || async {
        (bodies(&bolt, &ours).await.len() == 4).then_some(())
    })
    .await;
    eventually(60, "the restored node to hold bolt's reply", || async {
        (bodies(&back, &theirs).await.len() == 3).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recovery_pairing_is_refused_for_another_site_of_our_own_org() {
    let a = TestNode::start("acme", Role::Retailer).await;
    let b = TestNode::start("acme", Role::Retailer).await;
    let (s, inv) = a
        .post("/api/v1/peers/invites", common::invite_for(&a, &b))
        .await;
    assert_eq!(s, 200, "{inv}");
    let (s, v) = b
        .post(
            "/api/v1/peers",
            json!({"code": inv["code"], "recover": true}),
        )
        .await;
    assert_eq!(s, 400, "{v}");
    common::assert_error(&v, "invalid");
    assert!(v["detail"].as_str().unwrap().contains("partner"), "{v}");
    let (_, peers) = b.get("/api/v1/peers").await;
    assert_eq!(peers, json!([]), "nothing was paired");
}
