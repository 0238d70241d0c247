//! Parley as a service: what an operator and systemd see of the real binary. `--version` and
//! shell completions; readiness sent over `NOTIFY_SOCKET` only when the node answers, and
//! stopping on SIGTERM; JSON log lines that each parse; and the unit in `docs/systemd` as
//! `systemd-analyze verify` reads it.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bin::{BIN, Node};

/// A `parley serve` on port 0 with extra environment; every line it prints comes through
/// `lines` as (stream, line), and the end of each stream as (stream, None).
struct Proc {
    child: Child,
    lines: mpsc::Receiver<(&'static str, Option<String>)>,
}

impl Proc {
    fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("PARLEY_LOG_FORMAT")
            .env("PARLEY_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning parley serve");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        for (name, stream) in [
            ("stdout", Box::new(out) as Box<dyn Read + Send>),
            ("stderr", Box::new(err)),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send((name, Some(line)));
                }
                let _ = tx.send((name, None));
            });
        }
        Proc { child, lines }
    }

    /// Lines until one satisfies `f` (returned), within 30 s; every line read is kept in `seen`.
    fn wait_line(&self, seen: &mut Vec<String>, f: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((_, Some(line))) => {
                    seen.push(line.clone());
                    if f(&line) {
                        return line;
                    }
                }
                Ok((_, None)) => {}
                Err(_) => panic!("no such line within 30 s; the node printed:\n{seen:#?}"),
            }
        }
    }

    fn sigterm(&self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the exit after SIGTERM (bounded), then returns every line not yet read.
    fn finish(mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "node exited with {status}");
        let mut rest = Vec::new();
        let mut ended = 0;
        while ended < 2 {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok((_, Some(l))) => rest.push(l),
                Ok((_, None)) => ended += 1,
                Err(_) => panic!("the node's output did not end after it exited"),
            }
        }
        rest
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn listen_addr(dir: &Path) -> Option<String> {
    let s = std::fs::read_to_string(dir.join("listen")).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[test]
fn version_is_the_package_version() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text.lines().next(),
        Some(format!("parley {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    assert!(text.contains("store schema 1"), "{text}");
    assert!(text.contains("parley-sync.2, parley-sync.1"), "{text}");
}

#[test]
fn bash_completion_loads_and_every_shell_gets_a_script() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <('{BIN}' completions bash) && complete -p parley"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("parley"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains("serve"), "{shell}: {script}");
    }
    // A shell it does not know: a usage error naming the ones it does, and no script.
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bash"));
}

/// Every datagram on the notify socket as text, in order.
fn notifications(sock: &UnixDatagram) -> impl FnMut(&str) -> String + '_ {
    move |waiting_for: &str| {
        let mut buf = vec![0u8; 4096];
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({waiting_for}) within 30 s: {e}"));
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }
}

