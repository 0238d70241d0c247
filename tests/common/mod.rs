//! A real node for black-box tests: its own data directory, a real TCP listener on port 0,
//! an admin token, and helpers to call its HTTP API.
#![allow(dead_code)]

pub mod bench;
pub mod bin;
pub mod crash_disk;
pub mod faults;
pub mod power;
pub mod power_verify;
pub mod py;
pub mod receiver;
pub mod scrape;
pub mod sink;
pub mod small_fs;
pub mod smtp;
pub mod wstap;

use std::sync::Arc;

use parley::config::{Config, Overrides};
use parley::domain::Role;
use parley::service::{Clock, NewToken, Service};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestNode {
    pub org: String,
    pub role: Role,
    pub base: String,
    addr: std::net::SocketAddr,
    /// Where it serves peers over TLS, when started with [`TestNode::start_tls`].
    pub tls_addr: Option<std::net::SocketAddr>,
    /// Where it serves `/metrics` without a token, when its config file says `[metrics] listen`.
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub token: String,
    svc: Option<Arc<Service>>,
    pub dir: tempfile::TempDir,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestNode {
    /// A node of `org` with partners `bolt` (supplier) and `acme` (retailer), minus itself.
    pub async fn start(org: &str, role: Role) -> TestNode {
        Self::start_with(org, role, false).await
    }

    /// A node that also serves peers over TLS, with a certificate it makes on first start.
    pub async fn start_tls(org: &str, role: Role) -> TestNode {
        Self::start_with(org, role, true).await
    }

    async fn start_with(org: &str, role: Role, tls: bool) -> TestNode {
        Self::start_in(tempfile::tempdir().unwrap(), org, role, tls, true).await
    }

    /// A node with the outbound-address rules as configured by default: loopback peers
    /// refused (every other test node allows them, since everything runs on 127.0.0.1).
    pub async fn start_strict(org: &str, role: Role) -> TestNode {
        Self::start_in(tempfile::tempdir().unwrap(), org, role, false, false).await
    }

    /// A node whose data directory holds `parley.toml` with these lines before it starts.
    /// A node whose data directory is `dir` (a directory on a filesystem the test chose).
    pub async fn start_at(dir: tempfile::TempDir, org: &str, role: Role) -> TestNode {
        Self::start_full(dir, org, role, false, true, Clock::System).await
    }

    pub async fn start_configured(org: &str, role: Role, toml: &str) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(parley::config::CONFIG_FILE), toml).unwrap();
        Self::start_in(dir, org, role, false, true).await
    }

    /// [`TestNode::start_configured`] on a clock the test holds (reminders, digests).
    pub async fn start_clocked(org: &str, role: Role, toml: &str, clock: Clock) -> TestNode {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(parley::config::CONFIG_FILE), toml).unwrap();
        Self::start_full(dir, org, role, false, true, clock).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        org: &str,
        role: Role,
        tls: bool,
        allow_loopback: bool,
    ) -> TestNode {
        Self::start_full(dir, org, role, tls, allow_loopback, Clock::System).await
    }

    async fn start_full(
        dir: tempfile::TempDir,
        org: &str,
        role: Role,
        tls: bool,
        allow_loopback: bool,
        clock: Clock,
    ) -> TestNode {
        let cfg = Config::load(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            tls_listen: tls.then(|| "127.0.0.1:0".into()),
            allow_loopback_peers: Some(allow_loopback),
            ..Default::default()
        })
        .unwrap();
        let svc = parley::server::open(&cfg, clock).await.unwrap();
        svc.init_identity(org, &format!("{org} Inc"), role)
            .await
            .unwrap();
        svc.add_user(
            &parley::service::Principal::operator(),
            "admin",
            Some("correct-horse".into()),
            true,
        )
        .await
        .unwrap();
        let token = svc
            .create_token(
                &parley::service::Principal::operator(),
                NewToken {
                    name: "t".into(),
                    user: Some("admin".into()),
                },
            )
            .await
            .unwrap()
            .secret;
        for (id, r) in [
            ("bolt", Role::Supplier),
            ("acme", Role::Retailer),
            ("zeta", Role::Retailer),
        ] {
            if id != org {
                svc.add_partner(
                    &parley::service::Principal::operator(),
                    id,
                    &format!("{id} Co"),
                    r,
                )
                .await
                .unwrap();
            }
        }
        let acceptor = parley::server::bind(&cfg).await.unwrap();
        let addr = parley::server::local_addr(&acceptor).unwrap();
        let tls_addr = acceptor.tls_addr();
        let metrics_addr = acceptor.metrics_addr();
        let (stop, task) = serve(svc.clone(), acceptor);
        TestNode {
            org: org.to_string(),
            role,
            base: format!("http://{addr}"),
            addr,
            tls_addr,
            metrics_addr,
            token,
            svc: Some(svc),
            dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A node on a data directory that already holds one (a restored backup, a kept
    /// fixture), answering to `token`: nothing is set up, only opened and served.
    pub async fn start_existing(
        dir: tempfile::TempDir,
        org: &str,
        role: Role,
        token: &str,
    ) -> TestNode {
        let cfg = Config::load(Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            listen: Some("127.0.0.1:0".into()),
            allow_loopback_peers: Some(true),
            ..Default::default()
        })
        .unwrap();
        let svc = parley::server::open(&cfg, Clock::System).await.unwrap();
        let acceptor = parley::server::bind(&cfg).await.unwrap();
        let addr = parley::server::local_addr(&acceptor).unwrap();
        let metrics_addr = acceptor.metrics_addr();
        let (stop, task) = serve(svc.clone(), acceptor);
        TestNode {
            org: org.to_string(),
            role,
            base: format!("http://{addr}"),
            addr,
            metrics_addr,
            tls_addr: None,
            token: token.to_string(),
            svc: Some(svc),
            dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A checked backup of the running node, through its API, written to `to`.
    pub async fn backup(&self, to: &std::path::Path) {
        let r = self
            .http
            .post(format!("{}/api/v1/admin/backup", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "the backup must be made");
        std::fs::write(to, r.bytes().await.unwrap()).unwrap();
    }

    /// Replies `body` to conversation `id`; panics unless it answers 201.
    pub async fn reply_ok(&self, id: &str, body: &str) {
        let (s, v) = self
            .post(
                &format!("/api/v1/conversations/{id}/messages"),
                serde_json::json!({ "body": body }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }

    /// The bodies of conversation `id`'s messages in thread order (empty if it is not here).
    pub async fn bodies(&self, id: &str) -> Vec<String> {
        let (s, v) = self.get(&format!("/api/v1/conversations/{id}")).await;
        if s != StatusCode::OK {
            return Vec::new();
        }
        v["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| m["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The address the node serves plain HTTP on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    pub fn svc(&self) -> &Arc<Service> {
        self.svc.as_ref().expect("the node is paused")
    }

    /// Stops the server (as if the machine went offline); the data directory stays.
    pub async fn pause(&mut self) {
        self.svc = None;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// Starts the server again on the same data directory and address.
    pub async fn resume(&mut self) {
        let listen = self.addr.to_string();
        self.resume_on(&listen).await;
    }

    /// Starts the server again on the same data directory, listening on `listen` (e.g.
    /// `127.0.0.1:0` for a new port); `base` follows.
    pub async fn resume_on(&mut self, listen: &str) {
        let cfg = Config::load(Overrides {
            data_dir: Some(self.dir.path().to_path_buf()),
            listen: Some(listen.to_string()),
            tls_listen: self.tls_addr.map(|a| a.to_string()),
            allow_loopback_peers: Some(true),
            ..Default::default()
        })
        .unwrap();
        // The old store's file lock is released once its last handle is gone.
        let svc = loop {
            match parley::server::open(&cfg, Clock::System).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        };
        self.svc = Some(svc.clone());
        let acceptor = parley::server::bind(&cfg).await.unwrap();
        self.addr = parley::server::local_addr(&acceptor).unwrap();
        self.base = format!("http://{}", self.addr);
        self.metrics_addr = acceptor.metrics_addr();
        let (stop, task) = serve(svc, acceptor);
        self.stop = Some(stop);
        self.task = Some(task);
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

    /// Uploads `bytes` as a file named `name` (raw body), as the API takes it.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/attachments", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .header("x-filename", name)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Downloads a file: its status, headers and bytes.
    pub async fn download(
        &self,
        sha256: &str,
    ) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self
            .http
            .get(format!("{}/api/v1/attachments/{sha256}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    /// Signs in as the admin as the web UI does; the `parley_session=…` cookie to send back.
    pub async fn session_cookie(&self) -> String {
        let login = self
            .http
            .post(format!("{}/api/v1/session", self.base))
            .json(&serde_json::json!({"name": "admin", "password": "correct-horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::OK);
        login
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("parley_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string()
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

fn serve(
    svc: Arc<Service>,
    acceptor: parley::server::Bound,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        parley::server::run(svc, acceptor, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, task)
}

/// The invite body `a` makes for a node like `b`: another site when they share an org, else
/// a node of `b`'s org.
pub fn invite_for(a: &TestNode, b: &TestNode) -> Value {
    if a.org == b.org {
        serde_json::json!({ "own_site": true })
    } else {
        serde_json::json!({ "org_id": b.org, "org_name": format!("{} Inc", b.org), "role": b.role.to_string() })
    }
}

/// Makes an invite on `a` with `body` and returns its code.
pub async fn invite(a: &TestNode, body: Value) -> String {
    let (s, inv) = a.post("/api/v1/peers/invites", body).await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    inv["code"].as_str().unwrap().to_string()
}

/// Pairs `b` with `a` through an invite made by `a` for `b`'s org.
/// A node of `org` in `role` with no public address (behind NAT), paired with `a` as reached at
/// `url` (a proxy in front of `a`): it always dials `a` there, and `a` never dials it.
pub async fn node_behind(a: &TestNode, url: &str, org: &str, role: Role) -> TestNode {
    node_behind_at(a, url, tempfile::tempdir().unwrap(), org, role).await
}

/// [`node_behind`] with its data directory in `dir`.
pub async fn node_behind_at(
    a: &TestNode,
    url: &str,
    dir: tempfile::TempDir,
    org: &str,
    role: Role,
) -> TestNode {
    let b = TestNode::start_at(dir, org, role).await;
    // The node sets its own address once it serves; only then may it be taken away.
    eventually(10, "the node's server", || async {
        b.svc().public_url().map(|_| ())
    })
    .await;
    b.svc().set_public_url(None);
    a.svc().set_public_url(Some(url.to_string()));
    pair(a, &b).await;
    b
}

pub async fn pair(a: &TestNode, b: &TestNode) {
    let (s, inv) = a.post("/api/v1/peers/invites", invite_for(a, b)).await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    let (s, p) = b
        .post("/api/v1/peers", serde_json::json!({"code": inv["code"]}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
}

/// The JSON inside an invite code.
pub fn decode_invite(code: &str) -> Value {
    use base64::Engine;
    let b64 = code.strip_prefix("parley-invite:").unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(b64)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// An invite code carrying `v` (for tests that forge or alter codes).
pub fn encode_invite(v: &Value) -> String {
    use base64::Engine;
    format!(
        "parley-invite:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    )
}

/// The ids of the conversations `n` lists (up to 200), sorted.
pub async fn inbox_ids(n: &TestNode) -> Vec<String> {
    let (_, page) = n.get("/api/v1/conversations?limit=200").await;
    let mut ids: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// Polls `f` until it returns `Some`, for up to `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
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

/// `n` bytes that no compressor shrinks, behind a PDF header (so the node takes them as a
/// PDF: a file's kind is told by its first bytes).
pub fn random_pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    while v.len() < n {
        v.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    v.truncate(n);
    v
}
