//! A real SMTP server for the notification tests: aiosmtpd, writing what it accepts to a
//! Maildir that the tests read back through Python's own mail parser.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct SmtpServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    python: PathBuf,
    child: Child,
}

/// One mail as received: lower-case header names (repeated ones joined by newlines) and the
/// decoded plain-text and HTML parts.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: serde_json::Map<String, Value>,
    pub text: String,
    pub html: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.as_str())
    }
    pub fn to(&self) -> &str {
        self.header("to").unwrap_or("")
    }
    pub fn subject(&self) -> &str {
        self.header("subject").unwrap_or("")
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl SmtpServer {
    /// Starts aiosmtpd on a free port and waits for its `220` greeting.
    pub async fn start(python: &std::path::Path) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("mail");
        let port = free_port();
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting aiosmtpd");
        let t = Instant::now();
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 3];
                if tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
                    .await
                    .is_ok_and(|r| r.is_ok())
                    && &buf == b"220"
                {
                    break;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "aiosmtpd did not greet on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        SmtpServer {
            port,
            dir,
            python: python.to_path_buf(),
            child,
        }
    }

    /// The `[email]` table pointing a node at this server.
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "[email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\nsmtp_security = \"none\"\nfrom = \"parley@acme.test\"\nui_url = \"http://parley.acme.test\"\n{extra}",
            self.port
        )
    }

    /// Every mail received so far, oldest first.
    pub fn mails(&self) -> Vec<Mail> {
        let maildir = self.dir.path().join("mail");
        if !maildir.join("new").exists() {
            return Vec::new();
        }
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/maildir_dump.py");
        let out = Command::new(&self.python)
            .arg(script)
            .arg(&maildir)
            .output()
            .expect("reading the Maildir");
        assert!(
            out.status.success(),
            "maildir_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut mails: Vec<(u64, Mail)> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).expect("a JSON line");
                (
                    v["order"].as_u64().unwrap_or(0),
                    Mail {
                        headers: v["headers"].as_object().cloned().unwrap_or_default(),
                        text: v["text"].as_str().unwrap_or("").to_string(),
                        html: v["html"].as_str().unwrap_or("").to_string(),
                    },
                )
            })
            .collect();
        mails.sort_by_key(|m| m.0);
        mails.into_iter().map(|(_, m)| m).collect()
    }

    /// Mails to `addr`.
    pub fn mails_to(&self, addr: &str) -> Vec<Mail> {
        self.mails()
            .into_iter()
            .filter(|m| m.to().contains(addr))
            .collect()
    }

    /// Stops the server (a dead SMTP server for the tests that need one).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SmtpServer {
    /// Waits until `addr` has received at least `n` mails (up to `secs`), and returns them.
    pub async fn wait_for(&self, addr: &str, n: usize, secs: u64) -> Vec<Mail> {
        let t = Instant::now();
        loop {
            let m = self.mails_to(addr);
            if m.len() >= n {
                return m;
            }
            assert!(
                t.elapsed() < Duration::from_secs(secs),
                "{addr} got {} of {n} mails within {secs} s: {:?}",
                m.len(),
                m.iter()
                    .map(|m| m.subject().to_string())
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
