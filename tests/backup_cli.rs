//! `parley backup` and `parley restore` as an operator runs them, on the real binary, and
//! every bad input refused with a clear message and nothing changed.

mod common;

use std::path::Path;

use common::bin::{self, Node, cli, cli_ok};

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_a_running_and_of_a_stopped_node_restores_and_checks() {
    let acme = Node::new();
    let s = bin::start(&acme.dir).await.unwrap();
    let id = acme
        .create(&s, "Item 4411 description too thin", Some("SKU-4411"))
        .await;
    let (st, _) = acme.reply(&s, id, "please add care instructions").await;
    assert_eq!(st, 201);
    let out = tempfile::tempdir().unwrap();
    // While it runs: the CLI asks the node, which writes the backup.
    let running = out.path().join("running.backup");
    let said = cli_ok(&acme.dir, &["backup", "--to", running.to_str().unwrap()]);
    assert!(said.contains("backup of acme"), "{said}");
    assert!(said.contains("1 conversations"), "{said}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&running).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "a backup is its owner's only: {mode:o}");
    }
    assert_eq!(
        files_in(out.path()),
        ["running.backup"],
        "no partial file is left"
    );
    // The backup API is for admins only.
    let anon = reqwest::Client::new()
        .post(s.url("/admin/backup"))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    let (st, tok) = acme
        .call(
            &s,
            "POST",
            "/users",
            Some(serde_json::json!({"name": "ann", "password": "correct-horse-3", "admin": false})),
        )
        .await;
    assert!(st < 300, "{tok}");
    let (st, tok) = acme
        .call(
            &s,
            "POST",
            "/tokens",
            Some(serde_json::json!({"name": "ann-token", "user": "ann"})),
        )
        .await;
    assert!(st < 300, "{tok}");
    let not_admin = reqwest::Client::new()
        .post(s.url("/admin/backup"))
        .bearer_auth(tok["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(not_admin.status(), 403);
    // A target that would destroy what it backs up, or something else, is refused.
    let db = acme.db();
    let before = bin::sha(&db);
    for bad in [db.to_str().unwrap(), "/dev/null"] {
        let (ok, said) = cli(&acme.dir, &["backup", "--to", bad]);
        assert!(
            !ok && said.contains("cannot write a backup to"),
            "{bad}: {said}"
        );
    }
    assert_eq!(bin::sha(&db), before);
    bin::stop(s).await;
    // Stopped: the CLI opens the data directory itself.
    let stopped = out.path().join("stopped.backup");
    let said = cli_ok(&acme.dir, &["backup", "--to", stopped.to_str().unwrap()]);
    assert!(said.contains("backup of acme"), "{said}");

    for b in [&running, &stopped] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let said = cli_ok(&data, &["restore", b.to_str().unwrap()]);
        assert!(said.contains("restored acme"), "{said}");
        let said = cli_ok(&data, &["check"]);
        assert!(said.contains("all indexes agree"), "{said}");
        let s = bin::start(&data).await.unwrap();
        let restored = acme.inbox(&s, "").await;
        assert_eq!(restored, [id]);
        let (st, v) = acme
            .call(&s, "GET", &format!("/conversations/{id}"), None)
            .await;
        assert_eq!(st, 200, "the admin's token came along: {v}");
        assert_eq!(
            v["messages"][0]["body"], "please add care instructions",
            "{v}"
        );
        bin::stop(s).await;
    }
}

#[test]
fn bad_backups_and_directories_are_refused_and_nothing_changes() {
    let acme = Node::new();
    let out = tempfile::tempdir().unwrap();
    let good = out.path().join("acme.backup");
    // An open invite at the time of the backup.
    cli_ok(
        &acme.dir,
        &[
            "peer",
            "invite",
            "--org",
            "bolt",
            "--public-url",
            "http://127.0.0.1:9",
        ],
    );
    cli_ok(&acme.dir, &["backup", "--to", good.to_str().unwrap()]);
    let m = parley::store::backup::verify(&{
        let c = out.path().join("copy.backup");
        std::fs::copy(&good, &c).unwrap();
        c
    })
    .unwrap();
    assert_eq!(m.tables["invites"], 1, "{m:?}");
    std::fs::remove_file(out.path().join("copy.backup")).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let target = out.path().join("target");
    let refused = |file: &Path, want: &str, extra: &[&str]| {
        let mut args = vec!["restore", file.to_str().unwrap()];
        args.extend_from_slice(extra);
        let (ok, said) = cli(&target, &args);
        assert!(!ok, "restoring {} must fail:\n{said}", file.display());
        assert!(said.contains(want), "expected {want:?} in:\n{said}");
        assert!(
            !target.exists() || files_in(&target).is_empty(),
            "nothing is left in the target: {:?}",
            files_in(&target)
        );
    };
    // Cut short.
    let cut = out.path().join("cut.backup");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    refused(&cut, "damaged or cut short", &[]);
    // Not a backup at all.
    let junk = out.path().join("junk.backup");
    std::fs::write(&junk, b"PK\x03\x04 certainly not a database").unwrap();
    refused(&junk, "is not a Parley backup", &[]);
    let empty = out.path().join("empty.backup");
    std::fs::write(&empty, b"").unwrap();
    refused(&empty, "is not a Parley backup", &[]);
    // A node's own database file is not a backup.
    refused(&acme.db(), "no backup manifest", &[]);
    // Missing.
    refused(&out.path().join("nope.backup"), "nope.backup", &[]);
    // Of another org than the operator expects.
    refused(&good, "is of org acme, not bolt", &["--expect-org", "bolt"]);
    // A flipped byte inside a document.
    let flipped = out.path().join("flipped.backup");
    std::fs::write(&flipped, &bytes).unwrap();
    let n = bin::flip(&flipped, "acme Inc");
    assert!(n > 0);
    refused(&flipped, "damaged", &[]);

    // Backup targets that are not a new or replaceable file outside the data directory.
    std::fs::create_dir_all(acme.dir.join("sub")).unwrap();
    let inside = acme.dir.join("sub/x.backup");
    let missing_dir = out.path().join("no/such/dir/x.backup");
    for (bad, want) in [
        (acme.db(), "inside the node's data directory"),
        (inside, "inside the node's data directory"),
        (std::path::PathBuf::from("/dev/null"), "not a regular file"),
        (out.path().to_path_buf(), "not a regular file"),
        (missing_dir, "its directory does not exist"),
    ] {
        let (ok, said) = cli(&acme.dir, &["backup", "--to", bad.to_str().unwrap()]);
        assert!(!ok && said.contains(want), "{}: {said}", bad.display());
    }
    {
        use std::os::unix::fs::FileTypeExt;
        let m = std::fs::metadata("/dev/null").unwrap();
        assert!(m.file_type().is_char_device(), "/dev/null is left alone");
    }
    // The database is still this node's, whole (opening it to refuse changed its header only).
    let said = cli_ok(&acme.dir, &["check"]);
    assert!(said.contains("all indexes agree"), "{said}");
    let said = cli_ok(&acme.dir, &["user", "list"]);
    assert!(said.contains("admin"), "{said}");

    // Into a directory that holds data: refused, and the data is untouched.
    let before = bin::sha(&acme.db());
    let (ok, said) = cli(&acme.dir, &["restore", good.to_str().unwrap()]);
    assert!(!ok && said.contains("is not empty"), "{said}");
    assert_eq!(bin::sha(&acme.db()), before);
    // The good one restores (into a directory holding only a config file).
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("parley.toml"), "doc_cache = 64\n").unwrap();
    let said = cli_ok(
        &target,
        &["restore", good.to_str().unwrap(), "--expect-org", "acme"],
    );
    assert!(said.contains("restored acme"), "{said}");
    assert!(files_in(&target).contains(&"parley.redb".to_string()));
    assert!(said.contains("revoke again any token"), "{said}");
    // The invite open at the backup does not come back: it may have been used since.
    {
        let db = redb::Database::open(target.join("parley.redb")).unwrap();
        let rtx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let invites = rtx
            .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("invites"))
            .unwrap();
        assert_eq!(redb::ReadableTableMetadata::len(&invites).unwrap(), 0);
    }
    // Restoring again over it is refused.
    let (ok, said) = cli(&target, &["restore", good.to_str().unwrap()]);
    assert!(!ok && said.contains("is not empty"), "{said}");
    // The backup file itself was never changed by any of this.
    assert_eq!(std::fs::read(&good).unwrap(), bytes);
}
