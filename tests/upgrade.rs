//! Upgrades: data directories written by release 0.1.0 (kept in `tests/fixtures/v0.1.0`,
//! made by `tests/fixtures/make-v0.1.0.sh`) open with this release, pass `parley check`, show
//! what they held, and sync with each other.

mod common;

use std::path::{Path, PathBuf};

use common::bin::{self, cli_ok};
use serde_json::{Value, json};

/// A copy of the fixture `name`: the kept one is never opened.
fn copy_fixture(name: &str, into: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v0.1.0")
        .join(name);
    let to = into.join(name);
    std::fs::create_dir_all(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to
}

struct Old {
    dir: PathBuf,
    http: reqwest::Client,
    token: String,
}

impl Old {
    async fn call(
        &self,
        s: &bin::Server,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::bin::call_as(&self.http, Some(&self.token), s, method, path, body).await
    }
}

fn old(tmp: &Path, name: &str) -> Old {
    let dir = copy_fixture(name, tmp);
    let token = std::fs::read_to_string(dir.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    Old {
        dir,
        http: reqwest::Client::new(),
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_by_release_0_1_0_opens_checks_and_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = old(tmp.path(), "acme");
    let bolt = old(tmp.path(), "bolt");
    let ids: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v0.1.0/ids.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let id = |k: &str| ids[k].as_str().unwrap().to_string();
    for n in [&acme, &bolt] {
        let said = cli_ok(&n.dir, &["check"]);
        assert!(said.contains("all indexes agree"), "{said}");
    }
    // The addresses the two paired at, which each one's peer record holds.
    let sa = bin::start_on(&acme.dir, "127.0.0.1:17911").await.unwrap();
    let sb = bin::start_on(&bolt.dir, "127.0.0.1:17912").await.unwrap();

    let (st, inbox) = acme
        .call(&sa, "GET", "/conversations?folder=all", None)
        .await;
    assert_eq!(st, 200, "{inbox}");
    assert_eq!(inbox["items"].as_array().unwrap().len(), 3, "{inbox}");
    let (_, c2) = acme
        .call(&sa, "GET", &format!("/conversations/{}", id("c2")), None)
        .await;
    assert_eq!(c2["kind"], "task", "{c2}");
    assert_eq!(c2["due_date"], "2026-12-20");
    assert_eq!(c2["assignee"], "admin");
    assert_eq!(c2["notes"][0]["body"], "Internal: chase again Thursday.");
    assert_eq!(
        c2["messages"][1]["attachments"][0]["state"], "present",
        "{c2}"
    );
    let file = reqwest::Client::new()
        .get(sa.url(&format!("/attachments/{}", id("file"))))
        .bearer_auth(&acme.token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 200);
    assert_eq!(
        file.bytes().await.unwrap().as_ref(),
        b"delivery note for PO 7781\n"
    );
    let (_, c3) = bolt
        .call(&sb, "GET", &format!("/conversations/{}", id("c3")), None)
        .await;
    assert_eq!(c3["state"], "resolved", "{c3}");

    // Sync between the two upgraded nodes, both ways.
    let (st, v) = bolt
        .call(
            &sb,
            "POST",
            &format!("/conversations/{}/messages", id("c1")),
            Some(json!({"body": "after the upgrade"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = acme
        .call(&sa, "POST", "/conversations", Some(json!({"kind": "message", "partner": "bolt", "subject": "New after the upgrade", "body": "hi"})))
        .await;
    assert_eq!(st, 201, "{v}");
    let new_id = v["id"].as_str().unwrap().to_string();
    common::eventually(60, "bolt's reply to reach acme", || async {
        let (_, c1) = acme
            .call(&sa, "GET", &format!("/conversations/{}", id("c1")), None)
            .await;
        (c1["messages"].as_array().map(|m| m.len()) == Some(3)).then_some(())
    })
    .await;
    common::eventually(60, "acme's new conversation to reach bolt", || async {
        let (st, _) = bolt
            .call(&sb, "GET", &format!("/conversations/{new_id}"), None)
            .await;
        (st == 200).then_some(())
    })
    .await;
    bin::stop(sa).await;
    bin::stop(sb).await;
    for n in [&acme, &bolt] {
        let said = cli_ok(&n.dir, &["check"]);
        assert!(said.contains("all indexes agree"), "{said}");
    }
}

/// A data directory from a newer release is refused, not misread.
#[test]
fn a_data_directory_of_a_newer_schema_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let acme = old(tmp.path(), "acme");
    {
        let db = redb::Database::open(acme.dir.join("parley.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99_i64.to_le_bytes().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    for args in [
        &["check"][..],
        &["user", "list"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let (ok, said) = bin::cli(&acme.dir, args);
        assert!(!ok, "{args:?}: {said}");
        assert!(
            said.contains("newer Parley (store schema 99"),
            "{args:?}: {said}"
        );
    }
    // Nothing was rewritten: the version is still the newer one.
    let db = redb::Database::open(acme.dir.join("parley.redb")).unwrap();
    let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let meta = rtx
        .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
        .unwrap();
    assert_eq!(
        meta.get("schema_version").unwrap().unwrap().value(),
        99_i64.to_le_bytes()
    );
}
