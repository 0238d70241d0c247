//! The real binary, for black-box tests of what a user runs: one-off commands, `parley serve`
//! started and stopped gracefully or with SIGKILL, and the database file as bytes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const BIN: &str = env!("CARGO_BIN_EXE_parley");

/// Runs a CLI command to completion: (succeeded, stdout and stderr).
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("PARLEY_LOG", "warn")
        .output()
        .expect("running parley");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn cli_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = cli(dir, args);
    assert!(ok, "parley {args:?} failed:\n{text}");
    text
}

/// A running `parley serve`; killed with SIGKILL if dropped while still running.
pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts the node; `Err` with what it printed if it exits before listening.
    pub fn start(dir: &Path) -> Result<Server, String> {
        Server::start_on(dir, "127.0.0.1:0")
    }

    /// [`Server::start`] on the address `listen`.
    pub fn start_on(dir: &Path, listen: &str) -> Result<Server, String> {
        let mut child = Command::new(BIN)
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", listen])
            .env("PARLEY_LOG", "warn")
            // Every node of a test runs on this machine.
            .env("PARLEY_ALLOW_LOOPBACK_PEERS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning parley serve");
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let out_tx = tx.clone();
        // Reports the address once, keeps draining so the node never blocks on a full pipe,
        // and reports the end of output (the process exited).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    let _ = out_tx.send(Ok(line[i + "listening on ".len()..].trim().to_string()));
                }
            }
            let _ = out_tx.send(Err(String::new()));
        });
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("node: {line}");
                all.push_str(&line);
                all.push('\n');
            }
            let _ = tx.send(Err(all));
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut said = String::new();
        let mut closed = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(base)) => return Ok(Server { child, base }),
                Ok(Err(text)) => {
                    said.push_str(&text);
                    closed += 1;
                    // Both pipes closed before an address: the process is exiting.
                    if closed == 2 {
                        let status = child.wait().expect("reaping parley serve");
                        return Err(format!("parley serve exited with {status}:\n{said}"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    return Err(format!("parley serve did not listen within 30 s:\n{said}"));
                }
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    /// The node's process id (for reading its memory from `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no graceful shutdown, nothing after the last commit.
    pub fn crash(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reaping the node");
    }

    /// SIGTERM, then waits for the graceful shutdown.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "node exited with {status} on SIGTERM");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "node did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub async fn start(dir: &Path) -> Result<Server, String> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || Server::start(&dir))
        .await
        .unwrap()
}

pub async fn start_on(dir: &Path, listen: &str) -> Result<Server, String> {
    let (dir, listen) = (dir.to_path_buf(), listen.to_string());
    tokio::task::spawn_blocking(move || Server::start_on(&dir, &listen))
        .await
        .unwrap()
}

pub async fn crash(s: Server) {
    tokio::task::spawn_blocking(move || s.crash())
        .await
        .unwrap()
}

pub async fn stop(s: Server) {
    tokio::task::spawn_blocking(move || s.stop()).await.unwrap()
}

/// A node's data directory with an identity, an admin token and partner `bolt`.
pub struct Node {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// The admin's API token that `parley init` printed.
    pub token: String,
    http: reqwest::Client,
}

impl Node {
    /// Acme, a retailer, with partner Bolt (a supplier).
    pub fn new() -> Node {
        Node::of("acme", "retailer", &[("bolt", "supplier")])
    }

    /// A node of `org` in `role`, set up through the CLI with these partners.
    pub fn of(org: &str, role: &str, partners: &[(&str, &str)]) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let name = format!("{org} Inc");
        let out = cli_ok(
            &dir,
            &["init", "--org-id", org, "--org-name", &name, "--role", role],
        );
        let token = out
            .lines()
            .find_map(|l| l.split("created API token for admin (shown once): ").nth(1))
            .unwrap_or_else(|| panic!("no token in `parley init` output:\n{out}"))
            .trim()
            .to_string();
        for (id, r) in partners {
            let name = format!("{id} Co");
            cli_ok(
                &dir,
                &["partner", "add", "--id", id, "--name", &name, "--role", r],
            );
        }
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Node {
            _tmp: tmp,
            dir,
            token,
            http,
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("parley.redb")
    }

    pub async fn call(
        &self,
        s: &Server,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_as(&self.http, None, s, method, path, body).await
    }

    pub async fn create(&self, s: &Server, subject: &str, reference: Option<&str>) -> Uuid {
        let mut body = json!({ "kind": "message", "partner": "bolt", "subject": subject });
        if let Some(r) = reference {
            body["reference_id"] = json!(r);
        }
        let (st, v) = self.call(s, "POST", "/conversations", Some(body)).await;
        assert_eq!(st, 201, "{v}");
        v["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn reply(&self, s: &Server, id: Uuid, body: &str) -> (u16, Value) {
        self.call(
            s,
            "POST",
            &format!("/conversations/{id}/messages"),
            Some(json!({ "body": body })),
        )
        .await
    }

    /// The ids the inbox lists, walking every page; panics unless each page answers 200.
    pub async fn inbox(&self, s: &Server, query: &str) -> Vec<Uuid> {
        let (st, v) = self
            .call(s, "GET", &format!("/conversations?limit=200{query}"), None)
            .await;
        assert_eq!(st, 200, "the inbox must answer: {v}");
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().parse().unwrap())
            .collect()
    }
}

/// `method path` against `s` with `http` (and `token` as the bearer, if given): the status and
/// the body as JSON (a string when it is not JSON).
pub async fn call_as(
    http: &reqwest::Client,
    token: Option<&str>,
    s: &Server,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = http.request(m, s.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn sha(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Flips one byte in the middle of every occurrence of `marker` in the file; returns how many.
/// Old copies of a page left in free space are flipped too, which does no harm.
pub fn flip(path: &Path, marker: &str) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let m = marker.as_bytes();
    let at: Vec<usize> = bytes
        .windows(m.len())
        .enumerate()
        .filter(|(_, w)| *w == m)
        .map(|(i, _)| i)
        .collect();
    for i in &at {
        bytes[i + m.len() / 2] ^= 0x01;
    }
    std::fs::write(path, bytes).unwrap();
    at.len()
}

/// Flips the byte at `offset` into every occurrence of `needle`; returns how many.
pub fn flip_at(path: &Path, needle: &str, offset: usize) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let m = needle.as_bytes();
    let at: Vec<usize> = bytes
        .windows(m.len())
        .enumerate()
        .filter(|(_, w)| *w == m)
        .map(|(i, _)| i)
        .collect();
    for i in &at {
        bytes[i + offset] ^= 0x01;
    }
    std::fs::write(path, bytes).unwrap();
    at.len()
}
