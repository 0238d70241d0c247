//! Webhooks through real nodes and a real receiver that checks every signature with the
//! independent `standardwebhooks` library: signing, order per conversation, retries,
//! redirects, disabling, rotation, the test event and the delivery log.

mod common;

use common::receiver::Receiver;
use common::{TestNode, eventually, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Loopback receivers (everything here runs on 127.0.0.1), a short schedule: after a failed
/// attempt, one at once, then two a second apart; a two-second time limit.
const FAST: &str =
    "[webhooks]\nallow = [\"loopback\", \"private\"]\nretry_secs = [0, 1, 1]\ntimeout_secs = 2\n";

/// Adds an endpoint for `events` and tells the receiver its secret; answers the endpoint.
async fn hook(n: &TestNode, r: &Receiver, path: &str, events: &[&str]) -> Value {
    let (s, v) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": r.url(path), "events": events}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    r.add_secret(v["secret"].as_str().unwrap());
    v
}

async fn deliveries(n: &TestNode, id: &str) -> Vec<Value> {
    let (s, v) = n.get(&format!("/api/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

/// Waits until the receiver has at least `k` requests; answers them all.
async fn received(r: &Receiver, k: usize, what: &str) -> Vec<Value> {
    eventually(30, what, || async {
        let all = r.requests();
        (all.len() >= k).then_some(all)
    })
    .await
}

async fn reply(n: &TestNode, conv: &str, body: &str) {
    let (s, v) = n
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"body": body}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[tokio::test]
async fn deliveries_are_signed_in_order_and_retried_after_500s_with_the_same_id() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let acme = TestNode::start_configured("acme", Role::Retailer, FAST).await;
    // The first delivery fails twice: what is queued behind it for the same conversation waits.
    let r = Receiver::start(&py, "500,500");
    let ep = hook(
        &acme,
        &r,
        "/erp",
        &["conversation.created", "message.created"],
    )
    .await;
    assert!(ep["secret"].as_str().unwrap().starts_with("whsec_"));
    assert_eq!(ep["pending"], 0);
    assert!(ep["disabled"].is_null());
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Late order", "body": "Where is PO-1?"}))
        .await;
    let id = c["id"].as_str().unwrap();
    for i in 1..=3 {
        reply(&acme, id, &format!("reply {i}")).await;
    }
    let got = received(
        &r,
        6,
        "three attempts of the first delivery and three replies",
    )
    .await;
    for g in &got {
        assert_eq!(g["verified"], json!([0]), "signature must verify: {g}");
        assert_eq!(g["path"], "/erp");
        assert_eq!(g["headers"]["content-type"], "application/json");
        assert!(
            g["headers"]["user-agent"]
                .as_str()
                .unwrap()
                .starts_with("Parley/"),
            "{g}"
        );
        assert!(
            g["headers"]["webhook-id"]
                .as_str()
                .unwrap()
                .starts_with("msg_")
        );
    }
    let body = |g: &Value| serde_json::from_str::<Value>(g["body"].as_str().unwrap()).unwrap();
    // The first delivery three times: the same id and body, a fresh timestamp each attempt.
    let first = &got[..3];
    assert!(
        first
            .iter()
            .all(|g| g["headers"]["webhook-id"] == got[0]["headers"]["webhook-id"])
    );
    assert!(first.iter().all(|g| g["body"] == got[0]["body"]));
    let ts = |g: &Value| {
        g["headers"]["webhook-timestamp"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    assert!(ts(&got[2]) > ts(&got[0]), "retries carry fresh timestamps");
    assert_eq!(body(&got[0])["type"], "conversation.created");
    assert_eq!(body(&got[0])["data"]["conversation_id"], id);
    assert_eq!(body(&got[0])["data"]["partner"], "bolt");
    // Then the replies, in the order written.
    let texts: Vec<Value> = got[3..6]
        .iter()
        .map(|g| body(g)["data"]["message"]["body"].clone())
        .collect();
    assert_eq!(
        texts,
        vec![json!("reply 1"), json!("reply 2"), json!("reply 3")]
    );
    assert!(
        got[3..6]
            .iter()
            .all(|g| body(g)["type"] == "message.created")
    );
    let ids: std::collections::HashSet<_> = got[2..6]
        .iter()
        .map(|g| g["headers"]["webhook-id"].clone())
        .collect();
    assert_eq!(ids.len(), 4, "each delivery has an id of its own");

    // The log: newest first; the first delivery took three attempts, ended with 200.
    let epid = ep["id"].as_str().unwrap();
    let log = eventually(10, "all delivered in the log", || async {
        let d = deliveries(&acme, epid).await;
        (d.len() == 4 && d.iter().all(|x| x["status"] == "delivered")).then_some(d)
    })
    .await;
    let oldest = &log[3];
    assert_eq!(oldest["event_type"], "conversation.created");
    assert_eq!(oldest["attempts"], 3);
    assert_eq!(oldest["last_status_code"], 200);
    assert_eq!(oldest["msg_id"], got[0]["headers"]["webhook-id"]);
    assert_eq!(oldest["conversation_id"], id);
    assert!(oldest["next_attempt_at"].is_null());
    assert_eq!(log[0]["attempts"], 1);
    let (_, w) = acme.get(&format!("/api/v1/webhooks/{epid}")).await;
    assert_eq!(
        (w["pending"].clone(), w["failing_since"].clone()),
        (json!(0), Value::Null)
    );
    assert!(
        w.get("secret").is_none() && !w.to_string().contains("whsec_"),
        "{w}"
    );
}

#[tokio::test]
async fn a_timeout_is_retried_and_a_redirect_is_a_failure_not_followed() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    // A time limit with room for a busy machine to answer the retry's 200 within it.
    let cfg = "[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 1, 1, 1]\ntimeout_secs = 3\n";
    let acme = TestNode::start_configured("acme", Role::Retailer, cfg).await;
    let slow = Receiver::start(&py, "sleep=7");
    let ep = hook(&acme, &slow, "/slow", &["message.created"]).await;
    let epid = ep["id"].as_str().unwrap();
    let (s, t) = acme
        .post(&format!("/api/v1/webhooks/{epid}/test"), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{t}");
    let msg = t["msg_id"].as_str().unwrap();
    let got = received(&slow, 2, "the test event again after a timeout").await;
    assert!(
        got.iter()
            .all(|g| g["headers"]["webhook-id"] == msg && g["verified"] == json!([0]))
    );
    let body: Value = serde_json::from_str(got[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "webhook.test");
    let d = eventually(30, "the test event delivered", || async {
        let d = deliveries(&acme, epid).await;
        (d.first()?["status"] == "delivered").then_some(d)
    })
    .await;
    // One timed out at least; under load a later one may too, but the last got its 200.
    assert!(d[0]["attempts"].as_u64().unwrap() >= 2, "{}", d[0]);
    assert_eq!(d[0]["last_status_code"], 200);
    assert_eq!(d[0]["event_type"], "webhook.test");
    assert!(d[0]["conversation_id"].is_null());

    // A 301 is a failure every time; its Location is never asked. (A time limit no answer
    // comes near, so every attempt ends with the 301.)
    let cfg = "[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 1, 1]\ntimeout_secs = 10\n";
    let acme = TestNode::start_configured("acme", Role::Retailer, cfg).await;
    let moved = Receiver::start(&py, "301,301,301,301,301");
    let ep = hook(&acme, &moved, "/moved", &["message.created"]).await;
    let epid = ep["id"].as_str().unwrap();
    acme.post(&format!("/api/v1/webhooks/{epid}/test"), json!({}))
        .await;
    let d = eventually(20, "retries used up", || async {
        let d = deliveries(&acme, epid).await;
        (d.first()?["status"] == "failed").then_some(d)
    })
    .await;
    assert_eq!(
        d[0]["attempts"], 4,
        "the first attempt and one per entry of retry_secs"
    );
    assert_eq!(d[0]["last_status_code"], 301);
    assert!(
        d[0]["last_error"].as_str().unwrap().contains("redirect"),
        "{}",
        d[0]
    );
    let got = moved.requests();
    assert_eq!(got.len(), 4, "exactly the scheduled attempts");
    assert!(got.iter().all(|g| g["path"] == "/moved"));
    // Failing, but not for long enough to be disabled.
    let (_, w) = acme.get(&format!("/api/v1/webhooks/{epid}")).await;
    assert!(
        w["disabled"].is_null() && w["failing_since"].is_string(),
        "{w}"
    );
}

#[tokio::test]
async fn gone_and_failing_too_long_disable_the_endpoint_with_a_reason() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let cfg = "[webhooks]\nallow = [\"loopback\"]\nretry_secs = [0, 1, 1, 1, 1, 1, 1, 1]\ndisable_after_secs = 2\ntimeout_secs = 2\n";
    let acme = TestNode::start_configured("acme", Role::Retailer, cfg).await;
    let gone = Receiver::start(&py, "410");
    let ep = hook(&acme, &gone, "/gone", &["conversation.created"]).await;
    let epid = ep["id"].as_str().unwrap().to_string();
    acme.create(json!({"kind": "message", "partner": "bolt", "subject": "One"}))
        .await;
    let w = eventually(15, "disabled after 410", || async {
        let (_, w) = acme.get(&format!("/api/v1/webhooks/{epid}")).await;
        w["disabled"].is_object().then_some(w)
    })
    .await;
    assert!(
        w["disabled"]["reason"].as_str().unwrap().contains("410"),
        "{w}"
    );
    let d = deliveries(&acme, &epid).await;
    assert_eq!(
        (d[0]["status"].clone(), d[0]["last_status_code"].clone()),
        (json!("failed"), json!(410))
    );
    // Disabled: nothing more is queued or sent, and a test event is refused.
    acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Two"}))
        .await;
    let (s, _) = acme
        .post(&format!("/api/v1/webhooks/{epid}/test"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(deliveries(&acme, &epid).await.len(), 1);
    // Enabled again: deliveries flow (the receiver now answers 200).
    let (s, w) = acme
        .post(&format!("/api/v1/webhooks/{epid}/enable"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        w["disabled"].is_null() && w["failing_since"].is_null(),
        "{w}"
    );
    acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Three"}))
        .await;
    received(&gone, 2, "a delivery after enabling").await;

    // A receiver that keeps failing is disabled once it has failed for longer than allowed,
    // and what waited for it fails too.
    let dead = Receiver::start(&py, &["500"; 40].join(","));
    let ep = hook(&acme, &dead, "/dead", &["conversation.created"]).await;
    let epid = ep["id"].as_str().unwrap().to_string();
    acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Four"}))
        .await;
    let w = eventually(30, "disabled after failing", || async {
        let (_, w) = acme.get(&format!("/api/v1/webhooks/{epid}")).await;
        w["disabled"].is_object().then_some(w)
    })
    .await;
    let why = w["disabled"]["reason"].as_str().unwrap();
    assert!(
        why.starts_with("failing since") && why.contains("500"),
        "{why}"
    );
    assert_eq!(w["pending"], 0);
    let (_, list) = acme.get("/api/v1/webhooks").await;
    let listed = list["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == epid.as_str())
        .unwrap()
        .clone();
    assert_eq!(listed["disabled"], w["disabled"]);
    assert!(
        deliveries(&acme, &epid)
            .await
            .iter()
            .all(|x| x["status"] == "failed")
    );
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let acme = TestNode::start_configured("acme", Role::Retailer, FAST).await;
    let r = Receiver::start(&py, "");
    let ep = hook(&acme, &r, "/rot", &["message.created"]).await;
    let epid = ep["id"].as_str().unwrap();
    let (s, rot) = acme
        .post(&format!("/api/v1/webhooks/{epid}/rotate"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{rot}");
    let new = rot["secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != ep["secret"].as_str().unwrap());
    assert!(rot["previous_expires_at"].is_string(), "{rot}");
    r.add_secret(new);
    acme.post(&format!("/api/v1/webhooks/{epid}/test"), json!({}))
        .await;
    let got = received(&r, 1, "the test event after rotating").await;
    // The old secret still verifies, and so does the new one: two signatures.
    assert_eq!(got[0]["verified"], json!([0, 1]), "{}", got[0]);
    let sigs = got[0]["headers"]["webhook-signature"].as_str().unwrap();
    assert_eq!(sigs.split(' ').count(), 2, "{sigs}");
    assert!(sigs.split(' ').all(|s| s.starts_with("v1,")));
}

#[tokio::test]
async fn a_partners_reply_by_sync_and_a_colleagues_reply_are_delivered() {
    let Some(py) = common::py::notify_python() else {
        return;
    };
    let acme = TestNode::start_configured("acme", Role::Retailer, FAST).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let r = Receiver::start(&py, "");
    hook(&acme, &r, "/sync", &["message.created"]).await;
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Stock?", "body": "How many left?"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(15, "the conversation at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    reply(&bolt, &id, "Forty").await;
    let got = received(&r, 1, "bolt's reply, by sync").await;
    let b: Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(b["type"], "message.created");
    assert_eq!(b["data"]["by"]["org"], "bolt");
    assert_eq!(b["data"]["message"]["body"], "Forty");
    assert_eq!(got[0]["verified"], json!([0]));

    // A colleague (not an admin) replies at acme.
    let (s, _) = acme
        .post(
            "/api/v1/users",
            json!({"name": "kim", "password": "pallet-jack-9", "admin": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, t) = acme
        .post("/api/v1/tokens", json!({"name": "kim-t", "user": "kim"}))
        .await;
    let kim = t["token"].as_str().unwrap();
    let (s, _) = acme
        .call(
            "POST",
            &format!("/api/v1/conversations/{id}/messages"),
            Some(json!({"body": "Thanks"})),
            Some(kim),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let got = received(&r, 2, "kim's reply").await;
    let b: Value = serde_json::from_str(got[1]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            b["data"]["by"]["org"].clone(),
            b["data"]["by"]["user"].clone()
        ),
        (json!("acme"), json!("kim"))
    );
    assert_eq!(b["data"]["message"]["body"], "Thanks");
    bolt.stop().await;
}
