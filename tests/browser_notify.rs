//! The notification pages in a real headless Chromium: a user sets an address and what is
//! mailed when, a refused address says why and changes nothing, and the page passes axe-core.

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
    let n = TestNode::start("bolt", Role::Supplier).await;
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
    b.close().await;
    drop(driver);
    n.stop().await;
}
