//! A disk with too little room for a file: the upload is refused (507) with nothing kept, a
//! partner's file waits while the node keeps serving, and both go through once space is freed.
//!
//! The nodes' data directories are on a small tmpfs: the one `.ci/run` mounts and names in
//! `PARLEY_TEST_SMALL_FS`, or one this test mounts itself (as root). Without either it says so
//! and passes, except under CI, where it fails: a disk-full test that does not run proves
//! nothing.

mod common;

use std::path::Path;

use common::faults::FaultProxy;
use common::small_fs::small_fs_or_skip;
use common::{TestNode, eventually, random_pdf};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;

fn dir_on(p: &Path) -> tempfile::TempDir {
    tempfile::tempdir_in(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_files_keeps_serving_and_takes_them_once_freed() {
    let Some(fs) = small_fs_or_skip(128) else {
        return;
    };
    let acme = TestNode::start("acme", Role::Retailer).await;
    let proxy = FaultProxy::start(acme.base.trim_start_matches("http://").parse().unwrap()).await;
    let bolt = common::node_behind_at(
        &acme,
        &proxy.url(),
        dir_on(&fs.path),
        "bolt",
        Role::Supplier,
    )
    .await;

    // 40 MB free: a 20 MB file (which wants twice its size and 16 MiB to spare) does not fit.
    let ballast = fs.fill_to(40 << 20);
    let big = random_pdf(20 << 20);
    let (s, v) = bolt.upload("scan.pdf", big.clone()).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("free some space"),
        "{v}"
    );
    // The node keeps serving, and small writes still go through.
    let c = bolt
        .create(
            json!({"kind": "message", "partner": "acme", "subject": "Disk nearly full",
                       "body": "still writing"}),
        )
        .await;
    assert_eq!(c["subject"], "Disk nearly full");

    // A partner's file waits; its message arrives and the file shows as arriving.
    let (s, up) = acme.upload("catalogue.pdf", big.clone()).await;
    assert_eq!(s, StatusCode::CREATED);
    let sha = up["sha256"].as_str().unwrap().to_string();
    let c = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Catalogue",
                       "body": "attached", "attachments": [sha]}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let seen = eventually(30, "the conversation at bolt", || async {
        let (s, v) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        (s == StatusCode::OK).then_some(v)
    })
    .await;
    assert_eq!(seen["messages"][0]["attachments"][0]["state"], "arriving");
    let (s, _) = bolt.get("/api/v1/conversations").await;
    assert_eq!(s, StatusCode::OK, "bolt keeps serving");
    assert!(
        proxy.chunks().is_empty(),
        "nothing of the file is fetched while it cannot be kept"
    );

    // Space freed: the upload goes through, and the partner's file arrives by itself.
    std::fs::remove_file(ballast).unwrap();
    // (Another file than the partner's, which must arrive by sync, not by this upload.)
    let (s, v) = bolt.upload("scan.pdf", random_pdf(20 << 20)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    eventually(90, "the file at bolt once there is room", || async {
        let (_, v) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        (v["messages"][0]["attachments"][0]["state"] == "present").then_some(())
    })
    .await;
    let (s, _, got) = bolt.download(&sha).await;
    assert_eq!(s, StatusCode::OK);
    assert!(got == big);
}
