//! Bulk actions (`POST /api/v1/conversations/bulk`) on real nodes through HTTP.
//!
//! The promise: every conversation named (or matched by the filter) gets a result, in request
//! order, and changes durably or not at all; a request that breaks a rule is refused whole
//! and changes nothing. The crash and a damaged document, with the real binary, are in
//! `tests/bulk_crash.rs`.

mod common;

use std::collections::HashSet;

use common::{TestNode, assert_error};
use futures_util::stream::{self, StreamExt};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const BULK: &str = "/api/v1/conversations/bulk";

/// Creates `n` conversations with `partner` concurrently; returns their ids in creation order.
async fn create_many(node: &TestNode, n: usize, body: impl Fn(usize) -> Value) -> Vec<String> {
    let bodies: Vec<Value> = (0..n).map(body).collect();
    let mut out: Vec<(usize, String)> = stream::iter(bodies.into_iter().enumerate())
        .map(|(i, b)| async move { (i, node.create(b).await["id"].as_str().unwrap().to_string()) })
        .buffer_unordered(32)
        .collect()
        .await;
    out.sort();
    out.into_iter().map(|(_, id)| id).collect()
}

fn message(partner: &str, subject: &str) -> Value {
    json!({"kind": "message", "partner": partner, "subject": subject, "body": "hello"})
}

fn task(partner: &str, subject: &str) -> Value {
    json!({"kind": "task", "partner": partner, "subject": subject})
}

