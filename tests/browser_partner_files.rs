//! A partner's files in a real headless Chromium, on the node that receives them: a picture
//! that arrives from the partner's node is previewed once it is here, without a reload; a file
//! over this node's limit is named with "Too large for this node", never linked; a file still
//! arriving is named with "Arriving…", never linked.

mod common;
#[path = "browser/files.rs"]
mod files;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use common::{TestNode, eventually, random_pdf};
use files::{png, sha_hex, sign_in};
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::json;
use wd::Driver;

/// A partner's files as this node shows them: a picture that arrives from the partner's node
/// is previewed once it is here (the page updates by itself), and a file over this node's
/// limit is named with "Too large for this node", never linked or shown as a broken picture.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partners_files_show_as_they_arrive_or_as_too_large() {
    let Some(tools) = tools_or_skip() else { return };
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt =
        TestNode::start_configured("bolt", Role::Supplier, "[attachments]\nmax_mb = 1\n").await;
    common::pair(&acme, &bolt).await;
    let photo = png(40, 30);
    let scan = random_pdf(1024 * 1024 + 4096);
    let (s, p) = acme.upload("dent.png", photo.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let (s, big) = acme.upload("full%20scan.pdf", scan.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{big}");
    let conv = acme
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Dent photos",
                       "body": "", "attachments": [p["sha256"], big["sha256"]]}),
        )
        .await;
    let id = conv["id"].as_str().unwrap().to_string();
    eventually(30, "the conversation at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = bolt.base.clone();
    sign_in(&b, &base).await;
    b.goto(&format!("{base}/c/{id}")).await;
    b.wait_contains("#conversation-subject", "Dent photos")
        .await;

    step("the picture is previewed once it has arrived, without a reload");
    let pic = format!("#thread li[data-sha='{}']", sha_hex(&photo));
    b.wait_true(
        &format!(
            "const i = document.querySelector(\"{pic} img.file-thumb\"); return !!i && i.complete && i.naturalWidth === 40"
        ),
        json!([]),
        "the arrived picture to render",
    )
    .await;

    step("the file over this node's limit is named, not linked");
    let too = format!("#thread li[data-sha='{}']", sha_hex(&scan));
    b.wait_contains(&too, "Too large for this node").await;
    let shown = b
        .exec(
            &format!(
                "const li = document.querySelector(\"{too}\"); return [li.dataset.state, li.querySelectorAll('a, img').length, li.textContent]"
            ),
            json!([]),
        )
        .await;
    assert_eq!(shown[0], "too_large", "{shown}");
    assert_eq!(shown[1], 0, "no link, no picture: {shown}");
    assert!(
        shown[2].as_str().unwrap().contains("full scan.pdf")
            && shown[2].as_str().unwrap().contains("1.0 MB"),
        "{shown}"
    );
    let (_, c) = bolt.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(
        c["messages"][0]["attachments"][1]["state"], "too_large",
        "{c}"
    );
    shoot(&b, "partner-files").await;
    axe(&b, "a partner's files, one too large").await;

    step("a file still arriving is named with Arriving…, not linked (as the thread draws it)");
    // Which state a fast transfer is caught in cannot be chosen from outside, so the thread's
    // own drawing code is given a file in the `arriving` state the node reports.
    let arriving = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             import('/files.js').then((m) => {
               const ul = m.messageFiles([{ sha256: arguments[0], size: 2048, name: 'late <b>.png', type: 'image/png', state: 'arriving', preview: true }]);
               done([ul.querySelectorAll('a, img').length, ul.textContent, ul.querySelectorAll('b').length]);
             }).catch((e) => done(String(e)));",
            json!([sha_hex(b"late")]),
        )
        .await;
    assert_eq!(arriving[0], 0, "{arriving}");
    assert!(
        arriving[1].as_str().unwrap().contains("late <b>.png")
            && arriving[1].as_str().unwrap().contains("Arriving\u{2026}"),
        "{arriving}"
    );
    assert_eq!(arriving[2], 0, "a name is text, never markup: {arriving}");
    b.close().await;
}
