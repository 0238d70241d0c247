//! `parley webhook …` through the real binary: with the node stopped (the data directory
//! directly) and while it runs (its API, with the token it left in the data directory).

mod common;

use common::bin::{Node, cli, cli_ok};

#[tokio::test]
async fn the_webhook_commands_work_stopped_and_running() {
    let n = Node::new();
    let out = cli_ok(
        &n.dir,
        &[
            "webhook",
            "add",
            "http://10.0.0.5:8080/erp",
            "--events",
            "message.created,task.overdue",
            "--description",
            "ERP",
        ],
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id\t"))
        .unwrap_or_else(|| panic!("no id in {out}"))
        .trim()
        .to_string();
    assert!(
        out.lines().any(|l| l.starts_with("secret\twhsec_")),
        "{out}"
    );
    let list = cli_ok(&n.dir, &["webhook", "list"]);
    assert!(
        list.contains(&id)
            && list.contains("message.created,task.overdue")
            && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains("whsec_"), "{list}");

    // Refused input says why and stores nothing.
    for bad in [
        vec![
            "webhook",
            "add",
            "http://127.0.0.1:9/x",
            "--events",
            "message.created",
        ],
        vec!["webhook", "add", "http://10.0.0.5/x", "--events", "nope"],
    ] {
        let (ok, text) = cli(&n.dir, &bad);
        assert!(!ok, "{bad:?}: {text}");
        assert!(
            text.contains("loopback") || text.contains("not an event type"),
            "{text}"
        );
    }
    assert_eq!(cli_ok(&n.dir, &["webhook", "list"]).lines().count(), 1);

    let t = cli_ok(&n.dir, &["webhook", "test", &id]);
    assert!(t.contains("queued test event msg_"), "{t}");
    let d = cli_ok(&n.dir, &["webhook", "deliveries", &id]);
    assert!(d.contains("webhook.test") && d.contains("pending"), "{d}");

    // While the node runs, the same commands go through its API.
    let server = common::bin::start(&n.dir).await.unwrap();
    let r = cli_ok(&n.dir, &["webhook", "rotate", &id]);
    assert!(
        r.contains("secret\twhsec_") && r.contains("signs beside it until"),
        "{r}"
    );
    let list = cli_ok(&n.dir, &["webhook", "list"]);
    assert!(list.contains(&id), "{list}");
    let e = cli_ok(&n.dir, &["webhook", "enable", &id]);
    assert!(e.contains("enabled"), "{e}");
    let (ok, text) = cli(
        &n.dir,
        &["webhook", "remove", &uuid::Uuid::now_v7().to_string()],
    );
    assert!(!ok && text.contains("not found"), "{text}");
    cli_ok(&n.dir, &["webhook", "remove", &id]);
    assert_eq!(cli_ok(&n.dir, &["webhook", "list"]).trim(), "");
    common::bin::stop(server).await;
}
