//! Revocation cuts what is already open, over real HTTP against real nodes.
//!
//! The story: an event stream opened with a token kept delivering every change on the node
//! for as long as the client held it open, 21 s and more after the token was revoked. Now a
//! revoked token or a signed-out session ends its open streams at once, and a removed peer's
//! sync link is cut.

mod common;

use std::time::Duration;

use common::{TestNode, eventually, pair};
use futures_util::StreamExt;
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How long a stream may take to end after its credential is gone: generous, the end is
/// event-driven and comes in milliseconds.
const BOUND: Duration = Duration::from_secs(10);

type Chunks = futures_util::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>;

async fn open_events(n: &TestNode, auth: (&str, &str)) -> Chunks {
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", n.base))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    resp.bytes_stream().map(|c| c.map(|b| b.to_vec())).boxed()
}

/// Reads until `want` shows up in the stream.
async fn read_until(stream: &mut Chunks, want: &str) {
    let mut seen = String::new();
    tokio::time::timeout(BOUND, async {
        while !seen.contains(want) {
            let chunk = stream.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event for {want}; got {seen:?}"));
}

/// Reads to the end of the stream, which must come within [`BOUND`]; returns what came.
async fn read_to_end(stream: &mut Chunks) -> String {
    let mut rest = String::new();
    tokio::time::timeout(BOUND, async {
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => rest.push_str(&String::from_utf8_lossy(&c)),
                Err(_) => break,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the stream is still open after its credential went; got {rest:?}"));
    rest
}

async fn create(n: &TestNode, subject: &str) -> String {
    n.create(json!({"kind": "message", "partner": "bolt", "subject": subject}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_loses_its_open_event_stream() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let (s, t) = n
        .post(
            "/api/v1/tokens",
            json!({"name": "dashboard", "user": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let secret = t["token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {secret}");
    let mut stream = open_events(&n, ("authorization", &bearer)).await;
    // A stream opened with another token is not touched by this revocation.
    let mut other = open_events(&n, ("authorization", &format!("Bearer {}", n.token))).await;
    let id = create(&n, "Before").await;
    read_until(&mut stream, &id).await;
    read_until(&mut other, &id).await;

    let (s, _) = n
        .call(
            "DELETE",
            &format!("/api/v1/tokens/{}", t["id"].as_str().unwrap()),
            None,
            Some(&n.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let after = create(&n, "After").await;
    let rest = read_to_end(&mut stream).await;
    assert!(
        !rest.contains(&after),
        "an event after revocation: {rest:?}"
    );
    assert!(
        !rest.contains("data:"),
        "an event after revocation: {rest:?}"
    );
    // The other stream lives on and sees the change; the revoked token opens nothing more.
    read_until(&mut other, &after).await;
    let (s, _) = n.call("GET", "/api/v1/events", None, Some(&secret)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    drop(other);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_out_session_loses_its_open_event_stream() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/session", n.base))
        .json(&json!({"name": "admin", "password": "correct-horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let session: Value = resp.json().await.unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    let mut stream = open_events(&n, ("cookie", &cookie)).await;
    let id = create(&n, "Before").await;
    read_until(&mut stream, &id).await;

    let resp = http
        .delete(format!("{}/api/v1/session", n.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let after = create(&n, "After").await;
    let rest = read_to_end(&mut stream).await;
    assert!(!rest.contains(&after), "an event after sign-out: {rest:?}");
    assert!(!rest.contains("data:"), "an event after sign-out: {rest:?}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_peer_loses_its_sync_link_at_once() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let connected = |n: &TestNode| {
        let n = (n.base.clone(), n.token.clone());
        async move {
            let v: Value = reqwest::Client::new()
                .get(format!("{}/api/v1/peers", n.0))
                .bearer_auth(&n.1)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v[0]["connected"].as_bool()
        }
    };
    let bolt_id = eventually(10, "the link up at acme", || async {
        let (_, v) = acme.get("/api/v1/peers").await;
        (v[0]["connected"] == true).then(|| v[0]["node_id"].as_str().unwrap().to_string())
    })
    .await;
    eventually(10, "the link up at bolt", || async {
        (connected(&bolt).await == Some(true)).then_some(())
    })
    .await;
    let (s, _) = acme
        .call(
            "DELETE",
            &format!("/api/v1/peers/{bolt_id}"),
            None,
            Some(&acme.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The link drops at bolt's end too (its key no longer opens one), within the bound.
    eventually(10, "the link cut at bolt", || async {
        (connected(&bolt).await == Some(false)).then_some(())
    })
    .await;
    let (_, peers) = acme.get("/api/v1/peers").await;
    assert_eq!(peers.as_array().unwrap().len(), 0);
    bolt.stop().await;
    acme.stop().await;
}
