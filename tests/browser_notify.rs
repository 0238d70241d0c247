//! The notification pages in a real headless Chromium: a user sets an address and what is
//! mailed when, a refused address says why and changes nothing; an admin adds a webhook, sees
//! its secret once, sends a test event to a real receiver and reads the delivery log; every
//! page passes axe-core.

mod common;
#[path = "browser/kit.rs"]
mod kit;
#[path = "browser/wd.rs"]
mod wd;

use common::TestNode;
use kit::{axe, shoot, step, tools_or_skip};
use parley::domain::Role;
use serde_json::json;
use wd::Driver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_chooses_what_is_mailed() {
    let Some(tools) = tools_or_skip() else { return };
    let (port, mut sink) = common::sink::start().await;
    let n = TestNode::start_configured(
        "bolt",
        Role::Supplier,
        "[webhooks]\nallow = [\"loopback\", \"private\"]\n",
    )
    .await;
    let driver = Driver::start(&tools).await;
    let b = driver.session(1280, 1024).await;
    let base = n.base.clone();
    b.goto(&format!("{base}/")).await;
    b.type_into("#login-name", "admin").await;
    b.type_into("#login-password", "correct-horse").await;
    b.click(".login button[type=submit]").await;
    b.wait_contains("main h1", "Inbox").await;

    step("Settings: every kind with its default; an address and a choice are saved");
    b.click("a[data-nav=settings]").await;
    b.wait_contains("main h1", "Settings").await;
    b.wait("#settings-email").await;
    assert_eq!(b.prop("#mode-partner_replied", "value").await, "immediate");
    assert_eq!(b.prop("#mode-colleague_activity", "value").await, "never");
    axe(&b, "Settings").await;
    b.type_into("#settings-email", "admin@bolt.test").await;
    b.set_value("#mode-partner_replied", "digest").await;
    b.click("#settings-save").await;
    b.wait_contains("#toast", "saved").await;
    shoot(&b, "settings").await;
    let (_, v) = n.get("/api/v1/me/notifications").await;
    assert_eq!(v["email"], "admin@bolt.test");
    assert_eq!(v["preferences"]["partner_replied"], "digest");

    step("a reload shows what was saved; a refused address says why and changes nothing");
    b.goto(&format!("{base}/settings")).await;
    b.wait("#settings-email").await;
    assert_eq!(b.prop("#settings-email", "value").await, "admin@bolt.test");
    assert_eq!(b.prop("#mode-partner_replied", "value").await, "digest");
    b.set_value("#settings-email", "Admin <admin@bolt.test>")
        .await;
    b.set_value("#mode-overdue", "never").await;
    b.click("#settings-save").await;
    b.wait_contains("#settings-error", "email").await;
    let (_, v) = n.get("/api/v1/me/notifications").await;
    assert_eq!(
        (v["email"].clone(), v["preferences"]["overdue"].clone()),
        (json!("admin@bolt.test"), json!("immediate"))
    );

    step("an admin sets another user's address and choices");
    let (st, _) = n
        .post(
            "/api/v1/users",
            json!({"name": "bo", "password": "bo-password-1", "admin": false}),
        )
        .await;
    assert!(st.is_success());
    b.goto(&format!("{base}/settings")).await;
    b.wait("#settings-user").await;
    b.set_value("#settings-user", "bo").await;
    b.wait_contains("main h2", "Notifications of bo").await;
    b.set_value("#settings-email", "bo@bolt.test").await;
    b.set_value("#mode-due_soon", "never").await;
    b.click("#settings-save").await;
    b.wait_contains("#toast", "saved").await;
    let (_, v) = n.get("/api/v1/users/bo/notifications").await;
    assert_eq!(
        (v["email"].clone(), v["preferences"]["due_soon"].clone()),
        (json!("bo@bolt.test"), json!("never"))
    );
    let (_, mine) = n.get("/api/v1/me/notifications").await;
    assert_eq!(mine["email"], "admin@bolt.test", "the admin's own stayed");

    step("Webhooks: add one, the secret shown once; a test event reaches the receiver and the log");
    b.click("#nav-webhooks").await;
    b.wait_contains("main h1", "Webhooks").await;
    b.wait("#webhook-url").await;
    axe(&b, "Webhooks").await;
    b.type_into("#webhook-url", "http://169.254.169.254/latest")
        .await;
    b.click("#event-message-created").await;
    b.click("#webhook-add-button").await;
    b.wait_contains("#toast", "link-local").await;
    let (_, v) = n.get("/api/v1/webhooks").await;
    assert_eq!(
        v["webhooks"].as_array().unwrap().len(),
        0,
        "a refused URL stored nothing"
    );
    b.set_value("#webhook-url", &format!("http://127.0.0.1:{port}/erp"))
        .await;
    b.click("#webhook-add-button").await;
    let secret = b
        .wait_text("#webhook-secret", "a whsec_ secret", |t| {
            t.starts_with("whsec_")
        })
        .await;
    let row = b
        .wait_text("#webhooks tbody", "the new endpoint", |t| {
            t.contains("/erp")
        })
        .await;
    assert!(!row.contains(&secret), "the list never shows a secret");
    let (_, v) = n.get("/api/v1/webhooks").await;
    let id = v["webhooks"][0]["id"].as_str().unwrap().to_string();
    b.click(&format!("#test-{id}")).await;
    let got = tokio::time::timeout(std::time::Duration::from_secs(30), sink.recv())
        .await
        .expect("the test event within 30 s")
        .unwrap();
    assert_eq!(got.body["type"], "webhook.test");
    // The outcome is recorded just after the receiver answered: open the log until it shows.
    let t = std::time::Instant::now();
    loop {
        b.click(&format!("#log-{id}")).await;
        let log = b.text("#webhook-log").await;
        if log.contains("webhook.test") && log.contains("delivered") {
            break;
        }
        assert!(
            t.elapsed() < wd::WAIT,
            "the log never showed the delivery: {log}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    shoot(&b, "webhooks").await;
    b.click(&format!("#remove-{id}")).await;
    b.click("#confirm-yes").await;
    b.wait_text("#webhooks tbody", "the endpoint gone", |t| {
        !t.contains("/erp")
    })
    .await;
    let (_, v) = n.get("/api/v1/webhooks").await;
    assert!(v["webhooks"].as_array().unwrap().is_empty());
    b.close().await;
    drop(driver);
    n.stop().await;
}