async fn total(node: &TestNode, query: &str) -> u64 {
    let (s, v) = node
        .get(&format!("/api/v1/conversations?limit=1&{query}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["total"].as_u64().unwrap()
}

async fn state_of(node: &TestNode, id: &str) -> (String, Value) {
    let (s, v) = node.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    (v["state"].as_str().unwrap().to_string(), v)
}

/// The feed's last sequence: any change to any conversation moves it.
async fn last_seq(node: &TestNode) -> u64 {
    let (s, v) = node.get("/api/v1/changes?since=0&limit=1").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["last_seq"].as_u64().unwrap()
}

/// The ids the inbox lists for `query`, in its order, walking every page.
async fn listed(node: &TestNode, query: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (s, v) = node
            .get(&format!("/api/v1/conversations?limit=7&{query}{c}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        for i in v["items"].as_array().unwrap() {
            out.push(i["id"].as_str().unwrap().to_string());
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_resolved_in_one_request_are_all_durable() {
    let mut node = TestNode::start("acme", Role::Retailer).await;
    let ids = create_many(&node, 500, |i| message("bolt", &format!("Shipment {i}"))).await;
    let (s, v) = node
        .post(BULK, json!({"action": "resolve", "ids": ids}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["changed"].as_u64(), v["failed"].as_u64()),
        (Some(500), Some(0)),
        "{v}"
    );
    let got: Vec<String> = outcomes(&v).into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(got, ids, "one result per conversation, in request order");

    // Reopen the store: what was answered must be on disk, documents and indexes alike.
    node.pause().await;
    node.resume().await;
    for id in &ids {
        let (state, c) = state_of(&node, id).await;
        assert_eq!(state, "resolved", "{c}");
        assert!(c["resolved_at"].is_string(), "{c}");
    }
    assert_eq!(total(&node, "folder=resolved").await, 500);
    assert_eq!(total(&node, "folder=inbox").await, 0);
    let resolved: HashSet<String> = listed(&node, "folder=resolved").await.into_iter().collect();
    assert_eq!(resolved, ids.iter().cloned().collect::<HashSet<_>>());

    // Once more is no change at all.
    let before = last_seq(&node).await;
    let (s, v) = node
        .post(BULK, json!({"action": "resolve", "ids": ids}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["unchanged"].as_u64(), Some(500), "{v}");
    assert_eq!(last_seq(&node).await, before);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_batch_reports_each_outcome_and_changes_only_what_applies() {
    let node = TestNode::start("acme", Role::Retailer).await;
    let bystander = node.create(message("bolt", "Bystander")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = node.create(message("bolt", "Already resolved")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = node
        .post(&format!("/api/v1/conversations/{done}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let good = node.create(message("bolt", "To resolve")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = uuid::Uuid::new_v4().to_string();

    let before = last_seq(&node).await;
    let (s, v) = node
        .post(
            BULK,
            json!({"action": "resolve", "ids": [unknown, done, good, "not-a-uuid"]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        outcomes(&v),
        vec![
            (unknown.clone(), "failed".into(), Some("not_found".into())),
            (done.clone(), "unchanged".into(), None),
            (good.clone(), "changed".into(), None),
            ("not-a-uuid".into(), "failed".into(), Some("invalid".into())),
        ],
        "{v}"
    );
    assert_eq!(
        (
            v["changed"].as_u64(),
            v["unchanged"].as_u64(),
            v["failed"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    for r in v["results"].as_array().unwrap() {
        if r["outcome"] == "failed" {
            assert!(r["detail"].as_str().is_some_and(|d| !d.is_empty()), "{r}");
        } else {
            assert!(r.get("code").is_none() && r.get("detail").is_none(), "{r}");
        }
    }
    // Exactly one conversation changed, and it is the good one.
    let (_, feed) = node.get(&format!("/api/v1/changes?since={before}")).await;
    let changed: Vec<&str> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(changed, vec![good.as_str()], "{feed}");
    assert_eq!(state_of(&node, &bystander).await.0, "open");
    assert_eq!(state_of(&node, &good).await.0, "resolved");

    // set_progress: a message is refused as its own endpoint refuses it; a task already at
    // that progress is unchanged.
    let t1 = node.create(task("bolt", "Task to finish")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let t2 = node.create(task("bolt", "Finished task")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _) = node
        .put(
            &format!("/api/v1/conversations/{t2}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (single, single_v) = node
        .put(
            &format!("/api/v1/conversations/{bystander}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(single, StatusCode::UNPROCESSABLE_ENTITY, "{single_v}");
    let before = last_seq(&node).await;
    let (s, v) = node
        .post(
            BULK,
            json!({"action": "set_progress", "progress": "completed", "ids": [bystander, t1, t2]}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        outcomes(&v),
        vec![
            (
                bystander.clone(),
                "failed".into(),
                single_v["error"].as_str().map(String::from)
            ),
            (t1.clone(), "changed".into(), None),
            (t2.clone(), "unchanged".into(), None),
        ],
        "{v}"
    );
    let (_, feed) = node.get(&format!("/api/v1/changes?since={before}")).await;
    assert_eq!(feed["changes"].as_array().unwrap().len(), 1, "{feed}");
    let (_, t1v) = state_of(&node, &t1).await;
    assert_eq!(t1v["progress"], "completed");

    // Read marks are the user's own: the writer has read what it wrote.
    let (_, v) = node
        .post(
            BULK,
            json!({"action": "mark_unread", "ids": [bystander, good]}),
        )
        .await;
    assert_eq!(v["changed"].as_u64(), Some(2), "{v}");
    let (_, v) = node
        .post(BULK, json!({"action": "mark_unread", "ids": [bystander]}))
        .await;
    assert_eq!(v["unchanged"].as_u64(), Some(1), "{v}");
    assert_eq!(total(&node, "folder=unread").await, 2);
    let (_, v) = node
        .post(
            BULK,
            json!({"action": "mark_read", "ids": [bystander, good, unknown]}),
        )
        .await;
    assert_eq!(
        outcomes(&v).into_iter().map(|o| o.1).collect::<Vec<_>>(),
        vec!["changed", "changed", "failed"],
        "{v}"
    );
    assert_eq!(total(&node, "folder=unread").await, 0);

    let (_, v) = node
        .post(BULK, json!({"action": "reopen", "ids": [good, bystander]}))
        .await;
    assert_eq!(
        outcomes(&v).into_iter().map(|o| o.1).collect::<Vec<_>>(),
        vec!["changed", "unchanged"],
        "{v}"
    );
    assert_eq!(state_of(&node, &good).await.0, "open");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing() {
    let node = TestNode::start("acme", Role::Retailer).await;
    let ids = create_many(&node, 3, |i| message("bolt", &format!("Keep {i}"))).await;
    let id = ids[0].clone();
    let many: Vec<String> = (0..1001)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();
    let upper = id.to_uppercase();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "1,001 ids",
            json!({"action": "resolve", "ids": many}),
            "at most 1000",
        ),
        ("no ids", json!({"action": "resolve", "ids": []}), "ids"),
        (
            "an id twice",
            json!({"action": "resolve", "ids": [id, id]}),
            "more than once",
        ),
        (
            "an id twice, spelt differently",
            json!({"action": "resolve", "ids": [id, upper]}),
            "more than once",
        ),
        (
            "ids and filter",
            json!({"action": "resolve", "ids": [id], "filter": {"folder": "inbox"}}),
            "exactly one",
        ),
        ("neither", json!({"action": "resolve"}), "exactly one"),
        ("no action", json!({"ids": [id]}), "action"),
        (
            "an unknown action",
            json!({"action": "delete", "ids": [id]}),
            "action",
        ),
        (
            "set_progress without progress",
            json!({"action": "set_progress", "ids": [id]}),
            "progress",
        ),
        (
            "progress with resolve",
            json!({"action": "resolve", "progress": "completed", "ids": [id]}),
            "progress",
        ),
        (
            "an unknown progress",
            json!({"action": "set_progress", "progress": "done", "ids": [id]}),
            "progress",
        ),
        (
            "a filter without a folder",
            json!({"action": "resolve", "filter": {"partner": "bolt"}}),
            "folder",
        ),
        // A misspelt filter field must not widen the filter to the whole folder.
        (
            "a misspelt filter field",
            json!({"action": "resolve", "filter": {"folder": "inbox", "partnr": "bolt"}}),
            "partnr",
        ),
        (
            "a cursor in the filter",
            json!({"action": "resolve", "filter": {"folder": "inbox", "cursor": "1.2"}}),
            "cursor",
        ),
        (
            "an unknown field",
            json!({"action": "resolve", "ids": [id], "everything": true}),
            "everything",
        ),
        (
            "a filter against its folder",
            json!({"action": "resolve", "filter": {"folder": "inbox", "state": "resolved"}}),
            "state",
        ),
        (
            "a bad partner",
            json!({"action": "resolve", "filter": {"folder": "inbox", "partner": "NOT VALID"}}),
            "invalid",
        ),
        (
            "an unknown folder",
            json!({"action": "resolve", "filter": {"folder": "trash"}}),
            "folder",
        ),
        (
            "ids not a list",
            json!({"action": "resolve", "ids": id}),
            "list",
        ),
    ];
    let before = last_seq(&node).await;
    for (what, body, says) in cases {
        let (s, v) = node.post(BULK, body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_error(&v, says);
    }
    // Without a token, with a wrong one, and with a session cookie but no CSRF token.
    let body = json!({"action": "resolve", "ids": [id]});
    let (s, v) = node.call("POST", BULK, Some(body.clone()), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let (s, v) = node
        .call("POST", BULK, Some(body.clone()), Some("nope"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let http = reqwest::Client::new();
    let cookie = node.session_cookie().await;
    let r = http
        .post(format!("{}{BULK}", node.base))
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The path is its own: another method is a 405 that names POST, not a conversation id.
    let r = http
        .get(format!("{}{BULK}", node.base))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");

    assert_eq!(
        last_seq(&node).await,
        before,
        "a refused request changed something"
    );
    assert_eq!(total(&node, "folder=inbox").await, 3);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_resolves_exactly_the_rows_the_inbox_lists() {
    let node = TestNode::start("bolt", Role::Supplier).await;
    let ids = create_many(&node, 36, |i| {
        let partner = if i % 3 == 0 { "zeta" } else { "acme" };
        let mut b = if i % 2 == 0 {
            task(partner, &format!("Restock pallet {i}"))
        } else {
            message(partner, &format!("Question {i}"))
        };
        if i % 4 == 0 {
            b["reference_id"] = json!("CASE-9");
        }
        b
    })
    .await;
    for (query, filter) in [
        (
            "folder=inbox&partner=acme&kind=task",
            json!({"folder": "inbox", "partner": "acme", "kind": "task"}),
        ),
        (
            "folder=inbox&q=pallet&sort=due",
            json!({"folder": "inbox", "q": "pallet", "sort": "due"}),
        ),
        (
            "folder=all&reference_id=CASE-9",
            json!({"folder": "all", "reference_id": "CASE-9"}),
        ),
    ] {
        let open_before: HashSet<String> =
            listed(&node, "folder=inbox").await.into_iter().collect();
        let want = listed(&node, query).await;
        assert!(!want.is_empty(), "{query} must match something");
        let (s, v) = node
            .post(BULK, json!({"action": "resolve", "filter": filter}))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let got: Vec<String> = outcomes(&v).into_iter().map(|(id, _, _)| id).collect();
        assert_eq!(got, want, "{query}: the same rows, in the inbox's order");
        let resolved: HashSet<&String> =
            want.iter().filter(|id| open_before.contains(*id)).collect();
        assert_eq!(v["changed"].as_u64(), Some(resolved.len() as u64), "{v}");
        // Everything else that was open is still open.
        let open_after: HashSet<String> = listed(&node, "folder=inbox").await.into_iter().collect();
        let expected: HashSet<String> = open_before
            .iter()
            .filter(|id| !resolved.contains(id))
            .cloned()
            .collect();
        assert_eq!(open_after, expected, "{query}");
    }
    // And back: reopen every resolved one by filter.
    let (s, v) = node
        .post(
            BULK,
            json!({"action": "reopen", "filter": {"folder": "resolved"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(total(&node, "folder=inbox").await, ids.len() as u64);
    // A filter matching nothing is an empty answer, not an error.
    let (s, v) = node
        .post(
            BULK,
            json!({"action": "resolve", "filter": {"folder": "inbox", "reference_id": "NONE"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["results"], json!([]));
    node.stop().await;
}
