//! Slow clients are cut off, over raw TCP against a real node.
//!
//! The story: a client that sent half a request line and stopped, or a body that never
//! finished, held its connection (and the task serving it) open for good; a few thousand such
//! clients would take a node's file descriptors. Now the head must arrive within
//! `header_timeout_secs` (however slowly it trickles), the body within `body_timeout_secs`,
//! and a connection silent both ways is closed after `idle_timeout_secs`.

mod common;

use std::time::{Duration, Instant};

use common::TestNode;
use futures_util::StreamExt;
use parley::domain::Role;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = "header_timeout_secs = 2\nbody_timeout_secs = 2\nidle_timeout_secs = 20\n";

/// Reads until the server closes the connection; returns what it sent and when it closed.
async fn until_closed(mut r: tokio::net::tcp::OwnedReadHalf, bound: Duration) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the connection is still open after {bound:?}; got {:?}",
            String::from_utf8_lossy(&got)
        )
    });
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_line_is_closed_within_the_header_timeout() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let (r, mut w) = TcpStream::connect(n.addr()).await.unwrap().into_split();
    let start = Instant::now();
    w.write_all(b"GET /healthz HT").await.unwrap();
    let (got, at) = until_closed(r, Duration::from_secs(15)).await;
    assert!(got.is_empty() || !got.contains("200 OK"), "{got}");
    assert!(
        at - start >= Duration::from_millis(1500),
        "closed too early"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_a_byte_at_a_time_is_closed_too() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let (r, mut w) = TcpStream::connect(n.addr()).await.unwrap().into_split();
    let start = Instant::now();
    // Never silent for long (the idle timeout alone would not catch it), never done.
    let closed = tokio::spawn(until_closed(r, Duration::from_secs(15)));
    w.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = async {
        loop {
            if w.write_all(b"X-Pad: slow\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    tokio::select! {
        _ = trickle => {}
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("still writing after 15 s"),
    }
    let (got, at) = closed.await.unwrap();
    assert!(!got.contains("200 OK"), "{got}");
    assert!(
        at - start < Duration::from_secs(10),
        "took {:?}",
        at - start
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_halfway_is_closed_within_the_body_timeout() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let (r, mut w) = TcpStream::connect(n.addr()).await.unwrap().into_split();
    let head = format!(
        "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"kind\": \"mess",
        n.token
    );
    let start = Instant::now();
    w.write_all(head.as_bytes()).await.unwrap();
    let (got, at) = until_closed(r, Duration::from_secs(15)).await;
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 4"),
        "a half-sent body must not be taken: {got}"
    );
    assert!(
        at - start >= Duration::from_millis(1500),
        "closed too early"
    );
    // Nothing was stored.
    let (_, list) = n.get("/api/v1/conversations").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_trickled_a_byte_at_a_time_is_cut_off_too() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let (r, mut w) = TcpStream::connect(n.addr()).await.unwrap().into_split();
    let head = format!(
        "POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        n.token
    );
    let start = Instant::now();
    let closed = tokio::spawn(until_closed(r, Duration::from_secs(15)));
    w.write_all(head.as_bytes()).await.unwrap();
    let trickle = async {
        while w.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = trickle => {}
        _ = tokio::time::sleep(Duration::from_secs(15)) => panic!("still writing after 15 s"),
    }
    let (got, at) = closed.await.unwrap();
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 4"), "{got}");
    assert!(
        at - start < Duration::from_secs(10),
        "took {:?}",
        at - start
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let (mut r, mut w) = TcpStream::connect(n.addr()).await.unwrap().into_split();
    // Two requests on one connection: it is kept alive, and the head timer is not running
    // between requests (the second comes later than the header timeout would allow).
    let mut buf = [0u8; 4096];
    for pause in [0, 3] {
        tokio::time::sleep(Duration::from_secs(pause)).await;
        w.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let k = r.read(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf[..k]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    let idle_from = Instant::now();
    let (_, at) = until_closed(r, Duration::from_secs(60)).await;
    let idle = at - idle_from;
    assert!(
        idle >= Duration::from_secs(15),
        "closed after {idle:?}, before the idle timeout"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_stream_outlives_the_idle_timeout() {
    let n = TestNode::start_configured("acme", Role::Retailer, CONFIG).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", n.base))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    // Longer than the idle timeout: the stream's keep-alives hold the connection open.
    let quiet = tokio::time::timeout(Duration::from_secs(25), async {
        loop {
            if stream.next().await.is_none() {
                return;
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "the stream ended while quiet");
    let c = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Still live"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !seen.contains(&id) {
            let chunk = stream.next().await.unwrap().unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event after the quiet spell; got {seen:?}"));
    n.stop().await;
}
