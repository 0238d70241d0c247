//! A real webhook receiver for the tests: `tests/tools/webhook_receiver.py`, which checks
//! each request's signature with the independent `standardwebhooks` library.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub struct Receiver {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts a receiver that answers the requests in turn as `script` says (see the
    /// script's doc), then 200.
    pub fn start(python: &Path, script: &str) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secrets"), "").unwrap();
        let tool =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/tools/webhook_receiver.py");
        let mut child = Command::new(python)
            .arg(tool)
            .arg("--secrets")
            .arg(dir.path().join("secrets"))
            .arg("--log")
            .arg(dir.path().join("log"))
            .arg("--script")
            .arg(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no port: {line:?}"));
        Receiver { child, port, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Adds a secret the receiver checks signatures with (its index is its line).
    pub fn add_secret(&self, s: &str) {
        let p = self.dir.path().join("secrets");
        let mut all = std::fs::read_to_string(&p).unwrap();
        all.push_str(s);
        all.push('\n');
        std::fs::write(p, all).unwrap();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
