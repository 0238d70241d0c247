//! Crossed changes between real nodes: while apart, one org completes a task and the other
//! cancels it. After they reconnect both nodes show the same standing value, report the
//! crossing the same way with who set what, and the crossing clears once someone sets the
//! field again.

mod common;

use common::{TestNode, eventually, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn detail(n: &TestNode, id: &str) -> Option<Value> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(v)
}

async fn connected(n: &TestNode, org: &str) -> bool {
    let (_, peers) = n.get("/api/v1/peers").await;
    peers.as_array().is_some_and(|ps| {
        ps.iter()
            .any(|p| p["org_id"] == org && p["connected"] == true)
    })
}

async fn away(n: &TestNode, org: &str) -> Option<()> {
    (!connected(n, org).await).then_some(())
}

async fn set_progress(n: &TestNode, id: &str, p: &str) {
    let (s, v) = n
        .put(
            &format!("/api/v1/conversations/{id}/progress"),
            json!({ "progress": p }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_here_and_cancelled_there_is_told_on_both_nodes_until_set_again() {
    let mut acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let c = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Thin description", "body": "Add detail", "due_date": "2030-01-01"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["conflicts"], json!([]));
    eventually(30, "the task at bolt", || detail(&bolt, &id)).await;

    // Apart: acme completes it while bolt is down, then bolt cancels it while acme is down.
    bolt.pause().await;
    eventually(30, "bolt away", || away(&acme, "bolt")).await;
    set_progress(&acme, &id, "completed").await;
    acme.pause().await;
    bolt.resume().await;
    set_progress(&bolt, &id, "cancelled").await;
    assert_eq!(detail(&bolt, &id).await.unwrap()["conflicts"], json!([]));
    acme.resume().await;

    // Together again: both nodes hold both changes and tell the same story.
    let (a, b) = eventually(60, "the crossing on both nodes", || async {
        let a = detail(&acme, &id).await?;
        let b = detail(&bolt, &id).await?;
        (a["conflicts"].as_array()?.len() == 1 && a["conflicts"] == b["conflicts"])
            .then_some((a, b))
    })
    .await;
    let x = &a["conflicts"][0];
    assert_eq!(x["field"], "progress", "{x}");
    let standing = x["standing"].as_str().unwrap();
    assert!(["completed", "cancelled"].contains(&standing), "{x}");
    let other = if standing == "completed" {
        "cancelled"
    } else {
        "completed"
    };
    assert_eq!(x["others"], json!([other]), "{x}");
    // The conversation shows the standing value on both nodes.
    assert_eq!(a["progress"], standing);
    assert_eq!(b["progress"], standing);
    // Who set which value, from the history written with each change.
    let who = |v: &str| if v == "completed" { "acme" } else { "bolt" };
    assert_eq!(
        x["standing_by"],
        json!({"org": who(standing), "user": "admin"}),
        "{x}"
    );
    assert_eq!(
        x["others_by"],
        json!([{"org": who(other), "user": "admin"}]),
        "{x}"
    );

    // Someone sets it again, to the value that stands: the crossing is gone everywhere.
    let settler = if standing == "completed" {
        &bolt
    } else {
        &acme
    };
    set_progress(settler, &id, standing).await;
    eventually(60, "no crossing on either node", || async {
        let a = detail(&acme, &id).await?;
        let b = detail(&bolt, &id).await?;
        (a["conflicts"] == json!([])
            && b["conflicts"] == json!([])
            && a["progress"] == standing
            && b["progress"] == standing)
            .then_some(())
    })
    .await;
    // Setting it once more without a crossing changes nothing.
    let before = detail(&acme, &id).await.unwrap()["history"]
        .as_array()
        .unwrap()
        .len();
    set_progress(&acme, &id, standing).await;
    let after = detail(&acme, &id).await.unwrap()["history"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after);
    bolt.stop().await;
    acme.stop().await;
}

/// Both orgs mark the task completed while apart: Automerge keeps one value per side, but
/// they are equal, so nothing is reported that a user would have to settle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_value_set_on_both_sides_is_not_a_crossing() {
    let mut acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let c = acme
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Photos", "body": "All sides"}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(30, "the task at bolt", || detail(&bolt, &id)).await;

    bolt.pause().await;
    eventually(30, "bolt away", || away(&acme, "bolt")).await;
    set_progress(&acme, &id, "completed").await;
    acme.pause().await;
    bolt.resume().await;
    set_progress(&bolt, &id, "completed").await;
    acme.resume().await;

    // Both nodes hold both changes: each side's progress entry is in both histories.
    let progress_by = |v: &Value| {
        let mut orgs: Vec<String> = v["history"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["action"] == "progress")
            .filter_map(|e| e["by"]["org"].as_str().map(str::to_string))
            .collect();
        orgs.sort();
        orgs
    };
    let (a, b) = eventually(60, "both changes on both nodes", || async {
        let a = detail(&acme, &id).await?;
        let b = detail(&bolt, &id).await?;
        (progress_by(&a) == ["acme", "bolt"] && progress_by(&b) == ["acme", "bolt"])
            .then_some((a, b))
    })
    .await;
    assert_eq!(a["conflicts"], json!([]), "{a}");
    assert_eq!(b["conflicts"], json!([]), "{b}");
    assert_eq!(a["progress"], "completed");
    assert_eq!(b["progress"], "completed");
    bolt.stop().await;
    acme.stop().await;
}
