//! Every bad request gets a clear 4xx JSON error and changes nothing: the inbox, the changes
//! feed and the conversation stay exactly as they were.

mod common;

use common::{TestNode, assert_error};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn snapshot(n: &TestNode, id: &str) -> (Value, Value, Value) {
    let (_, inbox) = n.get("/api/v1/conversations?limit=200").await;
    let (_, feed) = n.get("/api/v1/changes?since=0&limit=1000").await;
    let (_, conv) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (inbox, feed, conv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_change_nothing() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let msg = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "A message", "body": "hi"}))
        .await;
    let id = msg["id"].as_str().unwrap().to_string();
    let before = snapshot(&n, &id).await;
    let conv = |suffix: &str| format!("/api/v1/conversations/{id}{suffix}");
    let create = "/api/v1/conversations";
    let long = |n: usize| "x".repeat(n);

    let cases: Vec<(&str, String, Option<Value>, StatusCode, &str)> = vec![
        (
            "POST",
            create.into(),
            Some(json!({"partner": "bolt", "subject": "no kind"})),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "bolt"})),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "bolt", "subject": "   "})),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "bolt", "subject": long(201)})),
            StatusCode::BAD_REQUEST,
            "200",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "memo", "partner": "bolt", "subject": "s"})),
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "s", "reference_id": long(101)}),
            ),
            StatusCode::BAD_REQUEST,
            "reference_id",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "s", "body": long(64 * 1024 + 1)}),
            ),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "s", "due_date": "2026-01-01"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "task",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "task", "partner": "bolt", "subject": "s", "due_date": "next friday"}),
            ),
            StatusCode::BAD_REQUEST,
            "date",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "nobody", "subject": "s"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "partner",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "zeta", "subject": "s"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "retailer",
        ),
        (
            "POST",
            create.into(),
            Some(json!({"kind": "message", "partner": "Not An Org", "subject": "s"})),
            StatusCode::BAD_REQUEST,
            "org id",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "s", "topic": {"kind": "planet", "ref": "x"}}),
            ),
            StatusCode::BAD_REQUEST,
            "topic",
        ),
        (
            "POST",
            create.into(),
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "s", "topic": {"kind": "item", "ref": ""}}),
            ),
            StatusCode::BAD_REQUEST,
            "topic.ref",
        ),
        (
            "POST",
            conv("/messages"),
            Some(json!({"body": ""})),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "POST",
            conv("/messages"),
            Some(json!({})),
            StatusCode::BAD_REQUEST,
            "body",
        ),
        (
            "PATCH",
            conv(""),
            Some(json!({"due_date": "2026-01-01"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "task",
        ),
        (
            "PATCH",
            conv(""),
            Some(json!({"subject": ""})),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            "PATCH",
            conv(""),
            Some(json!({"reference_id": long(101)})),
            StatusCode::BAD_REQUEST,
            "reference_id",
        ),
        (
            "PUT",
            conv("/progress"),
            Some(json!({"progress": "completed"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "task",
        ),
        (
            "PUT",
            conv("/progress"),
            Some(json!({"progress": "done"})),
            StatusCode::BAD_REQUEST,
            "progress",
        ),
        (
            "GET",
            "/api/v1/conversations/not-a-uuid".into(),
            None,
            StatusCode::BAD_REQUEST,
            "id",
        ),
        (
            "GET",
            format!("/api/v1/conversations/{}", uuid::Uuid::now_v7()),
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "POST",
            format!("/api/v1/conversations/{}/messages", uuid::Uuid::now_v7()),
            Some(json!({"body": "x"})),
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "POST",
            format!("/api/v1/conversations/{}/read", uuid::Uuid::now_v7()),
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
        (
            "GET",
            "/api/v1/conversations?cursor=garbage".into(),
            None,
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            "GET",
            "/api/v1/conversations?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "GET",
            "/api/v1/conversations?limit=100000".into(),
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "GET",
            "/api/v1/conversations?kind=memo".into(),
            None,
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            "GET",
            "/api/v1/conversations?overdue=maybe".into(),
            None,
            StatusCode::BAD_REQUEST,
            "overdue",
        ),
        (
            "GET",
            "/api/v1/changes?since=-1".into(),
            None,
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            "POST",
            "/api/v1/partners".into(),
            Some(json!({"id": "acme", "name": "Me", "role": "supplier"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "own org",
        ),
        (
            "POST",
            "/api/v1/partners".into(),
            Some(json!({"id": "bolt", "name": "Other name", "role": "retailer"})),
            StatusCode::CONFLICT,
            "already",
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"name": "x y", "password": "longenough"})),
            StatusCode::BAD_REQUEST,
            "name",
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"name": "shorty", "password": "short"})),
            StatusCode::BAD_REQUEST,
            "password",
        ),
        (
            "POST",
            "/api/v1/users".into(),
            Some(json!({"name": "admin", "password": "longenough"})),
            StatusCode::CONFLICT,
            "exists",
        ),
        (
            "POST",
            "/api/v1/tokens".into(),
            Some(json!({"name": "t2", "user": "ghost"})),
            StatusCode::NOT_FOUND,
            "ghost",
        ),
        (
            "DELETE",
            format!("/api/v1/tokens/{}", uuid::Uuid::now_v7()),
            None,
            StatusCode::NOT_FOUND,
            "not found",
        ),
    ];
    for (method, path, body, status, hint) in cases {
        let (s, v) = n
            .call(method, &path, body.clone(), Some(&n.token.clone()))
            .await;
        assert_eq!(s, status, "{method} {path} {body:?} -> {v}");
        assert_error(&v, hint);
    }

    // Bodies that are not JSON at all, and bodies over the size limit.
    let (s, v) = n.post_raw(create, b"{not json".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "parse");
    // An oversized body is refused by its declared length, before a byte of it is read;
    // the answer closes the connection, so no client reuses one with unread bytes on it.
    // Raw TCP: a client still writing the body when the server closes may see the close
    // before the answer, which is a property of HTTP/1.1, not of Parley.
    let head = oversized_head(&n, create).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    assert!(head.contains("1 MiB"), "{head}");
    let (s, v) = n.post_raw(&conv("/messages"), b"[1,2,3]".to_vec()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "bad_request");
    // A body streamed without a length is cut off at the limit and refused. The client
    // sends a little more than the limit and then stalls, so the answer cannot race the
    // client's own writes; it must come while the body is still "open".
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..17).map(|_| Ok(vec![b' '; 64 * 1024])).collect();
    let chunks = futures_util::StreamExt::chain(
        futures_util::stream::iter(chunks),
        futures_util::stream::pending(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{}{create}", n.base))
        .bearer_auth(&n.token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let after = snapshot(&n, &id).await;
    assert_eq!(before, after, "refused requests changed nothing");
    n.stop().await;
}

/// Sends only the head of a request declaring a 2 MiB body and returns the whole answer.
async fn oversized_head(n: &TestNode, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = n.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        n.token,
        2 * 1024 * 1024
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    // The server closes the connection after answering, so this ends.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("the server closes the connection after a 413")
    .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}
