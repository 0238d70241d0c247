//! `GET /metrics` on real nodes: a scrape after requests, a pairing, a sync and a refused
//! change passes `promtool check metrics` and counts what happened; only admins may read it;
//! a flood of random paths and methods adds no series; the separate listener serves
//! `/metrics` and nothing else.

mod common;

use common::scrape::{OPENMETRICS, promtool_check, scrape, scrape_url, series, value};
use common::{TestNode, eventually, pair};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn conversation(n: &TestNode, id: &str) -> Option<Value> {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    (s == StatusCode::OK).then_some(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_a_sync_passes_promtool_and_counts_what_happened() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;
    let c = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Thin description", "body": "Add detail"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(10, "the task at bolt", || conversation(&bolt, &id)).await;
    let (_, peers) = acme.get("/api/v1/peers").await;
    let bolt_id = peers[0]["node_id"].as_str().unwrap().to_string();
    let peer = |name: &str| format!("{name}{{peer=\"{bolt_id}\"}}");

    // bolt's node is tampered with: it rewrites acme's message and pushes the change. acme
    // refuses it, and counts the refusal against bolt.
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    let (seq, _) = bolt
        .svc()
        .store()
        .write(move |ctx| -> Result<_, parley::store::StoreError> {
            use automerge::{ROOT, ReadDoc, transaction::Transactable};
            let d = ctx.doc_mut(uuid.as_u128())?.unwrap();
            let (_, msgs) = d.get(ROOT, "messages").unwrap().unwrap();
            let first = d.keys(&msgs).next().unwrap();
            let (_, m) = d.get(&msgs, first.as_str()).unwrap().unwrap();
            d.put(&m, "body", "acme never wrote this").unwrap();
            ctx.save_doc(uuid.as_u128())?;
            parley::store::index::reindex_doc(ctx, uuid, None, None, chrono::Utc::now())
        })
        .await
        .map(|(_, seq)| (seq, ()))
        .unwrap();
    bolt.svc().notify(uuid, seq);
    let rejected = format!("parley_sync_rejected_changes_total{{peer=\"{bolt_id}\"}}");
    eventually(10, "the refusal counted", || async {
        value(&scrape(&acme).await, &rejected).filter(|n| *n >= 1.0)
    })
    .await;
    let at_acme = conversation(&acme, &id).await.unwrap();
    assert_eq!(at_acme["messages"][0]["body"], "Add detail");

    // The peer series: linked, synced lately, bytes both ways, and the same pending count
    // as the peers endpoint.
    let body = eventually(10, "bolt's last sync reported", || async {
        let b = scrape(&acme).await;
        value(&b, &peer("parley_peer_last_sync_timestamp_seconds")).map(|_| b)
    })
    .await;
    assert_eq!(
        value(&body, &peer("parley_peer_connected")),
        Some(1.0),
        "{body}"
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let last = value(&body, &peer("parley_peer_last_sync_timestamp_seconds")).unwrap();
    assert!(last > now - 600.0 && last <= now + 5.0, "{last} vs {now}");
    for dir in ["sent", "received"] {
        let s = format!("parley_sync_bytes_total{{peer=\"{bolt_id}\",direction=\"{dir}\"}}");
        assert!(value(&body, &s).unwrap() > 0.0, "{s} in {body}");
    }
    eventually(10, "pending as the peers endpoint says", || async {
        let (_, peers) = acme.get("/api/v1/peers").await;
        let listed = peers[0]["pending"].as_f64();
        let b = scrape(&acme).await;
        (listed.is_some() && value(&b, &peer("parley_peer_pending_changes")) == listed)
            .then_some(())
    })
    .await;

    // Requests are counted exactly, by operation id, method and status.
    let list =
        "parley_http_requests_total{operation=\"listConversations\",method=\"GET\",status=\"200\"}";
    let missing =
        "parley_http_requests_total{operation=\"getConversation\",method=\"GET\",status=\"404\"}";
    let before = scrape(&acme).await;
    for _ in 0..3 {
        let (s, _) = acme.get("/api/v1/conversations").await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, _) = acme
        .get(&format!("/api/v1/conversations/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let after = scrape(&acme).await;
    let grew = |s: &str| value(&after, s).unwrap_or(0.0) - value(&before, s).unwrap_or(0.0);
    assert_eq!(grew(list), 3.0, "{after}");
    assert_eq!(grew(missing), 1.0, "{after}");
    assert!(
        value(
            &after,
            "parley_http_request_duration_seconds_count{operation=\"listConversations\"}"
        )
        .unwrap()
            >= 3.0
    );

    // The rest, with plausible values.
    let version = format!(
        "parley_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value(&after, &version), Some(1.0));
    assert!(value(&after, "parley_store_commit_duration_seconds_count").unwrap() >= 1.0);
    assert!(value(&after, "parley_store_commit_batch_jobs_count").unwrap() >= 1.0);
    assert!(value(&after, "parley_store_documents_cached").unwrap() >= 1.0);
    assert!(value(&after, "parley_store_file_bytes").unwrap() > 0.0);
    assert_eq!(value(&after, "parley_store_writer_queue_depth"), Some(0.0));
    assert_eq!(
        value(&after, "parley_conversations{kind=\"task\",state=\"open\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            &after,
            "parley_conversations{kind=\"message\",state=\"resolved\"}"
        ),
        Some(0.0)
    );
    assert_eq!(value(&after, "parley_tasks_overdue"), Some(0.0));
    assert_eq!(
        value(&after, "parley_outbox_pending{channel=\"email\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(&after, "parley_outbox_pending{channel=\"webhook\"}"),
        Some(0.0)
    );
    assert_eq!(
        value(
            &after,
            "parley_notification_delivery_failures_total{channel=\"webhook\"}"
        ),
        Some(0.0)
    );
    if cfg!(target_os = "linux") {
        assert!(value(&after, "process_resident_memory_bytes").unwrap() > 1e6);
    }
    for s in series(&after) {
        assert!(!s.contains(&id), "a conversation id became a label: {s}");
    }

    // The same scrape in the Prometheus text format passes promtool's lint.
    let text = scrape_url(
        &format!("{}/metrics", acme.base),
        Some(&format!("Bearer {}", acme.token)),
        None,
        Some("text/plain;version=0.0.4"),
    )
    .await;
    assert_eq!(text.status, StatusCode::OK);
    assert!(
        text.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        text.content_type
    );
    assert!(text.body.contains(&rejected));
    promtool_check(&text.body);

    // Once bolt is unpaired its series go.
    let (s, _) = acme
        .call(
            "DELETE",
            &format!("/api/v1/peers/{bolt_id}"),
            None,
            Some(&acme.token.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let gone = scrape(&acme).await;
    assert!(!gone.contains(&bolt_id), "{gone}");
    bolt.stop().await;
    acme.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_reads_the_metrics() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let url = format!("{}/metrics", n.base);
    let (s, _) = n
        .post(
            "/api/v1/users",
            json!({"name": "bea", "password": "bea-password", "admin": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, t) = n
        .post(
            "/api/v1/tokens",
            json!({"name": "bea-laptop", "user": "bea"}),
        )
        .await;
    let bea = format!("Bearer {}", t["token"].as_str().unwrap());

    for (auth, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (
            Some("Bearer pt_not-a-token".to_string()),
            StatusCode::UNAUTHORIZED,
        ),
        (Some(format!("Basic {}", n.token)), StatusCode::UNAUTHORIZED),
        (Some(bea.clone()), StatusCode::FORBIDDEN),
    ] {
        let s = scrape_url(&url, auth.as_deref(), None, None).await;
        assert_eq!(s.status, want, "{auth:?}: {}", s.body);
        assert!(!s.body.contains("parley_"), "{}", s.body);
        let err: Value = serde_json::from_str(&s.body).unwrap();
        common::assert_error(
            &err,
            if want == StatusCode::FORBIDDEN {
                "forbidden"
            } else {
                "unauthorized"
            },
        );
    }
    // An admin's browser session reads it without a token.
    let cookie = n.session_cookie().await;
    let s = scrape_url(&url, None, Some(&cookie), None).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert!(s.body.contains("parley_build_info"));
    // Reading is all it does.
    let (s, _) = n
        .call("POST", "/metrics", None, Some(&n.token.clone()))
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_random_paths_and_methods_adds_no_series() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let http = reqwest::Client::new();
    let flood = |round: u32| {
        let (http, base) = (http.clone(), n.base.clone());
        async move {
            for i in 0..60u32 {
                let r = uuid::Uuid::new_v4().simple().to_string();
                let (method, path) = match i % 6 {
                    0 => ("GET", format!("/{r}")),
                    1 => ("GET", format!("/api/v1/{r}")),
                    2 => (
                        "GET",
                        format!("/api/v1/conversations/{}", uuid::Uuid::new_v4()),
                    ),
                    3 => ("DELETE", format!("/api/{r}/{round}")),
                    4 => ("BREW", format!("/{r}.php")),
                    _ => ("GET", format!("/assets/{r}.js")),
                };
                let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
                http.request(m, format!("{base}{path}"))
                    .send()
                    .await
                    .unwrap();
            }
        }
    };
    // The first round (and a first scrape) makes every series these requests can make; later
    // rounds add none.
    flood(0).await;
    scrape(&n).await;
    let first = series(&scrape(&n).await);
    for round in 1..4 {
        flood(round).await;
    }
    let later = series(&scrape(&n).await);
    assert_eq!(first, later);
    let operations: std::collections::BTreeSet<&str> = later
        .iter()
        .filter_map(|s| s.split("operation=\"").nth(1)?.split('"').next())
        .collect();
    assert!(operations.len() <= 8, "{operations:?}");
    assert!(operations.contains("unmatched"), "{operations:?}");
    assert!(
        later.iter().any(|s| s.contains("method=\"other\"")),
        "{later:?}"
    );
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_separate_listener_serves_only_metrics_and_is_off_by_default() {
    let plain = TestNode::start("acme", Role::Retailer).await;
    assert_eq!(plain.metrics_addr, None);
    plain.stop().await;

    let n = TestNode::start_configured(
        "acme",
        Role::Retailer,
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
    )
    .await;
    let addr = n.metrics_addr.expect("the metrics listener");
    assert_ne!(addr, n.addr());
    let s = scrape_url(&format!("http://{addr}/metrics"), None, None, None).await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.body);
    assert_eq!(s.content_type, OPENMETRICS);
    assert!(s.body.contains("parley_build_info"));
    // Nothing else: not the API (even with a token), the UI or the health check.
    for path in [
        "/api/v1/conversations",
        "/api/v1/peers",
        "/",
        "/healthz",
        "/api/openapi.json",
    ] {
        let s = scrape_url(
            &format!("http://{addr}{path}"),
            Some(&format!("Bearer {}", n.token)),
            None,
            None,
        )
        .await;
        assert_eq!(s.status, StatusCode::NOT_FOUND, "{path}: {}", s.body);
        assert!(!s.body.contains("parley_"));
    }
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    // The main listener still wants a token.
    let s = scrape_url(&format!("{}/metrics", n.base), None, None, None).await;
    assert_eq!(s.status, StatusCode::UNAUTHORIZED);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_webhook_attempts_and_the_waiting_delivery_are_counted() {
    let n = TestNode::start_configured(
        "acme",
        Role::Retailer,
        "[webhooks]\nallow = [\"loopback\"]\ntimeout_secs = 2\n",
    )
    .await;
    // A port nothing listens on: every attempt fails, and the delivery waits for its retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (s, v) = n
        .post(
            "/api/v1/webhooks",
            json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["message.created"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let before = scrape(&n).await;
    let failures = "parley_notification_delivery_failures_total{channel=\"webhook\"}";
    let pending = "parley_outbox_pending{channel=\"webhook\"}";
    assert_eq!(value(&before, failures), Some(0.0));
    assert_eq!(value(&before, pending), Some(0.0));
    let id = v["id"].as_str().unwrap();
    let (s, _) = n
        .post(&format!("/api/v1/webhooks/{id}/test"), json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    eventually(
        20,
        "a failed attempt counted while its delivery waits",
        || async {
            let b = scrape(&n).await;
            (value(&b, failures).unwrap_or(0.0) >= 1.0 && value(&b, pending) == Some(1.0))
                .then_some(())
        },
    )
    .await;
    let b = scrape(&n).await;
    assert_eq!(
        value(&b, "parley_notifications_sent_total{channel=\"webhook\"}"),
        Some(0.0)
    );
    n.stop().await;
}
