//! The team inbox in a real headless Chromium against a real node: assign a task, write an
//! internal note and see it set apart as internal, bulk-resolve from a filtered view, export
//! the view as CSV, and find a conversation by a word only its message body holds.

mod common;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use common::TestNode;
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wd::Driver;

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_shares_the_inbox() {
    let Some(tools) = tools_or_skip() else { return };
    let n = TestNode::start("acme", Role::Retailer).await;
    let (s, _) = n
        .post(
            "/api/v1/users",
            json!({"name": "ann", "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = n
        .put(
            "/api/v1/users/ann/display-name",
            json!({"display_name": "Ann Lee"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let carton = n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Carton sizes for PO-88", "body": "Please send the carton sizes"}))
        .await;
    let labels = n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Print the labels", "body": "Labels for the March run"}))
        .await;
    let photos = n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Spring photos", "body": "The teapot pictures are blurry"}))
        .await;

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = n.base.clone();
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;

    step("assign the task to a colleague, shown by display name");
    b.goto(&format!("{base}/c/{}", id_of(&carton))).await;
    b.wait_contains("#conversation-subject", "Carton sizes")
        .await;
    b.set_value("#assignee-select", "ann").await;
    b.wait_contains("#toast", "Assigned to Ann Lee").await;
    let (_, c) = n
        .get(&format!("/api/v1/conversations/{}", id_of(&carton)))
        .await;
    assert_eq!(c["assignee"], "ann");

    step("write an internal note: it is in the thread, labelled and styled as internal");
    b.type_into("#note-body", "They shipped late twice; chase on Monday")
        .await;
    b.click("#note-send").await;
    b.wait_contains("#thread li.note.internal", "chase on Monday")
        .await;
    let label = b
        .text("#thread li.note.internal .note-label")
        .await
        .to_lowercase();
    assert!(
        label.contains("internal") && label.contains("not visible to bolt co"),
        "{label}"
    );
    let style = b
        .exec(
            "const li = document.querySelector('#thread li.note.internal'); const s = getComputedStyle(li);
             const msg = getComputedStyle(document.querySelector('#thread li.mine'));
             return [s.borderTopStyle, s.backgroundColor, msg.backgroundColor]",
            json!([]),
        )
        .await;
    assert_eq!(style[0], "dashed", "{style}");
    assert_ne!(
        style[1], style[2],
        "a note does not look like a message: {style}"
    );
    let (_, c) = n
        .get(&format!("/api/v1/conversations/{}", id_of(&carton)))
        .await;
    assert_eq!(
        c["notes"][0]["body"],
        "They shipped late twice; chase on Monday"
    );
    assert_eq!(
        c["messages"].as_array().unwrap().len(),
        1,
        "the note is no message"
    );
    shoot(&b, "team-note").await;
    axe(&b, "conversation with an internal note").await;

    step("the Inbox shows the assignee and the counts of Unassigned and Assigned to me");
    b.goto(&format!("{base}/")).await;
    b.wait_contains("#inbox-list", "Carton sizes").await;
    let cell = b
        .exec(
            "return document.querySelector(`tr[data-id='${arguments[0]}'] td.col-assignee`).textContent",
            json!([id_of(&carton)]),
        )
        .await;
    assert_eq!(cell, "Ann Lee");
    b.wait_text("#folder-count-unassigned", "the Unassigned count", |t| {
        t == "2"
    })
    .await;
    b.wait_text("#folder-count-inbox", "the Inbox count", |t| t == "3")
        .await;

    step("bulk-resolve every task of a filtered view");
    b.set_value("#filter-kind", "task").await;
    b.wait_text("#inbox-status", "the filtered list", |t| t.contains("of 2"))
        .await;
    b.click("#bulk-all").await;
    b.wait_contains("#bulk-count", "All 2 matching").await;
    axe(&b, "inbox with the bulk bar").await;
    b.click("#bulk-resolve").await;
    b.wait_contains("#toast", "2 changed").await;
    for (c, state) in [
        (&carton, "resolved"),
        (&labels, "resolved"),
        (&photos, "open"),
    ] {
        let (_, v) = n.get(&format!("/api/v1/conversations/{}", id_of(c))).await;
        assert_eq!(v["state"], state, "{}", v["subject"]);
    }

    step("export the view as CSV, with the session cookie");
    b.goto(&format!("{base}/?folder=resolved")).await;
    b.wait_contains("#inbox-list", "Carton sizes").await;
    let csv = b
        .exec_async(
            "const done = arguments[arguments.length - 1];
             const a = document.querySelector('#export-csv');
             fetch(a.href, { credentials: 'same-origin' }).then((r) => r.text().then((t) => done([r.status, r.headers.get('content-type'), t])));",
            json!([]),
        )
        .await;
    assert_eq!(csv[0], 200, "{csv}");
    assert!(csv[1].as_str().unwrap().starts_with("text/csv"), "{csv}");
    let text = csv[2].as_str().unwrap();
    assert!(
        text.contains("Carton sizes for PO-88") && text.contains("Print the labels"),
        "{text}"
    );
    assert!(
        !text.contains("Spring photos"),
        "only the view's rows: {text}"
    );
    assert!(
        !text.contains("chase on Monday"),
        "no note in an export: {text}"
    );

    step("search a word that only a message body holds");
    b.goto(&format!("{base}/")).await;
    b.wait("#search").await;
    b.type_into("#search", "teapot").await;
    b.press(&["Enter"]).await;
    b.wait_contains("main h1", "Search: teapot").await;
    b.wait_contains("#inbox-list", "Spring photos").await;
    let rows = b
        .exec(
            "return document.querySelectorAll('#inbox-list tbody tr').length",
            json!([]),
        )
        .await;
    assert_eq!(rows, 1);
    assert!(
        b.console_errors().await.is_empty(),
        "{:?}",
        b.console_errors().await
    );
    b.close().await;
}
