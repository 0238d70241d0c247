//! Two small ways in, closed: a token named like a person, and a topic record link that runs
//! script. Over real HTTP against a real node.

mod common;

use common::{TestNode, assert_error};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_a_user_never_acts_as_a_person_of_its_name() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (_, before) = n.get("/api/v1/tokens").await;
    // `admin` is a person (and an admin): a token named so, without `user`, is refused.
    let (s, v) = n.post("/api/v1/tokens", json!({"name": "admin"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_error(&v, "another name");
    let (_, after) = n.get("/api/v1/tokens").await;
    assert_eq!(before, after, "a refused token must not be stored");
    // So is the name of the node's own admin integration (made as a running node makes it).
    n.svc().local_cli_token().await.unwrap();
    let (s, v) = n.post("/api/v1/tokens", json!({"name": "local-cli"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");

    // A fresh name makes an integration user, without admin rights.
    let (s, t) = n.post("/api/v1/tokens", json!({"name": "erp-sync"})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["user"], "erp-sync");
    let (_, users) = n.get("/api/v1/users").await;
    let u = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "erp-sync")
        .expect("the integration user");
    assert_eq!(
        (u["kind"].as_str(), u["admin"].as_bool()),
        (Some("integration"), Some(false))
    );
    let secret = t["token"].as_str().unwrap();
    let (s, _) = n.call("GET", "/api/v1/users", None, Some(secret)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A second token of that name joins the same integration (rotation).
    let (s, t2) = n.post("/api/v1/tokens", json!({"name": "erp-sync"})).await;
    assert_eq!((s, &t2["user"]), (StatusCode::CREATED, &json!("erp-sync")));
    // Acting as a person stays possible, on purpose.
    let (s, t3) = n
        .post("/api/v1/tokens", json!({"name": "admin", "user": "admin"}))
        .await;
    assert_eq!((s, &t3["user"]), (StatusCode::CREATED, &json!("admin")));
    // A person can no longer be added under an integration's name either.
    let (s, v) = n
        .post(
            "/api/v1/users",
            json!({"name": "erp-sync", "password": "long-enough"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_record_link_must_be_a_web_or_mail_address() {
    let n = TestNode::start("acme", Role::Retailer).await;
    for url in [
        "javascript:alert(document.cookie)",
        "JAVASCRIPT:alert(1)",
        " javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox",
        "file:///etc/passwd",
    ] {
        let (s, v) = n
            .post(
                "/api/v1/topics",
                json!({"kind": "item", "ref": "SKU-1", "title": "Kettle", "url": url}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}: {v}");
        assert_error(&v, "https://");
        let (s, _) = n.get("/api/v1/topics/item/SKU-1").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{url} must not be stored");
    }
    // A CSV import with such a link is refused whole, naming the line.
    let csv = "kind,ref,title,url\nitem,SKU-2,Mug,https://shop.example/mug\nitem,SKU-3,Pot,javascript:alert(1)\n";
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/topics/import", n.base))
        .bearer_auth(&n.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_error(&v, "line 3");
    let (s, _) = n.get("/api/v1/topics/item/SKU-2").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    for url in ["https://shop.example/sku-1", "mailto:buyer@example.com"] {
        let (s, v) = n
            .post(
                "/api/v1/topics",
                json!({"kind": "item", "ref": "SKU-1", "title": "Kettle", "url": url}),
            )
            .await;
        assert!(s.is_success(), "{url}: {v}");
    }
    n.stop().await;
}
