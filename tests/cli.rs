//! The `parley` binary as a user runs it: first start, init, users, tokens, partners,
//! config, and what happens when a command meets a directory that a running node holds.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};

fn parley(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_parley"));
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("PARLEY_LISTEN")
        .env_remove("PARLEY_ORG_ID")
        // Every node in these tests runs on this machine.
        .env("PARLEY_ALLOW_LOOPBACK_PEERS", "1")
        .stdin(Stdio::null());
    c
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn first_start_without_identity_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(parley(dir.path()).args(["serve", "--listen", "127.0.0.1:0"]));
    assert!(!o.status.success());
    assert!(text(&o).contains("parley init --org-id"), "{}", text(&o));
}

#[test]
fn init_users_tokens_partners() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(parley(dir.path()).args([
        "init",
        "--org-id",
        "bolt",
        "--org-name",
        "Bolt Supplies",
        "--role",
        "supplier",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("password: ") && out.contains("pt_"), "{out}");
    // Init is repeatable for the same org and refused for another.
    assert!(
        run(parley(dir.path()).args([
            "init",
            "--org-id",
            "bolt",
            "--org-name",
            "Bolt Supplies",
            "--role",
            "supplier"
        ]))
        .status
        .success()
    );
    let o = run(parley(dir.path()).args([
        "init",
        "--org-id",
        "other",
        "--org-name",
        "Other",
        "--role",
        "retailer",
    ]));
    assert!(!o.status.success());
    assert!(text(&o).contains("already belongs to bolt"), "{}", text(&o));

    let mut child = parley(dir.path())
        .args(["user", "add", "carol", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"carol-secret\n")
        .unwrap();
    assert!(child.wait().unwrap().success());
    let o = run(parley(dir.path()).args(["user", "list"]));
    let list = text(&o);
    assert!(list.contains("carol") && list.contains("admin"), "{list}");

    let o = run(parley(dir.path()).args(["token", "create", "--name", "erp"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).trim().starts_with("pt_"));
    let o = run(parley(dir.path()).args([
        "partner",
        "add",
        "--id",
        "acme",
        "--name",
        "Acme Retail",
        "--role",
        "retailer",
    ]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&run(parley(dir.path()).args(["partner", "list"])))
            .contains("acme\tretailer\tAcme Retail")
    );
    let o = run(parley(dir.path()).args([
        "partner", "add", "--id", "Bad Id", "--name", "x", "--role", "retailer",
    ]));
    assert!(!o.status.success());
    assert!(text(&o).contains("not a valid org id"), "{}", text(&o));
    assert!(run(parley(dir.path()).args(["check"])).status.success());
}

#[test]
fn config_layers_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("parley.toml"),
        "listen = \"127.0.0.1:9100\"\ndoc_cache = 50\n",
    )
    .unwrap();
    let o = run(parley(dir.path())
        .arg("print-config")
        .env("PARLEY_DOC_CACHE", "7"));
    let out = text(&o);
    assert!(out.contains("listen = \"127.0.0.1:9100\""), "{out}");
    let o = run(parley(dir.path()).args(["print-config", "--listen", "0.0.0.0:7000"]));
    assert!(
        text(&o).contains("listen = \"0.0.0.0:7000\""),
        "a flag beats the file: {}",
        text(&o)
    );
    std::fs::write(dir.path().join("parley.toml"), "colour = \"blue\"\n").unwrap();
    let o = run(parley(dir.path()).arg("print-config"));
    assert!(!o.status.success());
    assert!(text(&o).contains("colour"), "{}", text(&o));
    let o = run(parley(dir.path()).args(["serve", "--listen", "nowhere"]));
    assert!(!o.status.success());
}

#[test]
fn a_running_node_is_not_touched_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = parley(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--org-id",
            "acme",
            "--org-name",
            "Acme",
            "--role",
            "retailer",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    let listening = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    let addr = listening.rsplit("http://").next().unwrap().to_string();
    // The CLI refuses to open a directory a running node holds, and says why.
    let o = run(parley(dir.path()).args(["user", "list"]));
    assert!(!o.status.success());
    assert!(
        text(&o).contains("in use by another Parley process"),
        "{}",
        text(&o)
    );
    // SIGTERM: a clean stop.
    let resp = std::net::TcpStream::connect(&addr).map(|mut s| {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut buf = String::new();
        std::io::Read::read_to_string(&mut s, &mut buf).unwrap();
        buf
    });
    assert!(resp.unwrap().ends_with("ok"));
    let st = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    assert!(node.wait().unwrap().success());
    assert!(
        run(parley(dir.path()).args(["user", "list"]))
            .status
            .success()
    );
}

#[test]
fn peer_commands_work_while_the_node_runs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ok = |c: &mut Command| {
        let o = run(c);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    ok(parley(a.path()).args([
        "init",
        "--org-id",
        "acme",
        "--org-name",
        "Acme",
        "--role",
        "retailer",
    ]));
    ok(parley(b.path()).args([
        "init",
        "--org-id",
        "bolt",
        "--org-name",
        "Bolt",
        "--role",
        "supplier",
    ]));
    let mut node = parley(a.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    assert!(
        a.path().join("cli-token").exists(),
        "the running node leaves a CLI token"
    );
    // The CLI finds the node on the port it was given by the listen file it wrote.
    let o = run(parley(a.path()).args(["peer", "list"]));
    assert!(o.status.success(), "{}", text(&o));
    Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    node.wait().unwrap();

    // A fixed port this time, from the config file, so the CLI can reach the running node.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        a.path().join("parley.toml"),
        format!("listen = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let mut node = parley(a.path())
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(node.stdout.take().unwrap()).lines();
    lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.contains("listening on http://"))
        .expect("listening line");
    // An invite names whom it is for.
    let o = run(parley(a.path()).args(["peer", "invite"]));
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--org"), "{}", text(&o));
    let code = ok(parley(a.path()).args([
        "peer", "invite", "--org", "bolt", "--name", "Bolt", "--role", "supplier",
    ]));
    assert!(code.starts_with("parley-invite:"), "{code}");
    // b is stopped: it pairs by calling a directly, and is told what the invite pairs it as.
    let o = run(parley(b.path()).args(["peer", "add", &code]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("pairs this node as bolt (Bolt, supplier) with acme"),
        "{}",
        text(&o)
    );
    let paired = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(paired.contains("paired with acme"), "{paired}");
    let list = ok(parley(a.path()).args(["peer", "list"]));
    assert!(list.contains("bolt"), "{list}");
    // Pairing again with a node that is already a peer is refused: remove it first.
    let o = run(parley(b.path()).args(["peer", "add", &code]));
    assert!(!o.status.success());
    assert!(text(&o).contains("already paired"), "{}", text(&o));
    let node_id = list.split('\t').next().unwrap().to_string();
    ok(parley(a.path()).args(["peer", "remove", &node_id]));
    assert!(!ok(parley(a.path()).args(["peer", "list"])).contains("bolt"));
    let o = run(parley(b.path()).args(["peer", "add", "garbage"]));
    assert!(
        text(&o).contains("not a Parley invite code"),
        "{}",
        text(&o)
    );
    Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(node.wait().unwrap().success());
}
