//! The Inbox as a customer-care person uses it all day, in a real headless Chromium against
//! real nodes: columns that fit, sort, folders that hide nothing, search across folders,
//! drafts that survive, the Options menu, task state, keyboard use, the offline banner, and
//! an axe-core check of every page. The second test pairs two nodes: what waits for an
//! absent partner, "not yet delivered", a partner's reply reopening a resolved conversation,
//! and changes that crossed while the nodes were apart.

mod common;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use common::{TestNode, eventually, pair};
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wd::{Driver, Session};

async fn sign_in(b: &Session, base: &str) {
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;
}

/// Subjects of the rows listed, top to bottom.
async fn subjects(b: &Session) -> Vec<String> {
    let v = b
        .exec(
            "return [...document.querySelectorAll('#inbox-list tbody td.subject a[href^=\"/c/\"]')].map((a) => a.textContent.replace(/^Unread: /, ''))",
            json!([]),
        )
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

async fn wait_subjects(b: &Session, what: &str, f: impl Fn(&[String]) -> bool) -> Vec<String> {
    let t = std::time::Instant::now();
    loop {
        let s = subjects(b).await;
        if f(&s) {
            return s;
        }
        assert!(
            t.elapsed() < wd::WAIT,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn open_folder(b: &Session, id: &str, title: &str) {
    b.click(&format!("#folder-{id}")).await;
    b.wait_contains("main h1", title).await;
    b.wait("#inbox-list").await;
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_in_a_days_use() {
    let Some(tools) = tools_or_skip() else { return };
    let mut n = TestNode::start("acme", Role::Retailer).await;
    let (_, t) = n.post("/api/v1/tokens", json!({"name": "erp"})).await;
    let erp = t["token"].as_str().unwrap().to_string();
    let long_ref = format!("REF-{}", "7".repeat(60));
    let long_label = "Stainless steel kettle with a very long description that goes on and on";
    let soon = n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Ship PO-7781 labels", "due_date": "2031-03-10",
            "reference_id": long_ref, "topic": {"kind": "item", "ref": "SKU-LONG-1234567890-ABCDEFGHIJ", "label": long_label}}))
        .await;
    let late = n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Overdue carton count", "due_date": "2020-01-02"}))
        .await;
    let done = n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Finished label task"}))
        .await;
    let (s, _) = n
        .put(
            &format!("/api/v1/conversations/{}/progress", id_of(&done)),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let gone = n
        .create(
            json!({"kind": "message", "partner": "bolt", "subject": "Returned catalogue kettles"}),
        )
        .await;
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/resolve", id_of(&gone)),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // From the ERP (no user): unread for the person signing in.
    let (s, spring) = n
        .call(
            "POST",
            "/api/v1/conversations",
            Some(json!({"kind": "message", "partner": "bolt", "subject": "Spring catalogue photos", "body": "Attached on the share."})),
            Some(&erp),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{spring}");

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = n.base.clone();
    b.goto(&format!("{base}/")).await;
    b.wait("#login-name").await;
    axe(&b, "sign-in").await;
    sign_in(&b, &base).await;

    step("at 1280×1024 every column of the Inbox is on screen; long cells are cut with a tooltip");
    b.wait_contains("#inbox-list", "Ship PO-7781 labels").await;
    let outside = b
        .exec(
            "const w = window.innerWidth; const bad = [];
             for (const el of document.querySelectorAll('#inbox-list th, #inbox-list tbody tr:first-child td')) {
               const r = el.getBoundingClientRect();
               if (r.left < 0 || r.right > w || r.width < 8) bad.push(el.textContent.slice(0, 30) + ' ' + r.left + '-' + r.right);
             }
             const wrap = document.querySelector('#inbox-list .table-wrap');
             if (wrap.scrollWidth > wrap.clientWidth) bad.push('the list scrolls sideways: ' + wrap.scrollWidth + ' > ' + wrap.clientWidth);
             if (document.documentElement.scrollWidth > w) bad.push('the page scrolls sideways');
             return bad;",
            json!([]),
        )
        .await;
    assert_eq!(outside, json!([]), "columns outside the viewport");
    let heads = b.text("#inbox-list thead").await.to_lowercase();
    for col in ["due", "progress", "state", "last activity"] {
        assert!(heads.contains(col), "{col} missing in {heads}");
    }
    let cut = b
        .exec(
            "const td = document.querySelector(`tr[data-id='${arguments[0]}'] td.col-ref`);
             return [td.title, td.scrollWidth > td.clientWidth]",
            json!([id_of(&soon)]),
        )
        .await;
    assert_eq!(
        cut,
        json!([long_ref, true]),
        "a long Reference ID is cut, full text on hover"
    );
    let topic_title = b
        .exec(
            "return document.querySelector(`tr[data-id='${arguments[0]}'] td.col-topic`).title",
            json!([id_of(&soon)]),
        )
        .await;
    assert!(
        topic_title.as_str().unwrap().contains(long_label),
        "{topic_title}"
    );
    // Progress and state are separate columns.
    let row = b
        .exec(
            "const r = document.querySelector(`tr[data-id='${arguments[0]}']`);
             return [r.querySelector('.col-progress').textContent, r.querySelector('.col-state').textContent]",
            json!([id_of(&done)]),
        )
        .await;
    assert_eq!(row, json!(["Completed", "Open"]));
    shoot(&b, "../../target/inbox-1280.png").await;
    axe(&b, "Inbox").await;

    step("sort by due date, then by last activity");
    b.click("#sort-due").await;
    let by_due = wait_subjects(&b, "due-date order", |s| {
        s.first().map(String::as_str) == Some("Overdue carton count")
    })
    .await;
    assert_eq!(by_due[1], "Ship PO-7781 labels", "{by_due:?}");
    assert!(b.url().await.contains("sort=due"));
    b.click("#sort-activity").await;
    wait_subjects(&b, "activity order", |s| {
        s.first().map(String::as_str) == Some("Spring catalogue photos")
    })
    .await;

    step("the header's unread count is what the Unread view lists, and the tab title shows it");
    let count = b
        .wait_text("#unread-count", "a count", |t| !t.is_empty())
        .await;
    open_folder(&b, "unread", "Unread").await;
    let listed = wait_subjects(&b, "the unread list", |s| !s.is_empty()).await;
    assert_eq!(listed.len().to_string(), count, "{listed:?}");
    let status = b.text("#inbox-status").await;
    assert!(status.ends_with(&format!("of {count}")), "{status}");
    let title = b.exec("return document.title", json!([])).await;
    assert_eq!(title, json!(format!("({count}) Parley")));
    axe(&b, "Unread").await;

    step("finished tasks leave Tasks and Action required");
    open_folder(&b, "tasks", "Tasks").await;
    let tasks = wait_subjects(&b, "tasks", |s| s.len() == 2).await;
    assert!(
        !tasks.iter().any(|s| s == "Finished label task"),
        "{tasks:?}"
    );
    open_folder(&b, "action", "Action required").await;
    let action = wait_subjects(&b, "action required", |s| {
        s.iter().any(|x| x == "Overdue carton count")
    })
    .await;
    assert!(
        !action.iter().any(|s| s == "Finished label task"),
        "{action:?}"
    );

    step("search looks in every folder and marks each result with its folder");
    b.type_into("#search", "catalogue").await;
    b.press(&["Enter"]).await;
    b.wait_contains("main h1", "Search").await;
    let found = wait_subjects(&b, "both results", |s| s.len() == 2).await;
    assert!(
        found.contains(&"Returned catalogue kettles".to_string()),
        "{found:?}"
    );
    let marks = b
        .exec(
            "return [...document.querySelectorAll('#inbox-list tbody tr')].map((r) => r.querySelector('td.subject a').textContent.replace(/^Unread: /, '') + ': ' + r.querySelector('.badge.folder').textContent).sort()",
            json!([]),
        )
        .await;
    assert_eq!(
        marks,
        json!([
            "Returned catalogue kettles: Resolved",
            "Spring catalogue photos: Inbox"
        ])
    );
    axe(&b, "search results").await;
    // Clearing the search goes back to the folder it started from.
    b.click("#search-clear").await;
    b.wait_contains("main h1", "Action required").await;
    b.click("#folder-inbox").await;
    b.wait_contains("main h1", "Inbox").await;

    step(
        "the Options menu: Esc closes it and not the window; outside click and a choice close it; it covers nothing",
    );
    b.click("#compose-button").await;
    b.wait("#compose").await;
    axe(&b, "New Conversation").await;
    b.click("#compose-options").await;
    b.wait("#compose-options-menu").await;
    b.press(&["Escape"]).await;
    b.wait_gone("#compose-options-menu").await;
    assert!(
        b.find("#compose").await.is_some(),
        "Esc closed New Conversation"
    );
    b.click("#compose-options").await;
    b.wait("#compose-options-menu").await;
    b.click("#compose-subject").await;
    b.wait_gone("#compose-options-menu").await;
    b.click("#compose-options").await;
    b.click("#opt-reference-id").await;
    b.wait_gone("#compose-options-menu").await;
    assert_eq!(
        b.focused().await,
        "compose-reference-id",
        "a choice moves to its field"
    );
    // An error on the form, then the menu open over it: nothing may be covered.
    b.set_value("#compose-partner", "bolt").await;
    b.type_into("#compose-subject", "Pallet heights").await;
    b.click("#compose-send").await;
    b.wait_contains("#compose-error", "Fill in the Reference ID")
        .await;
    b.click("#compose-options").await;
    b.wait("#compose-options-menu").await;
    let covers = b
        .exec(
            "const m = document.getElementById('compose-options-menu').getBoundingClientRect();
             const hit = [];
             for (const el of document.querySelectorAll('#compose input:not([type=checkbox]):not([type=radio]), #compose select, #compose textarea, #compose-error')) {
               if (el.closest('#compose-options-menu') || el.offsetParent === null) continue;
               const r = el.getBoundingClientRect();
               if (r.left < m.right && m.left < r.right && r.top < m.bottom && m.top < r.bottom) hit.push(el.id);
             }
             return hit;",
            json!([]),
        )
        .await;
    assert_eq!(
        covers,
        json!([]),
        "the open Options menu covers a field or the error"
    );
    b.press(&["Escape"]).await;
    b.wait_gone("#compose-options-menu").await;

    step("a filled form asks before closing, and the draft survives closing and a reload");
    b.type_into("#compose-subject", "Draft about pallets").await;
    b.type_into("#compose-body", "Half a thought").await;
    b.press(&["Escape"]).await;
    b.wait("#confirm").await;
    assert!(b.find("#compose").await.is_some());
    b.click("#confirm-back").await;
    b.wait_gone("#confirm").await;
    assert_eq!(
        b.prop("#compose-subject", "value").await,
        "Draft about pallets"
    );
    b.click("#compose-cancel").await;
    b.click("#confirm-keep").await;
    b.wait_gone("#compose").await;
    b.goto(&format!("{base}/")).await;
    b.click("#compose-button").await;
    b.wait("#compose").await;
    assert_eq!(
        b.prop("#compose-subject", "value").await,
        "Draft about pallets"
    );
    assert_eq!(b.prop("#compose-body", "value").await, "Half a thought");
    b.click("#compose-cancel").await;
    b.click("#confirm-discard").await;
    b.wait_gone("#compose").await;
    b.click("#compose-button").await;
    b.wait("#compose").await;
    assert_eq!(b.prop("#compose-subject", "value").await, "");

    step("a due date in the past is warned about before sending");
    b.click("#compose input[name=kind][value=task]").await;
    b.set_value("#compose-partner", "bolt").await;
    b.type_into("#compose-subject", "Count returns").await;
    b.click("#compose-options").await;
    b.click("#opt-due-date").await;
    b.set_value("#compose-due-date", "2020-05-05").await;
    b.wait_contains("#compose-due-warning", "in the past").await;
    b.click("#compose-send").await;
    b.wait_contains("#confirm", "due date in the past").await;
    b.click("#confirm-change").await;
    b.wait_gone("#confirm").await;
    assert!(b.find("#compose").await.is_some(), "nothing was sent");
    let (_, v) = n.get("/api/v1/conversations?q=Count%20returns").await;
    assert_eq!(v["total"], 0);
    b.set_value("#compose-due-date", "2031-05-05").await;
    b.wait_text("#compose-due-warning", "no warning", |t| t.is_empty())
        .await;
    b.press(&["Control", "Enter"]).await;
    b.wait_gone("#compose").await;
    b.wait_contains("#inbox-list", "Count returns").await;

    step("keyboard: ? lists shortcuts, c composes, / searches, j/k move, Enter opens");
    b.click("main h1").await;
    b.press(&["?"]).await;
    let list = b.wait_contains("#shortcuts", "Keyboard shortcuts").await;
    for k in ["Search", "Next conversation", "Resolve"] {
        assert!(list.contains(k), "{list}");
    }
    axe(&b, "shortcuts").await;
    b.press(&["Escape"]).await;
    b.wait_gone("#shortcuts").await;
    b.press(&["c"]).await;
    b.wait("#compose").await;
    b.press(&["Escape"]).await;
    b.wait_gone("#compose").await;
    b.press(&["/"]).await;
    assert_eq!(b.focused().await, "search");
    b.click("main h1").await;
    b.press(&["j"]).await;
    b.press(&["j"]).await;
    b.press(&["k"]).await;
    let first = subjects(&b).await[0].clone();
    let focused_text = b
        .exec(
            "return document.activeElement.textContent.replace(/^Unread: /, '')",
            json!([]),
        )
        .await;
    assert_eq!(focused_text, json!(first), "j, j, k: back on the first row");
    b.press(&["Enter"]).await;
    b.wait("#reply-body").await;
    assert_eq!(b.text("#conversation-subject").await, first);

    step("the first conversation is two key presses from a fresh page");
    b.goto(&format!("{base}/")).await;
    b.wait("#inbox-list tbody tr").await;
    b.press(&["Tab"]).await;
    assert_eq!(b.focused().await, "skip-list");
    b.press(&["Enter"]).await;
    let href = b
        .exec(
            "return document.activeElement.getAttribute('href') || ''",
            json!([]),
        )
        .await;
    assert!(href.as_str().unwrap().starts_with("/c/"), "{href}");

    step(
        "reply with Ctrl+Enter: the focus stays in the reply box; a reply draft survives a reload",
    );
    b.goto(&format!("{base}/c/{}", id_of(&late))).await;
    b.wait("#reply-body").await;
    b.type_into("#reply-body", "Counting on Thursday.").await;
    b.press(&["Control", "Enter"]).await;
    b.wait_contains("#thread", "Counting on Thursday.").await;
    assert_eq!(b.prop("#reply-body", "value").await, "");
    assert_eq!(b.focused().await, "reply-body");
    b.type_into("#reply-body", "Second half, not sent").await;
    b.goto(&format!("{base}/c/{}", id_of(&late))).await;
    b.wait("#reply-body").await;
    assert_eq!(
        b.prop("#reply-body", "value").await,
        "Second half, not sent"
    );
    axe(&b, "conversation").await;

    step("Cancel task asks, with an optional reason sent as a message");
    b.click("#progress-cancel").await;
    b.wait("#cancel-reason").await;
    b.type_into("#cancel-reason", "Counted by the warehouse already")
        .await;
    b.click("#confirm-yes").await;
    b.wait_contains("#conversation-progress", "Cancelled").await;
    b.wait_contains(
        "#thread",
        "Task cancelled: Counted by the warehouse already",
    )
    .await;
    assert_eq!(b.text("#conversation-state").await, "Open");

    step("Mark completed offers to resolve as well");
    b.goto(&format!("{base}/c/{}", id_of(&soon))).await;
    b.click("#progress-complete").await;
    b.wait("#complete-resolve").await;
    assert_eq!(b.prop("#complete-resolve", "checked").await, true);
    b.click("#confirm-yes").await;
    b.wait_contains("#conversation-state", "Resolved").await;
    assert_eq!(b.text("#conversation-progress").await, "Completed");
    let (_, v) = n
        .get(&format!("/api/v1/conversations/{}", id_of(&soon)))
        .await;
    assert_eq!(
        (v["state"].as_str(), v["progress"].as_str()),
        (Some("resolved"), Some("completed"))
    );

    step("e resolves the open conversation, after asking");
    b.goto(&format!("{base}/c/{}", id_of(&spring))).await;
    b.wait("#resolve-button").await;
    b.click("main h1").await;
    b.press(&["e"]).await;
    b.wait("#confirm").await;
    b.click("#confirm-yes").await;
    b.wait_contains("#conversation-state", "Resolved").await;

    step("in a list, e resolves the selected conversation, after asking");
    b.goto(&format!("{base}/")).await;
    b.wait("#inbox-list tbody tr").await;
    b.click("main h1").await;
    b.press(&["j"]).await;
    let picked = subjects(&b).await[0].clone();
    b.press(&["e"]).await;
    b.wait_contains("#confirm", &picked).await;
    b.click("#confirm-yes").await;
    wait_subjects(&b, "the resolved row gone from the Inbox", |s| {
        !s.contains(&picked)
    })
    .await;

    step("topics: readable field names, an empty state for people, the bulk notice stays");
    for (r, t, p, l) in [
        ("SKU-A", "Kettle A", "12.50", "5"),
        ("SKU-B", "Kettle B", "13.00", "6"),
    ] {
        let (s, v) = n
            .post("/api/v1/topics", json!({"kind": "item", "ref": r, "title": t, "fields": {"unit_price": p, "leadTime": l}}))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    b.goto(&format!("{base}/topics/return")).await;
    b.wait("main .empty").await;
    let text = b.text("main .empty").await;
    assert!(!text.contains("/api/"), "{text}");
    axe(&b, "empty list").await;
    b.goto(&format!("{base}/topics/item")).await;
    // Headings are shown in capitals; their text is the label.
    b.wait("#topic-list thead").await;
    let head = b
        .exec(
            "return document.querySelector('#topic-list thead').textContent",
            json!([]),
        )
        .await;
    let head = head.as_str().unwrap_or_default();
    assert!(
        head.contains("Unit price") && head.contains("Lead time"),
        "{head}"
    );
    axe(&b, "item list").await;
    b.click("input[aria-label='Select SKU-A']").await;
    b.click("input[aria-label='Select SKU-B']").await;
    b.click("#start-conversation").await;
    b.wait("#compose").await;
    b.set_value("#compose-partner", "bolt").await;
    b.type_into("#compose-subject", "Lead times").await;
    b.click("#compose-send").await;
    b.wait_gone("#compose").await;
    b.wait_contains("#started-status", "2 conversations started")
        .await;
    assert_eq!(b.text("#selection-status").await, "");
    let checked = b
        .exec(
            "return document.querySelectorAll('#topic-list input:checked').length",
            json!([]),
        )
        .await;
    assert_eq!(checked, json!(0), "the rows are cleared after sending");
    // The notice outlives the passing toast.
    b.wait_true(
        "return !document.getElementById('toast').classList.contains('show')",
        json!([]),
        "the toast to pass",
    )
    .await;
    assert!(
        b.text("#started-status")
            .await
            .contains("2 conversations started")
    );
    b.click("#topic-list a[href='/topics/item/SKU-A']").await;
    let facts = b.wait_contains("main .facts", "Unit price").await;
    assert!(!facts.contains("unit_price"), "{facts}");
    axe(&b, "item detail").await;
    b.goto(&format!("{base}/peers")).await;
    b.wait_contains("main h1", "Partners").await;
    axe(&b, "Partners").await;
    // A new invite code has a Copy button that puts exactly the code on the clipboard.
    b.cdp(
        "Browser.grantPermissions",
        json!({"permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"], "origin": base}),
    )
    .await;
    b.click("#invite-own-site").await;
    b.click("#make-invite").await;
    let code = b.wait_contains("#invite-code", "parley-invite:").await;
    b.click("#copy-invite").await;
    b.wait_contains("#toast", "copied").await;
    let pasted = b
        .exec_async(
            "const done = arguments[arguments.length - 1]; navigator.clipboard.readText().then(done, (e) => done('error: ' + e));",
            json!([]),
        )
        .await;
    assert_eq!(
        pasted,
        json!(code.trim()),
        "the clipboard holds the invite code"
    );

    step(
        "desktop notifications, when switched on, tell of new unread conversations in a background tab",
    );
    b.goto(&format!("{base}/")).await;
    b.wait("#inbox-list tbody tr").await;
    b.cdp(
        "Browser.grantPermissions",
        json!({"permissions": ["notifications"], "origin": base}),
    )
    .await;
    b.click("#desktop-notifications").await;
    b.wait_true(
        "return localStorage.getItem('parley.desktop-notifications') === 'on'",
        json!([]),
        "the setting",
    )
    .await;
    // The tab goes to the background; what the page shows is recorded as it is shown.
    b.exec(
        "Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
         window.__shown = [];
         const Real = window.Notification;
         window.Notification = class extends Real { constructor(t, o) { super(t, o); window.__shown.push(o.body); } };",
        json!([]),
    )
    .await;
    let (s, v) = n
        .call(
            "POST",
            "/api/v1/conversations",
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "Pallets arrived damaged"}),
            ),
            Some(&erp),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    b.wait_true(
        "return window.__shown.length === 1 && /unread conversation/.test(window.__shown[0])",
        json!([]),
        "one desktop notification",
    )
    .await;
    b.goto(&format!("{base}/")).await;

    step(
        "when the node stops answering an open page says so at once, and recovers by itself; the reply is kept",
    );
    b.goto(&format!("{base}/c/{}", id_of(&late))).await;
    b.wait("#reply-body").await;
    assert_eq!(
        b.exec(
            "return document.getElementById('offline-banner').hidden",
            json!([])
        )
        .await,
        true,
        "no banner while the node answers"
    );
    n.pause().await;
    b.wait_contains("#offline-banner", "not answering").await;
    b.type_into("#reply-body", "Written while the node was down")
        .await;
    b.press(&["Control", "Enter"]).await;
    b.wait_contains("#reply-error", "did not answer").await;
    assert_eq!(
        b.prop("#reply-body", "value").await,
        "Written while the node was down"
    );
    n.resume().await;
    b.wait_gone("#offline-banner").await;
    b.click("#reply-send").await;
    b.wait_contains("#thread", "Written while the node was down")
        .await;
    b.goto(&format!("{base}/")).await;
    n.create(json!({"kind": "message", "partner": "bolt", "subject": "After the outage"}))
        .await;
    b.wait_contains("#inbox-list", "After the outage").await;

    let errs: Vec<String> = b
        .console_errors()
        .await
        .into_iter()
        .filter(|e| {
            !e.contains("Failed to load resource")
                && !e.contains("ERR_CONNECTION_REFUSED")
                && !e.contains("/api/v1/events")
        })
        .collect();
    assert!(errs.is_empty(), "console: {errs:?}");
    b.close().await;
    drop(driver);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partners_away_undelivered_reopened_and_crossed() {
    let Some(tools) = tools_or_skip() else { return };
    let mut acme = TestNode::start("acme", Role::Retailer).await;
    let mut bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&bolt, &acme).await;
    let first = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Labels for PO-1", "body": "Please print."}))
        .await;
    let first_path = format!("/api/v1/conversations/{}", id_of(&first));
    eventually(30, "the first task reaching bolt", || async {
        (bolt.get(&first_path).await.0 == StatusCode::OK).then_some(())
    })
    .await;

    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = acme.base.clone();
    sign_in(&b, &base).await;

    step("the partner goes away: the Partners page says for how long and what waits for it");
    bolt.pause().await;
    let mut waiting = Vec::new();
    for i in 0..3 {
        waiting.push(
            acme.create(json!({"kind": "message", "partner": "bolt", "subject": format!("While away {i}"), "body": "Queued."}))
                .await,
        );
    }
    b.goto(&format!("{base}/peers")).await;
    let row = b
        .wait_text("#peers tbody", "the away partner", |t| {
            t.contains("Not connected")
                && t.contains("away for")
                && t.contains("3 conversations waiting")
        })
        .await;
    assert!(row.contains("bolt"), "{row}");
    let hover = b
        .exec(
            "return document.querySelector('#peers code.node-id').title",
            json!([]),
        )
        .await;
    assert!(
        hover.as_str().unwrap().len() > 36,
        "full node id on hover: {hover}"
    );
    shoot(&b, "partners.png").await;

    step("what has not reached the partner is marked in the Inbox and in the thread");
    b.goto(&format!("{base}/")).await;
    let away_id = id_of(&waiting[0]);
    let sel = format!("#inbox-list tr[data-id='{away_id}']");
    b.wait_contains(&sel, "Not yet delivered").await;
    let first_row = format!("#inbox-list tr[data-id='{}']", id_of(&first));
    assert!(
        !b.text(&first_row).await.contains("Not yet delivered"),
        "the first task was delivered"
    );
    b.goto(&format!("{base}/c/{away_id}")).await;
    b.wait_contains("#undelivered", "not reached").await;
    b.wait_contains("#thread", "Not yet delivered").await;

    step("the partner is back: the marks go by themselves");
    bolt.resume().await;
    b.wait_gone("#undelivered").await;
    b.wait_text("#thread", "delivered", |t| !t.contains("Not yet delivered"))
        .await;
    b.goto(&format!("{base}/")).await;
    b.wait_contains(&sel, "While away 0").await;
    b.wait_text(&sel, "no mark", |t| !t.contains("Not yet delivered"))
        .await;
    shoot(&b, "inbox.png").await;

    step("a partner's reply to a resolved conversation brings it back to the Inbox, unread");
    let (s, _) = acme.post(&format!("{first_path}/resolve"), json!({})).await;
    assert_eq!(s, StatusCode::OK);
    eventually(30, "bolt to see it resolved", || async {
        (bolt.get(&first_path).await.1["state"] == "resolved").then_some(())
    })
    .await;
    b.goto(&format!("{base}/")).await;
    wait_subjects(&b, "the resolved one gone from the Inbox", |s| {
        !s.iter().any(|x| x == "Labels for PO-1")
    })
    .await;
    let (s, v) = bolt
        .post(
            &format!("{first_path}/messages"),
            json!({"body": "One more question about these labels."}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    wait_subjects(&b, "it back in the Inbox", |s| {
        s.iter().any(|x| x == "Labels for PO-1")
    })
    .await;
    let class = b
        .exec("const r = document.querySelector(`tr[data-id='${arguments[0]}']`); return r && r.className", json!([id_of(&first)]))
        .await;
    assert!(
        class.as_str().unwrap_or_default().contains("unread"),
        "{class}"
    );

    step("two nodes change the same task while apart: both show that the changes crossed");
    let task = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Crossed task"}))
        .await;
    let task_path = format!("/api/v1/conversations/{}", id_of(&task));
    eventually(30, "the task reaching bolt", || async {
        (bolt.get(&task_path).await.0 == StatusCode::OK).then_some(())
    })
    .await;
    bolt.pause().await;
    let (s, _) = acme
        .put(
            &format!("{task_path}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    acme.pause().await;
    bolt.resume().await;
    let (s, _) = bolt
        .put(
            &format!("{task_path}/progress"),
            json!({"progress": "cancelled"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    acme.resume().await;
    let on_acme = eventually(60, "the crossed change on acme", || async {
        let (_, v) = acme.get(&task_path).await;
        (v["conflicts"].as_array().is_some_and(|c| !c.is_empty())).then_some(v)
    })
    .await;
    let on_bolt = eventually(60, "the crossed change on bolt", || async {
        let (_, v) = bolt.get(&task_path).await;
        (v["conflicts"].as_array().is_some_and(|c| !c.is_empty())).then_some(v)
    })
    .await;
    assert_eq!(on_acme["conflicts"][0]["field"], "progress");
    assert_eq!(
        on_acme["conflicts"][0]["standing"],
        on_bolt["conflicts"][0]["standing"]
    );
    let standing = on_acme["conflicts"][0]["standing"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(on_acme["progress"], json!(standing));
    b.goto(&format!("{base}/c/{}", id_of(&task))).await;
    let note = b.wait_contains("#crossed", "Changes crossed").await;
    let shown = if standing == "completed" {
        "Completed"
    } else {
        "Cancelled"
    };
    assert!(
        note.contains(&format!("{shown} (")) || note.contains(shown),
        "{note}"
    );
    assert!(
        note.contains("Completed") && note.contains("Cancelled"),
        "{note}"
    );
    shoot(&b, "crossed.png").await;

    b.close().await;
    drop(driver);
    bolt.stop().await;
    acme.stop().await;
}
