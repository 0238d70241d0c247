//! A real node for black-box tests: its own data directory, a real TCP listener on port 0,
//! an admin token, and helpers to call its HTTP API.
#![allow(dead_code)]

use std::sync::Arc;

use parley::config::{Config, Overrides};
use parley::domain::Role;
use parley::service::{Clock, NewToken, Service};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestNode {
    pub base: String,
    pub token: String,
    pub svc: Arc<Service>,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestNode {
    /// A node of `org` with partners `bolt` (supplier) and `acme` (retailer), minus itself.
    pub async fn start(org: &str, role: Role) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::load(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            ..Default::default()
        })
        .unwrap();
        let svc = parley::server::open(&cfg, Clock::System).await.unwrap();
        svc.init_identity(org, &format!("{org} Inc"), role)
            .await
            .unwrap();
        svc.add_user("admin", Some("correct-horse".into()), true)
            .await
            .unwrap();
        let token = svc
            .create_token(NewToken {
                name: "t".into(),
                user: Some("admin".into()),
            })
            .await
            .unwrap()
            .secret;
        for (id, r) in [
            ("bolt", Role::Supplier),
            ("acme", Role::Retailer),
            ("zeta", Role::Retailer),
        ] {
            if id != org {
                svc.add_partner(id, &format!("{id} Co"), r).await.unwrap();
            }
        }
        let acceptor = parley::server::bind(&cfg).await.unwrap();
        let addr = parley::server::local_addr(&acceptor).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let s = svc.clone();
        let task = tokio::spawn(async move {
            parley::server::run(s, acceptor, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        TestNode {
            base: format!("http://{addr}"),
            token,
            svc,
            dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{}", self.base, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(m, url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call("GET", path, None, Some(&self.token.clone()))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", path, Some(body), Some(&self.token.clone()))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("PATCH", path, Some(body), Some(&self.token.clone()))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("PUT", path, Some(body), Some(&self.token.clone()))
            .await
    }

    /// Sends raw bytes as the body, with a JSON content type.
    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Creates a conversation with `bolt` and returns its JSON.
    pub async fn create(&self, body: Value) -> Value {
        let (s, v) = self.post("/api/v1/conversations", body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }
}

/// Checks the shape every error answer has: `{error, detail}` with a useful detail.
pub fn assert_error(v: &Value, code_part: &str) {
    let e = v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {v}"));
    let d = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no detail in {v}"));
    assert!(!d.is_empty(), "{v}");
    let (e, d, want) = (e.to_lowercase(), d.to_lowercase(), code_part.to_lowercase());
    assert!(
        e.contains(&want) || d.contains(&want),
        "expected {code_part:?} in {v}"
    );
}
