//! The web UI end to end in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver against a real node on port 0.
//!
//! One browser walks through the user stories in order: a failed and a good sign-in, compose
//! from the Inbox, a task from an Item detail page and from a list view, reply, resolve and
//! reopen, an overdue task completed, a reply made through the API appearing live, the deep
//! link, and sign-out. Screenshots for the README are written to docs/screenshots/ when
//! PARLEY_SCREENSHOTS is set.
//!
//! Without a browser the test fails when `CI` is set and otherwise says SKIP loudly.

mod common;
#[path = "browser/kit.rs"]
#[allow(dead_code)]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use kit::{shoot, step, tools_or_skip};

use common::TestNode;
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wd::{Driver, Session};

async fn inbox_row_text(b: &Session, subject: &str) -> String {
    let xs = b.find_all("#inbox-list tbody tr").await;
    assert!(!xs.is_empty(), "the inbox is empty");
    b.exec(
        "const r = [...document.querySelectorAll('#inbox-list tbody tr')].find((r) => r.textContent.includes(arguments[0])); return r ? r.textContent : ''",
        json!([subject]),
    )
    .await
    .as_str()
    .unwrap_or_default()
    .to_string()
}

async fn conversation_by_subject(n: &TestNode, subject: &str) -> Value {
    let (_, v) = n.get("/api/v1/conversations?limit=200").await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == subject)
        .cloned()
        .unwrap_or_else(|| panic!("no conversation {subject:?} in {v}"))
}