#[test]
fn ready_is_sent_when_the_node_answers_and_stopping_on_sigterm() {
    let node = Node::new();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let p = Proc::serve(&node.dir, &[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut next = notifications(&sock);

    let ready = next("READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    // At the moment of READY=1: the listen file names the bound port, it accepts, and the
    // node answers its health check.
    let addr = listen_addr(&node.dir).expect("the listen file is written before READY=1");
    let (status, body) = get(&addr, "/healthz");
    assert_eq!(status, 200, "{body}");
    let st = ready
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .unwrap_or_else(|| panic!("no STATUS= with READY=1: {ready:?}"));
    assert!(st.contains(&addr), "{st}");

    p.sigterm();
    let stopping = next("STOPPING=1");
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping:?}");
    p.finish();
    // Nothing further once stopped, and nothing before READY=1 either (one datagram each).
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(sock.recv(&mut buf).is_err(), "unexpected notification");
}

#[test]
fn a_notify_socket_nobody_listens_on_does_not_stop_the_node() {
    let node = Node::new();
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("gone.sock");
    let p = Proc::serve(
        &node.dir,
        &[],
        &[("NOTIFY_SOCKET", nowhere.to_str().unwrap())],
    );
    let mut seen = Vec::new();
    p.wait_line(&mut seen, |l| l.contains("listening on http://"));
    p.wait_line(&mut seen, |l| l.contains("NOTIFY_SOCKET"));
    let addr = listen_addr(&node.dir).unwrap();
    assert_eq!(get(&addr, "/healthz").0, 200);
    p.sigterm();
    p.finish();
}

/// Every line the node printed to either stream, each a JSON object with a level and a
/// message: the startup line included, so a log shipper never meets plain text.
#[test]
fn json_logs_are_one_object_per_line() {
    let node = Node::new();
    let p = Proc::serve(&node.dir, &["--log-format", "json"], &[]);
    let mut seen = Vec::new();
    let line = p.wait_line(&mut seen, |l| l.contains("listening on http://"));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["level"], "INFO", "{line}");
    let addr = listen_addr(&node.dir).unwrap();
    // Some traffic, a refused request among it, so more than the startup lines are logged.
    assert_eq!(get(&addr, "/healthz").0, 200);
    assert_eq!(get(&addr, "/api/v1/conversations").0, 401);
    p.sigterm();
    seen.extend(p.finish());
    assert!(seen.len() >= 2, "{seen:#?}");
    for line in &seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string(), "no level: {line}");
        assert!(v["timestamp"].is_string(), "no timestamp: {line}");
        assert!(v["target"].is_string(), "no target: {line}");
        assert!(v["fields"]["message"].is_string(), "no message: {line}");
    }
    assert!(
        seen.iter().any(|l| l.contains("shutting down")),
        "the stop is logged too: {seen:#?}"
    );

    // The same through the environment, and a format it does not know refused up front.
    let out = Command::new(BIN)
        .args(["print-config", "--data-dir"])
        .arg(&node.dir)
        .env("PARLEY_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("json") && err.contains("text"), "{err}");
}

fn unit_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/systemd/parley.service")
}

/// `systemd-analyze verify` on a copy with `ExecStart` at the built binary: (exit ok, what
/// it said about the unit file, everything it said).
fn verify(unit: &str, dir: &Path) -> (bool, Vec<String>, String) {
    let path = dir.join("parley.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("running systemd-analyze");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without systemd as PID 1 it may also speak of the machine (no bus, no /run/systemd);
    // what concerns the unit names its file.
    let about_unit = all
        .lines()
        .filter(|l| l.contains("parley.service") || l.contains(&*path.to_string_lossy()))
        .map(str::to_string)
        .collect();
    (out.status.success(), about_unit, all)
}

#[test]
fn the_unit_verifies_clean() {
    let have = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-analyze is missing: .ci/run installs Debian's systemd package"
        );
        eprintln!("skipped: no systemd-analyze (apt-get install systemd)");
        return;
    }
    let text = std::fs::read_to_string(unit_path()).unwrap();
    for want in [
        "Type=notify",
        "ExecStart=/usr/local/bin/parley serve --config /etc/parley/parley.toml",
        "DynamicUser=yes",
        "StateDirectory=parley",
        "ConfigurationDirectory=parley",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(text.contains(want), "the unit lacks {want:?}");
    }
    let local = text.replace("/usr/local/bin/parley", BIN);
    let tmp = tempfile::tempdir().unwrap();
    let (ok, about_unit, all) = verify(&local, tmp.path());
    assert!(ok && about_unit.is_empty(), "verify complains:\n{all}");

    // The check is known to catch a mistake: a misspelt key only warns (exit 0), and a
    // binary that is not there fails.
    let typo = local.replace("ProtectHome=yes", "ProtectHomee=yes");
    let (_, about_unit, all) = verify(&typo, tmp.path());
    assert!(
        about_unit.iter().any(|l| l.contains("ProtectHomee")),
        "{all}"
    );
    let gone = text.replace("/usr/local/bin/parley", "/nonexistent/parley");
    let (ok, _, all) = verify(&gone, tmp.path());
    assert!(!ok, "{all}");
}
