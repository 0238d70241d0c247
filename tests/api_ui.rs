//! The server side of the web UI, end to end against a real node: browser sessions with CSRF
//! tokens, topic records and their CSV import, search, live events, and the embedded pages.

mod common;

use std::time::{Duration, Instant};

use common::{TestNode, assert_error};
use futures_util::StreamExt;
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A browser-like client: keeps the session cookie and the CSRF token by hand.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(n: &TestNode) -> Self {
        Browser {
            base: n.base.clone(),
            http: reqwest::Client::new(),
            cookie: None,
            csrf: None,
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        csrf: bool,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, format!("{}{}", self.base, path));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if csrf && let Some(t) = &self.csrf {
            req = req.header("x-csrf-token", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn login(&mut self, name: &str, password: &str) -> (StatusCode, Value) {
        let (s, v, h) = self
            .send(
                "POST",
                "/api/v1/session",
                Some(json!({"name": name, "password": password})),
                false,
            )
            .await;
        if s == StatusCode::OK {
            let set = h.get("set-cookie").unwrap().to_str().unwrap().to_string();
            for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
                assert!(set.contains(part), "{set}");
            }
            assert!(
                !set.contains("Secure"),
                "plain http must not mark the cookie Secure: {set}"
            );
            self.cookie = Some(set.split(';').next().unwrap().to_string());
            self.csrf = v["csrf_token"].as_str().map(String::from);
        }
        (s, v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_cookie_csrf_on_changes_and_sign_out() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let mut b = Browser::new(&n);
    let (s, v, _) = b.send("GET", "/api/v1/session", None, false).await;
    assert_eq!((s, &v["signed_in"]), (StatusCode::OK, &json!(false)));

    let (s, wrong_pw) = b.login("admin", "wrong-password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&wrong_pw, "login_failed");
    let (s, wrong_user) = b.login("nobody", "correct-horse").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_pw, wrong_user,
        "the answer must not say which part was wrong"
    );
    let (s, v, _) = b
        .send(
            "POST",
            "/api/v1/session",
            Some(json!({"name": "admin"})),
            false,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_error(&v, "password");

    let (s, v) = b.login("admin", "correct-horse").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["user"], "admin");
    assert_eq!(v["org_id"], "acme");
    let (s, v, _) = b.send("GET", "/api/v1/session", None, false).await;
    assert_eq!(
        (s, &v["session"]["user"]),
        (StatusCode::OK, &json!("admin"))
    );
    assert_eq!(v["session"]["csrf_token"].as_str(), b.csrf.as_deref());

    let (s, v, _) = b.send("GET", "/api/v1/conversations", None, false).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let new = json!({"kind": "message", "partner": "bolt", "subject": "Hello"});
    let (s, v, _) = b
        .send("POST", "/api/v1/conversations", Some(new.clone()), false)
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a change with the cookie and no CSRF token: {v}"
    );
    assert_error(&v, "csrf");
    let (_, v) = n.get("/api/v1/conversations").await;
    assert_eq!(v["total"], 0, "the refused request changed nothing");
    let (s, v, _) = b
        .send("POST", "/api/v1/conversations", Some(new), true)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["created_by"]["user"], "admin");

    let (s, _, h) = b.send("DELETE", "/api/v1/session", None, true).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(
        h.get("set-cookie")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (s, v, _) = b.send("GET", "/api/v1/conversations", None, false).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_records_one_by_one_from_csv_and_from_conversations() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let item =
        json!({"kind": "item", "ref": "SKU-1", "title": "Kettle", "fields": {"status": "active"}});
    let (s, v) = n.post("/api/v1/topics", item.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = n
        .post(
            "/api/v1/topics",
            json!({"kind": "item", "ref": "SKU-1", "title": "Steel kettle"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = n.get("/api/v1/topics/item/SKU-1").await;
    assert_eq!((s, &v["title"]), (StatusCode::OK, &json!("Steel kettle")));
    for (bad, part) in [
        (json!({"kind": "item", "ref": "SKU-2"}), "title"),
        (json!({"kind": "planet", "ref": "X", "title": "Y"}), "kind"),
        (json!({"kind": "item", "ref": " ", "title": "Y"}), "ref"),
    ] {
        let (s, v) = n.post("/api/v1/topics", bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert_error(&v, part);
    }
    let (s, v) = n.get("/api/v1/topics/item/SKU-404").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");

    let http = reqwest::Client::new();
    let import = |body: &'static str| {
        http.post(format!("{}/api/v1/topics/import", n.base))
            .bearer_auth(&n.token)
            .header("content-type", "text/csv")
            .body(body)
            .send()
    };
    let r = import("kind,ref,title,status\norder,PO-1,First order,shipped\norder,PO-2,\"Second, urgent\",open\nitem,SKU-1,Kettle,active\n").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"created": 2, "updated": 1}));

    let r = import("kind,ref,title\norder,PO-3,Fine\nplanet,P-1,Bad kind\norder,,No ref\n")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "invalid_csv");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 3") && detail.contains("line 4") && !detail.contains("line 2"),
        "{detail}"
    );
    let (_, v) = n.get("/api/v1/topics/order/PO-3").await;
    assert_error(&v, "not_found");

    n.create(
        json!({"kind": "task", "partner": "bolt", "subject": "Where is it?",
        "topic": {"kind": "return", "ref": "RMA-9", "label": "Return of 3 kettles"}}),
    )
    .await;
    let (s, v) = n.get("/api/v1/topics?kind=return").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["items"][0]["ref"], "RMA-9");
    assert_eq!(v["items"][0]["title"], "Return of 3 kettles");

    let (_, v) = n.get("/api/v1/topics?kind=order&limit=1").await;
    assert_eq!(v["items"][0]["ref"], "PO-1");
    let (_, v) = n
        .get(&format!(
            "/api/v1/topics?kind=order&limit=1&after={}",
            v["next"].as_str().unwrap()
        ))
        .await;
    assert_eq!(v["items"][0]["ref"], "PO-2");
    assert!(v["next"].is_null());
    let (_, v) = n.get("/api/v1/topics?kind=order&prefix=PO-2").await;
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    // Refs are found in any case, and listed in case-insensitive order across pages.
    let (_, v) = n.get("/api/v1/topics?kind=order&prefix=po-").await;
    let refs: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["PO-1", "PO-2"]);
    let (s, _) = n
        .post(
            "/api/v1/topics",
            json!({"kind": "order", "ref": "po-15", "title": "Lower-case order"}),
        )
        .await;
    assert!(s.is_success());
    let mut seen = vec![];
    let mut after = String::new();
    loop {
        let (_, v) = n
            .get(&format!(
                "/api/v1/topics?kind=order&prefix=Po-1&limit=1&after={after}"
            ))
            .await;
        seen.extend(
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["ref"].as_str().unwrap().to_string()),
        );
        match v["next"].as_str() {
            Some(next) => after = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, ["PO-1", "po-15"]);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_and_action_required() {
    let n = TestNode::start("acme", Role::Retailer).await;
    n.create(
        json!({"kind": "message", "partner": "bolt", "subject": "Kettle description too thin",
        "topic": {"kind": "item", "ref": "SKU-12345"}}),
    )
    .await;
    n.create(
        json!({"kind": "task", "partner": "bolt", "subject": "Late shipment",
        "reference_id": "CASE-77", "due_date": "2020-01-01"}),
    )
    .await;
    n.create(json!({"kind": "message", "partner": "bolt", "subject": "Invoice question"}))
        .await;
    let subjects = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["subject"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, v) = n.get("/api/v1/conversations?kind=task&state=open").await;
    assert_eq!(
        (subjects(&v), &v["total"]),
        (vec!["Late shipment".to_string()], &json!(1))
    );
    let (_, v) = n
        .get("/api/v1/conversations?kind=message&state=open&partner=bolt")
        .await;
    assert_eq!(v["total"], 2);
    let (_, v) = n.get("/api/v1/conversations?q=kett").await;
    assert_eq!(subjects(&v), vec!["Kettle description too thin"]);
    let (_, v) = n.get("/api/v1/conversations?q=SKU-123").await;
    assert_eq!(subjects(&v), vec!["Kettle description too thin"]);
    let (_, v) = n.get("/api/v1/conversations?q=case-77").await;
    assert_eq!(subjects(&v), vec!["Late shipment"]);
    let (_, v) = n.get("/api/v1/conversations?q=late%20ship&kind=task").await;
    assert_eq!(
        (subjects(&v), &v["total"]),
        (vec!["Late shipment".to_string()], &json!(1))
    );
    let (_, v) = n.get("/api/v1/conversations?q=nothing-like-this").await;
    assert_eq!(v["total"], 0);

    let (_, v) = n.get("/api/v1/conversations?action_required=true").await;
    assert_eq!(subjects(&v), vec!["Late shipment"], "overdue needs action");
    let id = v["items"][0]["id"].as_str().unwrap().to_string();
    n.put(
        &format!("/api/v1/conversations/{id}/progress"),
        json!({"progress": "completed"}),
    )
    .await;
    let (_, v) = n.get("/api/v1/conversations?action_required=true").await;
    assert_eq!(v["total"], 0, "a completed task needs no action: {v}");

    // Paging through search results.
    for i in 0..5 {
        n.create(json!({"kind": "message", "partner": "bolt", "subject": format!("Pallet {i}")}))
            .await;
    }
    let (_, p1) = n.get("/api/v1/conversations?q=pallet&limit=3").await;
    assert_eq!(subjects(&p1), vec!["Pallet 4", "Pallet 3", "Pallet 2"]);
    let (_, p2) = n
        .get(&format!(
            "/api/v1/conversations?q=pallet&limit=3&cursor={}",
            p1["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(subjects(&p2), vec!["Pallet 1", "Pallet 0"]);
    assert!(p2["next_cursor"].is_null());
    // Results follow the latest activity: a reply moves a conversation to the top.
    let pallet1 = p2["items"][0]["id"].as_str().unwrap().to_string();
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{pallet1}/messages"),
            json!({"body": "Any news?"}),
        )
        .await;
    assert!(s.is_success());
    let (_, v) = n.get("/api/v1/conversations?q=pallet&limit=2").await;
    assert_eq!(subjects(&v), vec!["Pallet 1", "Pallet 4"]);
    assert_eq!(v["total"], 5);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_arrive_as_server_sent_events() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", n.base))
        .bearer_auth(&n.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let c = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Live"}))
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
    .unwrap_or_else(|_| panic!("no event for {id}; got {seen:?}"));
    assert!(seen.contains("data:"), "{seen}");
    let (s, _) = n.call("GET", "/api/v1/events", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // An open event stream does not hold up a graceful stop.
    let t = Instant::now();
    n.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "stopping took {:?}",
        t.elapsed()
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_are_served_from_the_binary_with_a_strict_policy() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let http = reqwest::Client::new();
    for path in [
        "/",
        "/new?kind=task&topic=item:SKU-1",
        "/c/0190c8a0-0000-7000-8000-000000000000",
        "/topics/item/SKU-1",
    ] {
        let r = http
            .get(format!("{}{}", n.base, path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(csp.contains("default-src 'self'"), "{csp}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        let body = r.text().await.unwrap();
        assert!(
            body.contains("<script type=\"module\" src=\"/app.js\">"),
            "{path}: {body}"
        );
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "nothing loads from elsewhere"
        );
    }
    let r = http.get(format!("{}/app.js", n.base)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let (s, v) = n.get("/api/v2/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_error(&v, "not_found");
    n.stop().await;
}
