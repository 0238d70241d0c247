//! The conversations API end to end, against a real node on port 0.

mod common;

use common::{TestNode, assert_error};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_from_start_to_resolved() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let c = n
        .create(json!({
            "kind": "task", "partner": "bolt", "subject": "Description too thin",
            "topic": {"kind": "item", "ref": "SKU-12345", "label": "Kettle", "url": "https://erp.example/items/SKU-12345"},
            "reference_id": "CASE-7", "due_date": "2026-12-31", "body": "Please add materials and size."
        }))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["partner"], "bolt");
    assert_eq!(
        c["participants"],
        json!({"retailer": "acme", "supplier": "bolt"})
    );
    assert_eq!(c["progress"], "open");
    assert_eq!(c["state"], "open");
    assert_eq!(c["overdue"], false);
    assert_eq!(c["topic"]["ref"], "SKU-12345");
    assert_eq!(c["messages"].as_array().unwrap().len(), 1);

    let (s, r) = n
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Any update?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    assert_eq!(r["messages"][1]["body"], "Any update?");
    assert_eq!(
        r["messages"][1]["author"],
        json!({"org": "acme", "user": "admin"})
    );

    let (s, r) = n
        .put(
            &format!("/api/v1/conversations/{id}/progress"),
            json!({"progress": "in_progress"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["progress"], "in_progress");

    // Reference ID: change, then remove.
    let (_, r) = n
        .patch(
            &format!("/api/v1/conversations/{id}"),
            json!({"reference_id": "CASE-8", "subject": "Thin description"}),
        )
        .await;
    assert_eq!(
        (r["reference_id"].as_str(), r["subject"].as_str()),
        (Some("CASE-8"), Some("Thin description"))
    );
    let (_, r) = n
        .patch(
            &format!("/api/v1/conversations/{id}"),
            json!({"reference_id": null}),
        )
        .await;
    assert!(r["reference_id"].is_null(), "{r}");
    assert_eq!(
        r["subject"], "Thin description",
        "an absent field stays as it is"
    );

    let (s, r) = n
        .post(&format!("/api/v1/conversations/{id}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["state"], "resolved");
    assert_eq!(r["resolved_by"]["user"], "admin");
    let (_, inbox) = n.get("/api/v1/conversations?state=open").await;
    assert_eq!(inbox["total"], 0);
    let (_, resolved) = n.get("/api/v1/conversations?state=resolved").await;
    assert_eq!(resolved["items"][0]["id"], id.as_str());

    let (_, r) = n
        .post(&format!("/api/v1/conversations/{id}/reopen"), json!({}))
        .await;
    assert_eq!(r["state"], "open");
    let actions: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "created",
            "progress",
            "subject",
            "reference_id",
            "reference_id",
            "resolved",
            "reopened"
        ]
    );

    let (s, got) = n.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, r);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_is_derived_and_completed_is_never_overdue() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let late = n
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Late", "due_date": "2020-01-01"}),
        )
        .await;
    let on_time = n.create(json!({"kind": "task", "partner": "bolt", "subject": "Later", "due_date": "2999-01-01"})).await;
    n.create(json!({"kind": "message", "partner": "bolt", "subject": "Just a note"}))
        .await;
    assert_eq!(late["overdue"], true);
    assert_eq!(on_time["overdue"], false);
    let (_, page) = n.get("/api/v1/conversations?overdue=true").await;
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], late["id"]);
    assert_eq!(page["items"][0]["overdue"], true);
    let (_, page) = n.get("/api/v1/conversations?overdue=false").await;
    assert_eq!(page["total"], 2);

    let id = late["id"].as_str().unwrap();
    let (_, done) = n
        .put(
            &format!("/api/v1/conversations/{id}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(done["overdue"], false);
    let (_, page) = n.get("/api/v1/conversations?overdue=true").await;
    assert_eq!(page["total"], 0);
    // Reopening the work makes it overdue again: the flag is never stored.
    n.put(
        &format!("/api/v1/conversations/{id}/progress"),
        json!({"progress": "in_progress"}),
    )
    .await;
    let (_, page) = n.get("/api/v1/conversations?overdue=true").await;
    assert_eq!(page["total"], 1);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_filters_order_and_pages() {
    let n = TestNode::start("bolt", Role::Supplier).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let kind = if i % 2 == 0 { "task" } else { "message" };
        let partner = if i % 3 == 0 { "zeta" } else { "acme" };
        let c = n
            .create(json!({
                "kind": kind, "partner": partner, "subject": format!("s{i}"),
                "topic": {"kind": if i < 4 { "order" } else { "return" }, "ref": format!("PO-{}", i % 2)},
                "reference_id": format!("R{i}")
            }))
            .await;
        ids.push(c["id"].as_str().unwrap().to_string());
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // A reply moves a conversation to the top.
    n.post(
        &format!("/api/v1/conversations/{}/messages", ids[0]),
        json!({"body": "bump"}),
    )
    .await;
    let (_, all) = n.get("/api/v1/conversations").await;
    assert_eq!(all["total"], 7);
    let order: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    let mut expect: Vec<&str> = ids
        .iter()
        .rev()
        .map(|s| s.as_str())
        .filter(|s| *s != ids[0])
        .collect();
    expect.insert(0, &ids[0]);
    assert_eq!(order, expect);

    for (q, total) in [
        ("kind=task", 4),
        ("kind=message", 3),
        ("partner=zeta", 3),
        ("topic_kind=return", 3),
        ("topic_ref=PO-1", 3),
        ("reference_id=R5", 1),
        ("progress=open", 4),
        ("kind=task&partner=acme", 2),
        ("kind=task&topic_kind=order&partner=zeta", 1),
    ] {
        let (s, page) = n.get(&format!("/api/v1/conversations?{q}")).await;
        assert_eq!(s, StatusCode::OK, "{q}: {page}");
        assert_eq!(page["total"], total, "{q}");
        assert_eq!(
            page["items"].as_array().unwrap().len(),
            total as usize,
            "{q}"
        );
    }

    let mut seen = Vec::new();
    let mut url = "/api/v1/conversations?limit=3".to_string();
    loop {
        let (_, page) = n.get(&url).await;
        for i in page["items"].as_array().unwrap() {
            seen.push(i["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/conversations?limit=3&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, order);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_never_duplicate() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let id = uuid::Uuid::now_v7();
    let body = json!({"id": id, "kind": "message", "partner": "bolt", "subject": "Hello", "body": "first"});
    let (s1, a) = n.post("/api/v1/conversations", body.clone()).await;
    let (s2, b) = n.post("/api/v1/conversations", body).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a, b);
    // The same id for something else is a conflict.
    let (s, v) = n
        .post(
            "/api/v1/conversations",
            json!({"id": id, "kind": "task", "partner": "bolt", "subject": "Other"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&v, "conflict");

    // Idempotency-Key on create.
    let client = reqwest::Client::new();
    let send = |key: &'static str| {
        client
            .post(format!("{}/api/v1/conversations", n.base))
            .bearer_auth(&n.token)
            .header("Idempotency-Key", key)
            .json(&json!({"kind": "message", "partner": "bolt", "subject": "Keyed"}))
            .send()
    };
    let r1: serde_json::Value = send("k-1").await.unwrap().json().await.unwrap();
    let r2 = send("k-1").await.unwrap();
    assert_eq!(r2.status(), StatusCode::OK);
    let r2: serde_json::Value = r2.json().await.unwrap();
    assert_eq!(r1["id"], r2["id"]);

    // Replies with a client-chosen id, and with an Idempotency-Key.
    let path = format!("/api/v1/conversations/{id}/messages");
    let mid = uuid::Uuid::now_v7();
    n.post(&path, json!({"id": mid, "body": "once"})).await;
    let (s, r) = n.post(&path, json!({"id": mid, "body": "once"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(r["messages"].as_array().unwrap().len(), 2);
    for _ in 0..2 {
        let resp = client
            .post(format!("{}{path}", n.base))
            .bearer_auth(&n.token)
            .header("Idempotency-Key", "reply-1")
            .json(&json!({"body": "keyed reply"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let (_, c) = n.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 3);
    let (_, all) = n.get("/api/v1/conversations").await;
    assert_eq!(all["total"], 2);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_state_is_per_user_and_the_feed_moves() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (s, u) = n
        .post(
            "/api/v1/users",
            json!({"name": "bea", "password": "bea-password", "admin": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let (_, t) = n
        .post(
            "/api/v1/tokens",
            json!({"name": "bea-laptop", "user": "bea"}),
        )
        .await;
    let bea = t["token"].as_str().unwrap().to_string();

    let c = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Hi"}))
        .await;
    let id = c["id"].as_str().unwrap();
    let (_, mine) = n.get("/api/v1/conversations").await;
    assert_eq!(
        (
            mine["unread"].as_u64(),
            mine["items"][0]["unread"].as_bool()
        ),
        (Some(0), Some(false))
    );
    let (_, hers) = n
        .call("GET", "/api/v1/conversations", None, Some(&bea))
        .await;
    assert_eq!(
        (
            hers["unread"].as_u64(),
            hers["items"][0]["unread"].as_bool()
        ),
        (Some(1), Some(true))
    );
    n.call(
        "POST",
        &format!("/api/v1/conversations/{id}/read"),
        None,
        Some(&bea),
    )
    .await;
    let (_, hers) = n
        .call("GET", "/api/v1/conversations", None, Some(&bea))
        .await;
    assert_eq!(hers["unread"], 0);
    n.post(&format!("/api/v1/conversations/{id}/unread"), json!({}))
        .await;
    let (_, mine) = n.get("/api/v1/conversations").await;
    assert_eq!(mine["unread"], 1);

    let (_, feed) = n.get("/api/v1/changes?since=0").await;
    let last = feed["last_seq"].as_u64().unwrap();
    assert_eq!(feed["changes"].as_array().unwrap().len(), 1);
    n.post(
        &format!("/api/v1/conversations/{id}/messages"),
        json!({"body": "more"}),
    )
    .await;
    let (_, newer) = n.get(&format!("/api/v1/changes?since={last}")).await;
    assert_eq!(newer["changes"].as_array().unwrap().len(), 1);
    assert!(newer["changes"][0]["seq"].as_u64().unwrap() > last);
    let (_, none) = n
        .get(&format!("/api/v1/changes?since={}", newer["last_seq"]))
        .await;
    assert_eq!(none["changes"].as_array().unwrap().len(), 0);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_admin_rights() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (s, body) = n.call("GET", "/healthz", None, None).await;
    assert_eq!((s, body), (StatusCode::OK, json!("ok")));
    let (s, v) = n.call("GET", "/api/v1/conversations", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&v, "unauthorized");
    let (s, _) = n
        .call("GET", "/api/v1/conversations", None, Some("pt_wrong"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // An integration token is not an admin.
    let (s, t) = n.post("/api/v1/tokens", json!({"name": "erp"})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let erp = t["token"].as_str().unwrap().to_string();
    let (s, _) = n
        .call("GET", "/api/v1/conversations", None, Some(&erp))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = n
        .call(
            "POST",
            "/api/v1/partners",
            Some(json!({"id": "x", "name": "X", "role": "supplier"})),
            Some(&erp),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_error(&v, "admin");
    // Revoked tokens stop working at once.
    let tid = t["id"].as_str().unwrap();
    let (s, _) = n
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{tid}"),
            None,
            Some(&n.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = n
        .call("GET", "/api/v1/conversations", None, Some(&erp))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let (_, node) = n.get("/api/v1/node").await;
    assert_eq!(
        (node["org_id"].as_str(), node["role"].as_str()),
        (Some("acme"), Some("retailer"))
    );
    let (s, p) = n
        .post(
            "/api/v1/partners",
            json!({"id": "nova", "name": "Nova", "role": "supplier"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (_, list) = n.get("/api/v1/partners").await;
    assert!(list.as_array().unwrap().iter().any(|p| p["id"] == "nova"));
    let (s, spec) = n.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(spec["paths"]["/conversations/{id}/messages"].is_object());
    n.stop().await;
}
