//! A full disk refuses every write with a 507 that says what is full and that nothing was
//! saved, while reads keep working; once space is freed the same writes go through without a
//! restart, and `parley check` finds nothing wrong.
//!
//! The story this guards against: redb latches the first I/O error of a database handle, so a
//! single commit that met ENOSPC used to make every later read *and* write of the node fail
//! until it was restarted. Two layers prevent that, and each has its test: the writer refuses
//! a batch while the disk is below the reserve (redb never meets ENOSPC), and, with the
//! reserve set to 0 so that redb does meet it, the store reopens its database.
//!
//! The data directory is on a small tmpfs: the one named in `PARLEY_TEST_SMALL_FS`, or one this
//! test mounts (as root). Without either it says so and passes, except under CI, where it
//! fails: a disk-full test that does not run proves nothing.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bin::{Server, cli, cli_ok};
use common::small_fs::{SmallFs, small_fs_or_skip};
use serde_json::{Value, json};

/// A node's data directory on `fs`, set up through the CLI: (dir, admin token).
fn node_on(fs: &SmallFs, config: &str) -> (PathBuf, String) {
    let dir = fs.path.join("data");
    let out = cli_ok(
        &dir,
        &[
            "init",
            "--org-id",
            "acme",
            "--org-name",
            "Acme",
            "--role",
            "retailer",
        ],
    );
    let token = out
        .lines()
        .find_map(|l| l.split("created API token for admin (shown once): ").nth(1))
        .expect("a token from parley init")
        .trim()
        .to_string();
    cli_ok(
        &dir,
        &[
            "partner", "add", "--id", "bolt", "--name", "Bolt", "--role", "supplier",
        ],
    );
    std::fs::write(dir.join("parley.toml"), config).unwrap();
    (dir, token)
}

struct Api {
    http: reqwest::Client,
    token: String,
}

impl Api {
    fn new(token: String) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            token,
        }
    }

    async fn call(
        &self,
        s: &Server,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::bin::call_as(&self.http, Some(&self.token), s, method, path, body).await
    }

    async fn create(&self, s: &Server, subject: &str) -> (u16, Value) {
        let body =
            json!({"kind": "message", "partner": "bolt", "subject": subject, "body": "first"});
        self.call(s, "POST", "/conversations", Some(body)).await
    }

    async fn reply(&self, s: &Server, id: &str, body: &str) -> (u16, Value) {
        let path = format!("/conversations/{id}/messages");
        self.call(s, "POST", &path, Some(json!({"body": body})))
            .await
    }

    async fn messages(&self, s: &Server, id: &str) -> usize {
        let (st, v) = self
            .call(s, "GET", &format!("/conversations/{id}"), None)
            .await;
        assert_eq!(st, 200, "a conversation reads on a full disk: {v}");
        v["messages"].as_array().unwrap().len()
    }

    async fn subjects(&self, s: &Server) -> Vec<String> {
        let (st, v) = self.call(s, "GET", "/conversations?limit=200", None).await;
        assert_eq!(st, 200, "the inbox reads on a full disk: {v}");
        let mut all: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["subject"].as_str().unwrap().to_string())
            .collect();
        all.sort();
        all
    }
}

fn assert_disk_full(what: &str, status: u16, v: &Value) {
    assert_eq!(status, 507, "{what}: {v}");
    assert_eq!(v["error"], "disk_full", "{what}: {v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    for want in ["disk", "full", "nothing was saved", "free some space"] {
        assert!(
            detail.contains(want),
            "{what}: {want:?} missing from {detail}"
        );
    }
}

