//! Webhooks as an attacker would try them: addresses a node must not send to (at creation
//! and again at send time), malformed URLs and events, and users who are not admins.

mod common;

use common::receiver::Receiver;
use common::{TestNode, assert_error, eventually};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

async fn refused(n: &TestNode, body: serde_json::Value, why: &str) {
    let (s, v) = n.post("/api/v1/webhooks", body.clone()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    assert_error(&v, why);
    let (_, list) = n.get("/api/v1/webhooks").await;
    assert_eq!(list, json!({"webhooks": []}), "nothing stored for {body}");
}

#[tokio::test]
async fn refused_addresses_and_bad_input_store_nothing() {
    // The default rules: private and external addresses, never loopback.
    let n = TestNode::start("acme", Role::Retailer).await;
    let ev = json!(["message.created"]);
    let p = n.addr().port();
    for (url, why) in [
        (format!("http://127.0.0.1:{p}/h"), "loopback"),
        (format!("http://localhost:{p}/h"), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data".into(),
            "link-local",
        ),
        (format!("http://[::1]:{p}/h"), "loopback"),
        (format!("http://0.0.0.0:{p}/h"), "unspecified"),
        ("http://[fd00:ec2::254]/".into(), "metadata"),
        ("http://[fe80::1]/".into(), "link-local"),
        ("http://224.0.0.1/".into(), "multicast"),
        ("http://[::ffff:127.0.0.1]/".into(), "loopback"),
        // The same loopback written as a number, in hex, short, or inside IPv6.
        (format!("http://2130706433:{p}/h"), "loopback"),
        (format!("http://0x7f.1:{p}/h"), "loopback"),
        (format!("http://127.1:{p}/h"), "loopback"),
        (format!("http://[::127.0.0.1]:{p}/h"), "loopback"),
        (format!("http://[64:ff9b::7f00:1]:{p}/h"), "loopback"),
        ("http://100.100.100.200/latest/meta-data".into(), "metadata"),
        ("http://0.1.2.3/".into(), "unspecified"),
        ("ftp://erp.example/h".into(), "http"),
        ("http://user:pw@10.0.0.5/h".into(), "user name"),
        ("http://10.0.0.5/h#x".into(), "fragment"),
        ("not a url".into(), "url"),
        (format!("http://10.0.0.5/{}", "a".repeat(2000)), "2000"),
    ] {
        refused(&n, json!({"url": url, "events": ev}), why).await;
    }
    let ok_url = "http://10.0.0.5:8080/hooks";
    for (events, why) in [
        (json!([]), "at least one"),
        (json!(["message.deleted"]), "not an event type"),
        (json!(["message.created", "message.created"]), "twice"),
    ] {
        refused(&n, json!({"url": ok_url, "events": events}), why).await;
    }
    // A private LAN address is fine by default (the ERP usually lives there).
    let (s, v) = n
        .post("/api/v1/webhooks", json!({"url": ok_url, "events": ev}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap();
    // Changing it to a refused address is refused too, and changes nothing.
    let (s, e) = n
        .put(
            &format!("/api/v1/webhooks/{id}"),
            json!({"url": format!("http://localhost:{p}/")}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (s, e) = n
        .put(
            &format!("/api/v1/webhooks/{id}"),
            json!({"events": ["nope"]}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    let (_, w) = n.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!((w["url"].as_str(), &w["events"]), (Some(ok_url), &ev));
    let (s, w) = n
        .put(
            &format!("/api/v1/webhooks/{id}"),
            json!({"events": ["task.overdue", "message.created"], "description": "ERP"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    assert_eq!(
        (w["events"].clone(), w["description"].clone()),
        (json!(["task.overdue", "message.created"]), json!("ERP"))
    );
    // Unknown ids.
    let other = uuid::Uuid::now_v7();
    let (s, e) = n.get(&format!("/api/v1/webhooks/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, _) = n
        .post(&format!("/api/v1/webhooks/{other}/test"), json!({}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = n
        .call(
            "DELETE",
            &format!("/api/v1/webhooks/{other}"),
            None,
            Some(&n.token),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = n
        .get(&format!("/api/v1/webhooks/{id}/deliveries?limit=0"))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = n
        .call(
            "DELETE",
            &format!("/api/v1/webhooks/{id}"),
            None,
            Some(&n.token),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, list) = n.get("/api/v1/webhooks").await;
    assert_eq!(list, json!({"webhooks": []}));

    // `allow = ["loopback"]`: loopback accepted, by address and by name; private now refused.
    let lo = TestNode::start_configured(
        "acme",
        Role::Retailer,
        "[webhooks]\nallow = [\"loopback\"]\n",
    )
    .await;
    for url in [
        format!("http://127.0.0.1:{p}/h"),
        format!("http://localhost:{p}/h"),
    ] {
        let (s, v) = lo
            .post("/api/v1/webhooks", json!({"url": url, "events": ev}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{url}: {v}");
    }
    let (s, v) = lo
        .post("/api/v1/webhooks", json!({"url": ok_url, "events": ev}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_error(&v, "private");
}

#[tokio::test]
async fn a_receiver_refused_by_the_rules_at_send_time_gets_nothing() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let cfg = "[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 1, 1]\n";
    let mut n = TestNode::start_configured("acme", Role::Retailer, cfg).await;
    let r = Receiver::start(&py, "");
    let (s, by_name) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": format!("http://localhost:{}/n", r.port), "events": ["message.created"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{by_name}");
    let (_, by_addr) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": r.url("/a"), "events": ["message.created"]}),
        )
        .await;
    // Restarted with stricter rules: neither a name resolving to loopback nor the address
    // itself may be sent to now.
    n.pause().await;
    let toml = n.dir.path().join(parley::config::CONFIG_FILE);
    std::fs::write(
        &toml,
        "[webhooks]\nallow = [\"private\"]\nretry_secs = [0, 1, 1]\n",
    )
    .unwrap();
    n.resume().await;
    for ep in [&by_name, &by_addr] {
        let id = ep["id"].as_str().unwrap();
        let (s, _) = n
            .post(&format!("/api/v1/webhooks/{id}/test"), json!({}))
            .await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let d = eventually(20, "the test event failed", || async {
            let (_, v) = n.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
            let d = v["deliveries"][0].clone();
            (d["status"] == "failed").then_some(d)
        })
        .await;
        assert_eq!(
            d["attempts"], 4,
            "the first attempt and one per retry_secs entry: {d}"
        );
        assert!(d["last_status_code"].is_null());
        assert!(
            d["last_error"].as_str().unwrap().contains("loopback"),
            "{d}"
        );
    }
    assert!(r.requests().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn only_admins_manage_webhooks() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (s, w) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://10.0.0.5/h", "events": ["message.created"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = w["id"].as_str().unwrap();
    n.post(
        "/api/v1/users",
        json!({"name": "kim", "password": "pallet-jack-9", "admin": false}),
    )
    .await;
    let (_, t) = n
        .post("/api/v1/tokens", json!({"name": "kim-t", "user": "kim"}))
        .await;
    let kim = t["token"].as_str().unwrap();
    let body = json!({"url": "http://10.0.0.6/h", "events": ["message.created"]});
    for (m, path, b) in [
        ("GET", "/api/v1/webhooks".to_string(), None),
        ("POST", "/api/v1/webhooks".into(), Some(body.clone())),
        ("GET", "/api/v1/webhooks/event-example".into(), None),
        ("GET", format!("/api/v1/webhooks/{id}"), None),
        ("PUT", format!("/api/v1/webhooks/{id}"), Some(body.clone())),
        ("DELETE", format!("/api/v1/webhooks/{id}"), None),
        (
            "POST",
            format!("/api/v1/webhooks/{id}/test"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/webhooks/{id}/rotate"),
            Some(json!({})),
        ),
        (
            "POST",
            format!("/api/v1/webhooks/{id}/enable"),
            Some(json!({})),
        ),
        ("GET", format!("/api/v1/webhooks/{id}/deliveries"), None),
    ] {
        let (s, v) = n.call(m, &path, b.clone(), Some(kim)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{m} {path}: {v}");
        let (s, _) = n.call(m, &path, b, None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path}");
    }
    let (_, after) = n.get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(
        after,
        w.as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("secret");
                serde_json::Value::Object(o)
            })
            .unwrap()
    );
    let (_, log) = n.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(log, json!({"deliveries": []}));
}

/// A receiver that takes nothing cannot fill the disk: at `max_pending` waiting deliveries
/// the endpoint is disabled, says why, and what waited fails; the writes themselves succeed.
#[tokio::test]
async fn an_endpoint_with_max_pending_waiting_is_disabled_instead_of_queueing_more() {
    let cfg = "[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 3600]\nmax_pending = 2\n";
    let n = TestNode::start_configured("acme", Role::Retailer, cfg).await;
    // Nothing listens on port 1: every attempt fails and waits an hour for its retry.
    let (s, w) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": "http://127.0.0.1:1/h", "events": ["conversation.created"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    // An empty optional field is absent, as everywhere in the API.
    assert!(
        w.get("disabled").is_none() && w.get("failing_since").is_none(),
        "{w}"
    );
    let id = w["id"].as_str().unwrap();
    for i in 0..3 {
        n.create(json!({"kind": "message", "partner": "bolt", "subject": format!("Order {i}")}))
            .await;
    }
    let w = eventually(20, "disabled at max_pending", || async {
        let (_, w) = n.get(&format!("/api/v1/webhooks/{id}")).await;
        (w["disabled"].is_object() && w["pending"] == 0).then_some(w)
    })
    .await;
    assert!(
        w["disabled"]["reason"]
            .as_str()
            .unwrap()
            .contains("max_pending"),
        "{w}"
    );
    let (_, log) = n.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    let d = log["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 2, "the third was never queued: {log}");
    assert!(d.iter().all(|x| x["status"] == "failed"), "{log}");
    assert_eq!(
        common::inbox_ids(&n).await.len(),
        3,
        "every write committed"
    );
}