/// Fills in and sends the open New Conversation window as a task with a Reference ID and a
/// due date.
async fn send_task(b: &Session, subject: &str, reference: &str, due: &str, shot: Option<&str>) {
    b.click("#compose input[name=kind][value=task]").await;
    b.set_value("#compose-partner", "bolt").await;
    b.type_into("#compose-subject", subject).await;
    assert!(b.find("#row-reference-id").await.is_some());
    b.wait_gone("#row-reference-id").await;
    b.click("#compose-options").await;
    b.click("#opt-reference-id").await;
    b.type_into("#compose-reference-id", reference).await;
    // A choice closes the Options menu.
    b.wait_gone("#compose-options-menu").await;
    b.click("#compose-options").await;
    b.click("#opt-due-date").await;
    b.set_value("#compose-due-date", due).await;
    b.type_into("#compose-body", "Please check and confirm.")
        .await;
    if let Some(name) = shot {
        shoot(b, name).await;
    }
    b.click("#compose-send").await;
    b.wait_gone("#compose").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_ui_in_a_real_browser() {
    let Some(tools) = tools_or_skip() else { return };
    let started = std::time::Instant::now();
    let n = TestNode::start("acme", Role::Retailer).await;
    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 860).await;
    let base = n.base.clone();

    step("a failed sign-in, then a good one");
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "not-the-password").await;
    b.click(".login button[type=submit]").await;
    let msg = b
        .wait_contains("#login-error", "Wrong user name or password")
        .await;
    assert!(!msg.to_lowercase().contains("unknown user"), "{msg}");
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;
    // The failed sign-in's 401 is the only console message expected so far.
    let errs = b.console_errors().await;
    assert!(errs.iter().all(|e| e.contains("401")), "console: {errs:?}");

    step("compose a message from the Inbox");
    b.click("#compose-button").await;
    b.wait("#compose").await;
    b.set_value("#compose-partner", "bolt").await;
    b.type_into("#compose-subject", "Kettle colours for spring")
        .await;
    b.type_into("#compose-body", "Which colours can you ship in March?")
        .await;
    b.click("#compose-send").await;
    b.wait_gone("#compose").await;
    b.wait_contains("#inbox-list", "Kettle colours for spring")
        .await;
    let c = conversation_by_subject(&n, "Kettle colours for spring").await;
    assert_eq!(
        (c["kind"].as_str(), c["message_count"].as_u64()),
        (Some("message"), Some(1))
    );

    step("a task with a Reference ID and a due date from an Item detail page");
    let (s, v) = n
        .post("/api/v1/topics", json!({"kind": "item", "ref": "SKU-123", "title": "Steel kettle 1.7 l", "fields": {"status": "active"}}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    n.post(
        "/api/v1/topics",
        json!({"kind": "item", "ref": "SKU-124", "title": "Glass kettle"}),
    )
    .await;
    b.click(".mainnav a[data-nav=item]").await;
    b.wait_contains("main h1", "Items").await;
    b.click("#topic-list a[href='/topics/item/SKU-123']").await;
    b.wait_contains("#topic-title", "Steel kettle").await;
    b.click("#more-actions").await;
    b.click("#menu-start-conversation").await;
    let topic = b.wait_contains("#compose-topic", "SKU-123").await;
    assert!(topic.contains("Steel kettle"), "{topic}");
    let href = b
        .exec(
            "return document.querySelector('#compose-topic a').getAttribute('href')",
            json!([]),
        )
        .await;
    assert_eq!(
        href, "/topics/item/SKU-123",
        "the topic links to the detail page"
    );
    send_task(
        &b,
        "Description too thin",
        "CASE-7",
        "2026-12-18",
        Some("new-conversation.png"),
    )
    .await;
    let row = b
        .wait_contains("#topic-conversations", "Description too thin")
        .await;
    assert!(
        row.contains("CASE-7") && row.contains("2026-12-18"),
        "{row}"
    );
    let c = conversation_by_subject(&n, "Description too thin").await;
    assert_eq!(c["topic"]["ref"], "SKU-123");
    assert_eq!(c["topic"]["url"], "/topics/item/SKU-123");
    assert_eq!(
        (c["reference_id"].as_str(), c["due_date"].as_str()),
        (Some("CASE-7"), Some("2026-12-18"))
    );

    step("the same from a list view, two rows selected");
    b.click(".back a").await;
    b.wait_contains("main h1", "Items").await;
    b.click("input[aria-label='Select SKU-123']").await;
    b.click("input[aria-label='Select SKU-124']").await;
    b.wait_contains("#selection-status", "2 selected").await;
    b.click("#start-conversation").await;
    let topics = b.wait_contains("#compose-topic", "SKU-124").await;
    assert!(topics.contains("SKU-123"), "{topics}");
    send_task(&b, "Photos missing", "CASE-8", "2026-12-20", None).await;
    let (_, v) = n.get("/api/v1/conversations?q=photos").await;
    let mut refs: Vec<String> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["topic"]["ref"].as_str().unwrap().to_string())
        .collect();
    refs.sort();
    assert_eq!(
        refs,
        vec!["SKU-123", "SKU-124"],
        "one task per selected item"
    );
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["reference_id"] == "CASE-8")
    );

    step("reply in a conversation");
    b.click("#inbox-icon").await;
    b.wait_contains("main h1", "Inbox").await;
    b.click("#inbox-list a[href^='/c/']").await; // the newest: a "Photos missing" task
    b.wait("#reply-body").await;
    b.type_into("#reply-body", "Photos are on the share, folder 12.")
        .await;
    b.click("#reply-send").await;
    b.wait_contains("#thread", "Photos are on the share, folder 12.")
        .await;

    step("resolve with a confirmation, then reopen from the Resolved folder");
    let subject = b.text("#conversation-subject").await;
    b.click("#resolve-button").await;
    b.wait("#confirm").await;
    b.click("#confirm-yes").await;
    b.wait_contains("#conversation-state", "Resolved").await;
    b.click(".back a").await;
    b.wait_contains("main h1", "Resolved").await;
    b.wait_contains("#inbox-list", &subject).await;
    b.click("#inbox-list a[href^='/c/']").await;
    b.click("#reopen-button").await;
    b.wait_text("#conversation-state", "open again", |t| {
        !t.contains("Resolved") && !t.is_empty()
    })
    .await;
    let (_, v) = n.get("/api/v1/conversations?state=resolved").await;
    assert_eq!(v["total"], 0);

    step("Update Conversation changes the Reference ID; the history shows it; mark as unread");
    let url = b.url().await;
    let cid = url.rsplit('/').next().unwrap().to_string();
    b.click("#update-button").await;
    b.wait("#update").await;
    b.type_into("#update-reference-id", "CASE-8B").await;
    b.click("#update-save").await;
    b.wait_gone("#update").await;
    b.wait_contains("main .facts", "CASE-8B").await;
    b.click(".history-box summary").await;
    b.wait_contains("#history", "changed the Reference ID: CASE-8 → CASE-8B")
        .await;
    b.click("#mark-unread").await;
    b.wait_contains("main h1", "Inbox").await;
    let class = b
        .exec("const r = document.querySelector(`tr[data-id='${arguments[0]}']`); return r && r.className", json!([cid]))
        .await;
    assert_eq!(class, "unread", "marked unread: bold in the Inbox");

    step("an overdue task is marked overdue, and not once completed");
    n.create(json!({"kind": "task", "partner": "bolt", "subject": "Late pallet labels", "due_date": "2020-01-02"})).await;
    b.click("#inbox-icon").await;
    b.wait_contains("#inbox-list", "Late pallet labels").await;
    let row = inbox_row_text(&b, "Late pallet labels").await;
    assert!(row.contains("Overdue"), "{row}");
    let id = conversation_by_subject(&n, "Late pallet labels").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.click(&format!("#inbox-list a[href='/c/{id}']")).await;
    b.wait_contains("main", "Overdue").await;
    b.click("#progress-complete").await;
    // Completing offers to resolve too; this one stays open.
    b.wait("#complete-resolve").await;
    b.click("#complete-resolve").await;
    b.click("#confirm-yes").await;
    b.wait_contains("#conversation-progress", "Completed").await;
    assert_eq!(b.text("#conversation-state").await, "Open");
    b.wait_text("main .facts", "no Overdue mark", |t| !t.contains("Overdue"))
        .await;
    b.click("#inbox-icon").await;
    b.wait_contains("#inbox-list", "Late pallet labels").await;
    let row = inbox_row_text(&b, "Late pallet labels").await;
    assert!(!row.contains("Overdue"), "{row}");

    step("a reply through the API appears live, and the unread count updates");
    let (_, t) = n.post("/api/v1/tokens", json!({"name": "erp"})).await;
    let erp = t["token"].as_str().unwrap().to_string();
    b.click(&format!("#inbox-list a[href='/c/{id}']")).await;
    b.wait("#reply-body").await;
    b.exec("window.__stayed = true", json!([])).await;
    let (s, v) = n
        .call(
            "POST",
            &format!("/api/v1/conversations/{id}/messages"),
            Some(json!({"body": "Labels reprinted, sorry for the delay."})),
            Some(&erp),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    b.wait_contains("#thread", "Labels reprinted").await;
    assert_eq!(
        b.exec("return window.__stayed === true", json!([])).await,
        true,
        "the page was not reloaded"
    );
    // A new conversation from the integration arrives in the Inbox with the unread dot.
    b.click("#inbox-icon").await;
    b.wait_contains("main h1", "Inbox").await;
    let before = b.text("#unread-count").await;
    n.call(
        "POST",
        "/api/v1/conversations",
        Some(
            json!({"kind": "message", "partner": "bolt", "subject": "Carrier changed for PO-1001",
        "topic": {"kind": "order", "ref": "PO-1001"}, "body": "DHL from Monday."}),
        ),
        Some(&erp),
    )
    .await;
    b.wait_contains("#inbox-list", "Carrier changed for PO-1001")
        .await;
    let unread_row = b
        .exec(
            "return document.querySelector('#inbox-list tbody tr').className",
            json!([]),
        )
        .await;
    assert_eq!(unread_row, "unread", "new and unread: shown in bold");
    let after = b
        .wait_text("#unread-count", "a higher count", |t| {
            !t.is_empty() && t != before
        })
        .await;
    assert!(after.parse::<u32>().unwrap() >= 1, "{after}");
    assert!(b.find("#unread-dot").await.is_some());
    let label = b
        .exec(
            "return document.getElementById('inbox-icon').getAttribute('aria-label')",
            json!([]),
        )
        .await;
    assert!(label.as_str().unwrap().contains("unread"), "{label}");

    step("search, and the Action required folder");
    b.type_into("#search", "PO-1001").await;
    b.click("form[role=search] button").await;
    b.wait_text("#inbox-list", "only the match", |t| {
        t.contains("Carrier changed") && !t.contains("Kettle colours")
    })
    .await;
    b.goto(&format!("{base}/?folder=action")).await;
    b.wait_contains("main h1", "Action required").await;

    step("the deep link opens New Conversation filled in");
    b.goto(&format!("{base}/new?kind=task&topic=item:SKU-123&subject=Stock%20check%20SKU-123&reference_id=ERP-991")).await;
    b.wait("#compose").await;
    assert_eq!(
        b.prop("#compose input[name=kind][value=task]", "checked")
            .await,
        true
    );
    assert_eq!(
        b.prop("#compose-subject", "value").await,
        "Stock check SKU-123"
    );
    assert_eq!(b.prop("#compose-reference-id", "value").await, "ERP-991");
    b.wait("#compose-reference-id").await;
    b.wait_contains("#compose-topic", "Steel kettle").await;
    b.set_value("#compose-partner", "bolt").await;
    b.click("#compose-send").await;
    b.wait_gone("#compose").await;
    b.wait_contains("#inbox-list", "Stock check SKU-123").await;
    let c = conversation_by_subject(&n, "Stock check SKU-123").await;
    assert_eq!(
        (
            c["kind"].as_str(),
            c["reference_id"].as_str(),
            c["topic"]["ref"].as_str()
        ),
        (Some("task"), Some("ERP-991"), Some("SKU-123"))
    );

    step("pair with a partner's node on the Partners page and see the link");
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    let (s, inv) = bolt
        .post(
            "/api/v1/peers/invites",
            json!({"org_id": "acme", "role": "retailer"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{inv}");
    b.click(".mainnav a[data-nav=peers]").await;
    b.wait_contains("main h1", "Partners").await;
    b.type_into("#pair-code", inv["code"].as_str().unwrap())
        .await;
    // The page says what the code pairs this node as before it pairs.
    b.wait_contains("#pair-preview", "pairs this node as acme")
        .await;
    b.click("form.pair button[type=submit]").await;
    b.wait_contains("#peers", "bolt Inc").await;
    b.wait_contains("#peers", "Connected").await;
    b.wait_contains("#peers", "plain HTTP").await;
    // An invite names whom it is for: here another site of acme.
    b.click("#invite-own-site").await;
    b.click("#make-invite").await;
    b.wait_contains("#invite-code", "parley-invite:").await;
    // What acme had with bolt reached bolt's node.
    let kettle = conversation_by_subject(&n, "Kettle colours for spring").await;
    let path = format!("/api/v1/conversations/{}", kettle["id"].as_str().unwrap());
    let mut arrived = false;
    for _ in 0..100 {
        if bolt.get(&path).await.0 == StatusCode::OK {
            arrived = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(arrived, "the conversation reached the partner's node");

    step("a 10-inch tablet: nothing wider than the screen");
    b.resize(800, 1280).await;
    for path in ["/", "/topics/item", "/peers", &format!("/c/{id}")] {
        b.goto(&format!("{base}{path}")).await;
        b.wait("main h1").await;
        let fits = b
            .exec(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                json!([]),
            )
            .await;
        if path == "/" {
            shoot(&b, "../../target/tablet.png").await;
        }
        assert_eq!(fits, true, "{path} scrolls sideways at 800 px");
    }

    step("a detail page pages through every conversation about its record");
    for i in 0..53 {
        n.create(
            json!({"kind": "message", "partner": "bolt", "subject": format!("Pallet {i}"),
            "topic": {"kind": "order", "ref": "PO-BULK"}}),
        )
        .await;
    }
    b.goto(&format!("{}/topics/order/PO-BULK", n.base)).await;
    b.wait_contains("#topic-conversations-more", "50 of 53")
        .await;
    b.click("#topic-conversations-more").await;
    b.wait_gone("#topic-conversations-more").await;
    let rows = b
        .exec(
            "return document.querySelectorAll('#topic-conversations tbody tr').length",
            json!([]),
        )
        .await;
    assert_eq!(
        rows,
        json!(53),
        "every conversation about the order is listed"
    );

    step("no errors in the console, then sign out");
    let errs = b.console_errors().await;
    assert!(errs.is_empty(), "console: {errs:?}");
    b.click("#logout").await;
    b.wait("#login-name").await;
    let (s, _) = n.call("GET", "/api/v1/conversations", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    step("after repeated failures the sign-in form says sign-in is slowed down");
    for i in 0..5 {
        let body = json!({"name": "nobody", "password": format!("guess-{i}")});
        let (s, _) = n.call("POST", "/api/v1/session", Some(body), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    b.type_into("#login-name", "nobody").await;
    b.type_into("#login-password", "guess-again").await;
    b.click(".login button[type=submit]").await;
    let msg = b.wait_contains("#login-slowed", "slowed down").await;
    assert!(msg.contains("Try again in"), "{msg}");
    assert!(
        b.find("#login-slowed .spinner").await.is_some(),
        "the wait shows a spinner"
    );

    b.close().await;
    drop(driver);
    bolt.stop().await;
    n.stop().await;
    eprintln!("browser: done in {:?}", started.elapsed());
}