async fn stop_and_check(s: Server, dir: &Path) {
    common::bin::stop(s).await;
    let (ok, out) = cli(dir, &["check"]);
    assert!(ok && out.contains("all indexes agree"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_reserve_writes_are_refused_reads_work_and_writes_resume() {
    let Some(fs) = small_fs_or_skip(128) else {
        return;
    };
    // The default reserve: 5 % of this 128 MiB disk (6.4 MiB), as it is smaller than 64 MiB.
    let (dir, token) = node_on(&fs, "");
    let api = Api::new(token);
    let s = common::bin::start(&dir).await.unwrap();
    let (st, c) = api.create(&s, "Before").await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(api.reply(&s, &id, "a reply").await.0, 201);
    let (st, v) = api
        .call(&s, "POST", &format!("/conversations/{id}/unread"), None)
        .await;
    assert_eq!(st, 200, "{v}");

    let filler = fs.fill_to(2 << 20);
    let (st, v) = api.create(&s, "Refused").await;
    assert_disk_full("create", st, &v);
    let (st, v) = api.reply(&s, &id, "refused reply").await;
    assert_disk_full("reply", st, &v);
    let read = format!("/conversations/{id}/read");
    let (st, v) = api.call(&s, "POST", &read, None).await;
    assert_disk_full("mark read", st, &v);

    // Reads work, and show nothing of the refused writes.
    assert_eq!(api.subjects(&s).await, ["Before"]);
    assert_eq!(api.messages(&s, &id).await, 2);
    let (st, v) = api
        .call(&s, "GET", "/conversations?folder=unread", None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 1, "still unread: {v}");

    // Space freed: the same writes go through, without a restart.
    std::fs::remove_file(filler).unwrap();
    let (st, v) = api.create(&s, "After").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(api.reply(&s, &id, "a second reply").await.0, 201);
    let (st, v) = api.call(&s, "POST", &read, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(api.subjects(&s).await, ["After", "Before"]);
    assert_eq!(api.messages(&s, &id).await, 3);
    stop_and_check(s, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_meets_enospc_is_refused_and_the_database_reopens() {
    let Some(fs) = small_fs_or_skip(128) else {
        return;
    };
    // No reserve: nothing stops redb from meeting a full disk in the middle of a commit.
    let (dir, token) = node_on(&fs, "disk_reserve_mb = 0\n");
    let api = Api::new(token);
    let s = common::bin::start(&dir).await.unwrap();
    let (st, c) = api.create(&s, "Thread").await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();

    let filler = fs.fill_to(256 << 10);
    // Replies of 60 KiB until one meets the full disk; each acknowledged one counts.
    let body = "x".repeat(60 << 10);
    let mut saved = 1;
    let mut refused = None;
    for _ in 0..400 {
        let (st, v) = api.reply(&s, &id, &body).await;
        match st {
            201 => saved += 1,
            _ => {
                refused = Some((st, v));
                break;
            }
        }
    }
    let (st, v) = refused.expect("a full disk refused a reply");
    assert_disk_full("reply meeting ENOSPC", st, &v);

    // Reads work after the reopen, and hold every acknowledged reply and nothing else.
    assert_eq!(api.subjects(&s).await, ["Thread"]);
    assert_eq!(api.messages(&s, &id).await, saved);

    std::fs::remove_file(filler).unwrap();
    let (st, v) = api.reply(&s, &id, "after freeing space").await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api.create(&s, "Another").await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(api.messages(&s, &id).await, saved + 1);
    assert_eq!(api.subjects(&s).await, ["Another", "Thread"]);
    stop_and_check(s, &dir).await;
}

/// A partner's changes while the disk is full: not taken (nothing of them lands), the link is
/// not torn down and redialled in a loop, and once space is freed they arrive by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_changes_wait_for_space_without_dropping_the_link() {
    use common::faults::FaultProxy;
    use common::{TestNode, eventually};
    use parley::domain::Role;
    use reqwest::StatusCode;

    let Some(fs) = small_fs_or_skip(128) else {
        return;
    };
    let acme = TestNode::start("acme", Role::Retailer).await;
    let proxy = FaultProxy::start(acme.base.trim_start_matches("http://").parse().unwrap()).await;
    let bolt = common::node_behind_at(
        &acme,
        &proxy.url(),
        tempfile::tempdir_in(&fs.path).unwrap(),
        "bolt",
        Role::Supplier,
    )
    .await;
    let first = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Before", "body": "hi"}))
        .await;
    let first_id = first["id"].as_str().unwrap().to_string();
    eventually(30, "the first conversation at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{first_id}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let link = |v: &Value| (v[0]["connected"].clone(), v[0]["connected_since"].clone());
    let (_, peers) = bolt.get("/api/v1/peers").await;
    let before = link(&peers);
    assert_eq!(before.0, true, "{peers}");

    let filler = fs.fill_to(2 << 20);
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "While full", "body": "x"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    // The conversation went down the link to bolt...
    let doc = uuid::Uuid::parse_str(&id).unwrap().into_bytes();
    eventually(30, "the new conversation on the link", || async {
        proxy
            .records_down()
            .iter()
            .any(|r| matches!(r, parley_sync::Record::Sync { doc: d, .. } if d.0 == doc))
            .then_some(())
    })
    .await;
    // ... and bolt, full, took nothing of it, kept serving reads, and kept the same link.
    for _ in 0..20 {
        let (s, v) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "nothing lands on a full disk: {v}"
        );
        let (s, peers) = bolt.get("/api/v1/peers").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(link(&peers), before, "the link was not dropped: {peers}");
        assert!(peers[0]["last_error"].is_null(), "{peers}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    std::fs::remove_file(filler).unwrap();
    let got = eventually(
        90,
        "the conversation at bolt once there is room",
        || async {
            let (s, v) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
            (s == StatusCode::OK).then_some(v)
        },
    )
    .await;
    assert_eq!(got["subject"], "While full");
}
