//! `parley peer …` finds the running node however it was started: the node writes the
//! address it bound (port 0 resolved) to `listen` in its data directory, and the CLI, given
//! only `--data-dir`, reads it, before `PARLEY_LISTEN` (which may be left from another node).
//! A file left by a node that is gone, or pointing where nothing answers, gives an error
//! naming the address and where it came from.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::bin::{BIN, Node, Server, cli};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn listen_file(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("listen")).unwrap_or_default()
}

/// `peer list` and `peer invite` with nothing but `--data-dir`.
fn peer_commands_work(dir: &Path) {
    let (ok, text) = cli(dir, &["peer", "list"]);
    assert!(ok, "peer list: {text}");
    let (ok, text) = cli(
        dir,
        &[
            "peer", "invite", "--org", "bolt", "--name", "Bolt", "--role", "supplier",
        ],
    );
    assert!(ok, "peer invite: {text}");
    assert!(text.contains("parley-invite:"), "{text}");
}

/// `parley serve` with only `PARLEY_LISTEN` saying where; returns once it listens.
fn serve_with_env(dir: &Path, listen: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir)
        .env("PARLEY_LISTEN", listen)
        .env("PARLEY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("listening on http://") {
                let _ = tx.send(line);
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the node listens within 30 s");
    assert!(line.contains(listen), "{line}");
    child
}

#[test]
fn the_cli_finds_a_node_started_on_port_zero() {
    let node = Node::new();
    let server = Server::start(&node.dir).unwrap();
    let addr = server.base.trim_start_matches("http://").to_string();
    assert_eq!(listen_file(&node.dir).trim(), addr, "the bound port, not 0");
    peer_commands_work(&node.dir);
    // A clean stop takes the file away.
    server.stop();
    assert!(!node.dir.join("listen").exists());
    // With the node stopped the commands open the data directory themselves.
    peer_commands_work(&node.dir);
}

#[test]
fn the_cli_finds_a_node_started_with_parley_listen() {
    let node = Node::new();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = serve_with_env(&node.dir, &addr);
    assert_eq!(listen_file(&node.dir).trim(), addr);
    peer_commands_work(&node.dir);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_listen_file_where_nothing_answers_is_named_in_the_error() {
    let node = Node::new();
    let server = Server::start(&node.dir).unwrap();
    let real = listen_file(&node.dir).trim().to_string();
    // The file points where nothing listens (as a file left by an earlier run would).
    let dead = format!("127.0.0.1:{}", free_port());
    std::fs::write(node.dir.join("listen"), format!("{dead}\n")).unwrap();
    let (ok, text) = cli(&node.dir, &["peer", "list"]);
    assert!(!ok, "{text}");
    assert!(text.contains(&dead), "names the address: {text}");
    assert!(
        text.contains("listen file"),
        "names where it came from: {text}"
    );
    assert!(text.contains("--listen"), "says what to do: {text}");
    // An explicit address wins over the file.
    let (ok, text) = cli(&node.dir, &["peer", "list", "--listen", &real]);
    assert!(ok, "{text}");
    // The file is the running node's own word: PARLEY_LISTEN does not override it.
    let peer_list_with_env = |env: &str| {
        let out = Command::new(BIN)
            .args(["peer", "list", "--data-dir"])
            .arg(&node.dir)
            .env("PARLEY_LISTEN", env)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, err) = peer_list_with_env(&real);
    assert!(
        !ok && err.contains(&dead) && err.contains("listen file"),
        "{err}"
    );
    // Without a file, PARLEY_LISTEN is used; a dead address is named with where it came from.
    std::fs::remove_file(node.dir.join("listen")).unwrap();
    let (ok, err) = peer_list_with_env(&real);
    assert!(ok, "{err}");
    let (ok, err) = peer_list_with_env(&dead);
    assert!(!ok);
    assert!(
        err.contains(&dead) && err.contains("PARLEY_LISTEN"),
        "{err}"
    );
    // A garbled file is refused with its name, not dialled.
    std::fs::write(node.dir.join("listen"), "not an address\n").unwrap();
    let (ok, text) = cli(&node.dir, &["peer", "list"]);
    assert!(!ok);
    assert!(
        text.contains("listen file") && text.contains("not an address"),
        "{text}"
    );

    // Killed, the node leaves its file behind; the next command finds the data directory
    // free and opens it directly instead of dialling the stale address.
    std::fs::write(node.dir.join("listen"), format!("{real}\n")).unwrap();
    server.crash();
    assert!(node.dir.join("listen").exists());
    peer_commands_work(&node.dir);
}

/// A `PARLEY_LISTEN` left exported from another node on the machine must not send this
/// node's token there: the listen file of the node that holds the data directory wins, and
/// the right node answers (the other node would refuse the token).
#[test]
fn a_stale_parley_listen_does_not_send_the_token_to_another_node() {
    let acme = Node::new();
    let bolt = Node::of("bolt", "supplier", &[("acme", "retailer")]);
    let a = Server::start(&acme.dir).unwrap();
    let b = Server::start(&bolt.dir).unwrap();
    let elsewhere = b.base.trim_start_matches("http://").to_string();
    let invite = [
        "peer", "invite", "--org", "bolt", "--name", "Bolt", "--role", "supplier",
    ];
    for cmd in [&["peer", "list"][..], &invite[..]] {
        let out = Command::new(BIN)
            .args(cmd)
            .arg("--data-dir")
            .arg(&acme.dir)
            .env("PARLEY_LISTEN", &elsewhere)
            .env("PARLEY_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    b.stop();
    a.stop();
}
