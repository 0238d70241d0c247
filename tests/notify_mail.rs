//! Email notifications through a real SMTP server (aiosmtpd): who is mailed, what the mail
//! looks like to a mail client, preferences, floods folded into a summary, reminders and the
//! daily digest on a clock the test holds, and settings nobody may abuse.

mod common;

use chrono::{Duration as Days, Local, TimeZone, Utc};
use common::smtp::{Mail, SmtpServer};
use common::{TestNode, eventually, pair};
use parley::domain::Role;
use parley::service::Clock;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn add_person(n: &TestNode, name: &str, email: Option<&str>) -> String {
    let (s, u) = n
        .post(
            "/api/v1/users",
            json!({"name": name, "password": format!("{name}-password-1"), "admin": false}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{u}");
    let (s, t) = n
        .post(
            "/api/v1/tokens",
            json!({"name": format!("{name}-token"), "user": name}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    if let Some(e) = email {
        set(n, name, json!({"email": e})).await;
    }
    t["token"].as_str().unwrap().to_string()
}

async fn set(n: &TestNode, user: &str, body: Value) -> Value {
    let (s, v) = n
        .put(&format!("/api/v1/users/{user}/notifications"), body)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn arrived(n: &TestNode, id: &str) {
    let path = format!("/api/v1/conversations/{id}");
    eventually(60, "the conversation reaching the node", || async {
        (n.get(&path).await.0 == StatusCode::OK).then_some(())
    })
    .await;
}

fn tools() -> Option<std::path::PathBuf> {
    common::py::notify_python()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_reply_mails_the_right_users_threaded() {
    let Some(py) = tools() else { return };
    let smtp = SmtpServer::start(&py).await;
    let bolt =
        TestNode::start_configured("bolt", Role::Supplier, &smtp.toml("settle_ms = 200\n")).await;
    let acme = TestNode::start("acme", Role::Retailer).await;
    set(&bolt, "admin", json!({"email": "admin@bolt.test"})).await;
    let bo = add_person(&bolt, "bo", Some("bo@bolt.test")).await;
    add_person(&bolt, "cy", Some("cy@bolt.test")).await;
    set(
        &bolt,
        "cy",
        json!({"preferences": {"partner_replied": "never"}}),
    )
    .await;
    add_person(&bolt, "dee", None).await;
    pair(&bolt, &acme).await;

    let c = acme
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Labels for PO-1",
            "reference_id": "PO-1", "body": "Please print the <b>labels</b>."}),
        )
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    arrived(&bolt, &id).await;
    let first = smtp.wait_for("bo@bolt.test", 1, 60).await;
    let m = &first[0];
    assert!(m.subject().contains("Labels for PO-1 [PO-1]"), "{m:?}");
    assert!(
        m.text.contains("Please print the <b>labels</b>."),
        "{}",
        m.text
    );
    assert!(
        m.html
            .contains("Please print the &lt;b&gt;labels&lt;/b&gt;."),
        "the body is escaped in HTML: {}",
        m.html
    );
    assert!(
        m.text.contains(&format!("http://parley.acme.test/c/{id}")),
        "{}",
        m.text
    );
    assert_eq!(
        m.header("list-unsubscribe"),
        Some("<http://parley.acme.test/settings>")
    );
    smtp.wait_for("cy@bolt.test", 1, 30).await;
    smtp.wait_for("admin@bolt.test", 1, 30).await;

    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Printed yet?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let both = smtp.wait_for("bo@bolt.test", 2, 60).await;
    let reply = &both[1];
    assert!(reply.text.contains("Printed yet?"), "{}", reply.text);
    assert_eq!(reply.subject(), m.subject(), "one subject per conversation");
    assert_ne!(reply.header("message-id"), m.header("message-id"));
    let thread = m.header("in-reply-to").expect("In-Reply-To");
    assert_eq!(reply.header("in-reply-to"), Some(thread));
    assert_eq!(reply.header("references"), Some(thread));
    smtp.wait_for("admin@bolt.test", 2, 30).await;

    // bo replies: nobody hears of it by default, and bo never of his own.
    set(
        &bolt,
        "admin",
        json!({"preferences": {"colleague_activity": "immediate"}}),
    )
    .await;
    let (s, _) = bolt
        .call(
            "POST",
            &format!("/api/v1/conversations/{id}/messages"),
            Some(json!({"body": "On it."})),
            Some(&bo),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let admin = smtp.wait_for("admin@bolt.test", 3, 60).await;
    let on_it = admin
        .iter()
        .find(|m| m.text.contains("On it."))
        .unwrap_or_else(|| panic!("no mail of bo's reply: {:?}", subjects(&admin)));
    assert!(on_it.text.contains("bo (bolt Inc)"), "{}", on_it.text);
    // A later partner reply is the marker: everything before it has been mailed.
    acme.post(
        &format!("/api/v1/conversations/{id}/messages"),
        json!({"body": "Thanks."}),
    )
    .await;
    let bo_mails = smtp.wait_for("bo@bolt.test", 3, 60).await;
    smtp.wait_for("admin@bolt.test", 4, 60).await;
    smtp.wait_for("cy@bolt.test", 1, 1).await;
    assert_eq!(
        bo_mails.len(),
        3,
        "bo is not told of his own reply: {:?}",
        subjects(&bo_mails)
    );
    assert!(bo_mails.iter().all(|m| !m.text.contains("On it.")));
    assert_eq!(
        smtp.mails_to("cy@bolt.test").len(),
        1,
        "cy chose never for replies"
    );
    assert!(
        smtp.mails().iter().all(|m| !m.to().contains("dee")),
        "dee has no address"
    );
    // Nothing reached acme's users, and nothing from acme reached this server at all.
    assert!(
        smtp.mails()
            .iter()
            .all(|m| m.to().ends_with("@bolt.test>") || m.to().ends_with("@bolt.test"))
    );
}

fn subjects(m: &[Mail]) -> Vec<String> {
    m.iter().map(|m| m.subject().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_sync_of_many_conversations_is_a_summary_not_a_mail_each() {
    let Some(py) = tools() else { return };
    let smtp = SmtpServer::start(&py).await;
    let acme = TestNode::start("acme", Role::Retailer).await;
    for i in 0..60 {
        acme.create(
            json!({"kind": "message", "partner": "bolt", "subject": format!("History {i}")}),
        )
        .await;
    }
    let bolt =
        TestNode::start_configured("bolt", Role::Supplier, &smtp.toml("settle_ms = 3000\n")).await;
    set(&bolt, "admin", json!({"email": "admin@bolt.test"})).await;
    pair(&bolt, &acme).await;
    eventually(120, "60 conversations on bolt", || async {
        (common::inbox_ids(&bolt).await.len() == 60).then_some(())
    })
    .await;
    let counted = |ms: &[Mail]| -> usize {
        ms.iter()
            .filter_map(|m| {
                m.subject()
                    .split(": ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    let t = std::time::Instant::now();
    let mails = loop {
        let m = smtp.mails_to("admin@bolt.test");
        if counted(&m) >= 60 {
            break m;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(90),
            "the summary never covered all 60: {:?}",
            subjects(&m)
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(
        mails.len() <= 3,
        "a summary, not a mail each: {:?}",
        subjects(&mails)
    );
    assert!(
        mails.iter().all(|m| m.subject().contains("conversations")),
        "{:?}",
        subjects(&mails)
    );
    assert!(mails[0].text.contains("History"), "{}", mails[0].text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_once_per_due_date_and_the_digest_at_its_time() {
    let Some(py) = tools() else { return };
    let smtp = SmtpServer::start(&py).await;
    // Local 07:00 on a Wednesday: before the digest's 08:00.
    let wed = Local
        .with_ymd_and_hms(2031, 1, 8, 7, 0, 0)
        .single()
        .unwrap()
        .with_timezone(&Utc);
    let clock = Clock::manual(wed);
    let bolt = TestNode::start_clocked(
        "bolt",
        Role::Supplier,
        // No sweep of its own while the test runs: only the test's sweeps, in its order.
        &smtp.toml("settle_ms = 100\ndigest_time = \"08:00\"\nsweep_secs = 86400\n"),
        clock.clone(),
    )
    .await;
    // The partner's node runs on the same clock, so its changes are not "late" news.
    let acme = TestNode::start_clocked("acme", Role::Retailer, "", clock.clone()).await;
    set(&bolt, "admin", json!({"email": "admin@bolt.test"})).await;
    add_person(&bolt, "bo", Some("bo@bolt.test")).await;
    set(
        &bolt,
        "bo",
        json!({"preferences": {"new_conversation": "digest", "partner_replied": "digest", "task_progress": "digest", "due_soon": "never", "overdue": "digest"}}),
    )
    .await;
    pair(&bolt, &acme).await;
    let task = |subject: &str, due: &str| json!({"kind": "task", "partner": "bolt", "subject": subject, "due_date": due});
    // Due Thursday: one working day ahead, so due soon now.
    let soon = acme.create(task("Due Thursday", "2031-01-09")).await;
    let later = acme.create(task("Due in a fortnight", "2031-01-22")).await;
    let finished = acme.create(task("Done already", "2031-01-09")).await;
    bolt.create(json!({"kind": "task", "partner": "acme", "subject": "Our own ask", "due_date": "2031-01-09"}))
        .await;
    for c in [&soon, &later, &finished] {
        arrived(&bolt, c["id"].as_str().unwrap()).await;
    }
    let fid = finished["id"].as_str().unwrap();
    let (s, _) = bolt
        .put(
            &format!("/api/v1/conversations/{fid}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // The creations themselves, mailed at once to admin: three.
    smtp.wait_for("admin@bolt.test", 3, 60).await;

    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    let m = smtp.wait_for("admin@bolt.test", 4, 30).await;
    let reminders: Vec<&Mail> = m
        .iter()
        .filter(|m| m.subject().starts_with("Due soon: "))
        .collect();
    assert_eq!(reminders.len(), 1, "{:?}", subjects(&m));
    assert!(reminders[0].subject().contains("Due Thursday"));
    assert!(
        reminders[0].text.contains("due on Thu 9 Jan 2031"),
        "{}",
        reminders[0].text
    );

    // Once per due date: sweeping again sends nothing; moving the due date arms it again.
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    let sid = soon["id"].as_str().unwrap();
    let (s, v) = acme
        .patch(
            &format!("/api/v1/conversations/{sid}"),
            json!({"due_date": "2031-01-08"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The partner's change of due date is mailed (task progress), then swept again.
    smtp.wait_for("admin@bolt.test", 5, 60).await;
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    let m = smtp.wait_for("admin@bolt.test", 6, 30).await;
    let due_soon: Vec<_> = m
        .iter()
        .filter(|m| m.subject().starts_with("Due soon: "))
        .collect();
    assert_eq!(due_soon.len(), 2, "{:?}", subjects(&m));

    // Friday: "Due Thursday" (now Wednesday's) is overdue, once; the finished task, the
    // fortnight task and our own ask are not reminded of.
    clock.set(wed + Days::days(2));
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    let m = smtp.wait_for("admin@bolt.test", 7, 30).await;
    let overdue: Vec<_> = m
        .iter()
        .filter(|m| m.subject().starts_with("Overdue: "))
        .collect();
    assert_eq!(overdue.len(), 1, "{:?}", subjects(&m));
    assert!(overdue[0].subject().contains("Due Thursday"));
    for m in &m {
        for never in ["Done already", "Our own ask", "Due in a fortnight"] {
            assert!(
                !(m.subject().starts_with("Due soon") || m.subject().starts_with("Overdue"))
                    || !m.subject().contains(never),
                "{never} was reminded of: {:?}",
                m.subject()
            );
        }
    }
    assert!(
        smtp.mails_to("bo@bolt.test").is_empty(),
        "bo wants all of it in the digest"
    );

    // 08:00 local has passed on Friday: bo's digest, overdue first; once a day.
    clock.set(wed + Days::days(2) + Days::hours(2));
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    parley::notify::sweep_now(bolt.svc()).await.unwrap();
    let d = smtp.wait_for("bo@bolt.test", 1, 30).await;
    assert_eq!(d.len(), 1, "{:?}", subjects(&d));
    assert!(
        d[0].subject().starts_with("Your Parley digest"),
        "{}",
        d[0].subject()
    );
    let text = &d[0].text;
    let first = text
        .find("Due Thursday")
        .expect("the overdue task is listed");
    let fortnight = text.find("Due in a fortnight").expect("listed");
    assert!(first < fortnight, "overdue first:\n{text}");
    assert!(text.contains("OVERDUE"), "{text}");
    assert!(
        !text.contains("Our own ask"),
        "our own creation is not news to bo: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_settings_refuse_bad_input_and_other_users() {
    let n = TestNode::start("bolt", Role::Supplier).await;
    let bo = add_person(&n, "bo", None).await;
    let (s, v) = n.get("/api/v1/me/notifications").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["preferences"]["partner_replied"], "immediate");
    assert_eq!(v["preferences"]["colleague_activity"], "never");
    assert_eq!(v["kinds"].as_array().unwrap().len(), 8);
    let before = n.get("/api/v1/users/bo/notifications").await.1;
    for (body, what) in [
        (
            json!({"email": "bo@bolt.test\r\nBcc: eve@evil.test"}),
            "email",
        ),
        (json!({"email": "Bo <bo@bolt.test>"}), "email"),
        (json!({"email": "bo@bolt.test, eve@evil.test"}), "email"),
        (json!({"email": "nobody"}), "email"),
        (
            json!({"preferences": {"everything": "immediate"}}),
            "preferences",
        ),
        (
            json!({"preferences": {"partner_replied": "hourly"}}),
            "preferences",
        ),
        (
            json!({"email": "bo@bolt.test", "preferences": {"partner_replied": "loud"}}),
            "preferences",
        ),
    ] {
        let (s, v) = n.put("/api/v1/users/bo/notifications", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} → {v}");
        common::assert_error(&v, what);
    }
    assert_eq!(
        n.get("/api/v1/users/bo/notifications").await.1,
        before,
        "a refused update changed nothing, not even its valid half"
    );
    // bo may change his own settings, not admin's, and may not read them either.
    for (m, body) in [
        ("GET", None),
        ("PUT", Some(json!({"email": "eve@evil.test"}))),
    ] {
        let (s, _) = n
            .call(m, "/api/v1/users/admin/notifications", body, Some(&bo))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, v) = n
        .call(
            "PUT",
            "/api/v1/me/notifications",
            Some(json!({"email": "bo@bolt.test"})),
            Some(&bo),
        )
        .await;
    assert_eq!(
        (s, v["email"].as_str()),
        (StatusCode::OK, Some("bo@bolt.test"))
    );
    let (s, v) = n
        .call(
            "PUT",
            "/api/v1/users/bo/notifications",
            Some(json!({"email": ""})),
            Some(&bo),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("email").is_none() || v["email"].is_null(), "{v}");
    // An integration gets webhooks, not mail.
    let (s, _) = n.post("/api/v1/tokens", json!({"name": "erp"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = n
        .put(
            "/api/v1/users/erp/notifications",
            json!({"email": "erp@bolt.test"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, _) = n.put("/api/v1/users/nobody/notifications", json!({})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_arriving_long_after_it_happened_is_one_summary() {
    let Some(py) = tools() else { return };
    let smtp = SmtpServer::start(&py).await;
    let acme = TestNode::start("acme", Role::Retailer).await;
    for i in 0..3 {
        acme.create(json!({"kind": "message", "partner": "bolt", "subject": format!("Written while apart {i}")}))
            .await;
    }
    // bolt's clock says these were written two hours ago when they arrive: late news, which
    // three separate mails (fewer than summary_after) would otherwise be.
    let clock = Clock::manual(Utc::now() + Days::hours(2));
    let bolt = TestNode::start_clocked(
        "bolt",
        Role::Supplier,
        &smtp.toml("settle_ms = 100\n"),
        clock,
    )
    .await;
    set(&bolt, "admin", json!({"email": "admin@bolt.test"})).await;
    pair(&bolt, &acme).await;
    let m = smtp.wait_for("admin@bolt.test", 1, 90).await;
    assert_eq!(m.len(), 1, "{:?}", subjects(&m));
    assert_eq!(m[0].subject(), "While you were away: 3 conversations");
    for i in 0..3 {
        assert!(
            m[0].text.contains(&format!("Written while apart {i}")),
            "{}",
            m[0].text
        );
    }
    // Nothing more comes for them.
    acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Marker"}))
        .await;
    let m = smtp.wait_for("admin@bolt.test", 2, 90).await;
    assert_eq!(m.len(), 2, "{:?}", subjects(&m));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_only_to_allowed_domains_when_an_admin_says_so() {
    let n = TestNode::start_configured(
        "bolt",
        Role::Supplier,
        "[email]\nallowed_domains = [\"bolt.test\"]\n",
    )
    .await;
    let bo = add_person(&n, "bo", None).await;
    // A user cannot have the org's conversations mailed to an outside address.
    let (s, v) = n
        .call(
            "PUT",
            "/api/v1/me/notifications",
            Some(json!({"email": "bo@drop-box.example"})),
            Some(&bo),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    common::assert_error(&v, "allowed_domains");
    assert!(n.get("/api/v1/users/bo/notifications").await.1["email"].is_null());
    for ok in ["bo@bolt.test", "bo@eu.BOLT.test"] {
        let (s, v) = n
            .call(
                "PUT",
                "/api/v1/me/notifications",
                Some(json!({"email": ok})),
                Some(&bo),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{ok}: {v}");
    }
    // Nor can a look-alike domain pass.
    let (s, _) = n
        .call(
            "PUT",
            "/api/v1/me/notifications",
            Some(json!({"email": "bo@evilbolt.test"})),
            Some(&bo),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

/// Assigning tells the assignee, at each site of ours where they have an address; assigning
/// oneself tells nobody; a note is in no mail to anyone, ours or the partner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assignment_mails_the_assignee_and_no_mail_carries_a_note() {
    let Some(py) = tools() else { return };
    let smtp = SmtpServer::start(&py).await;
    let cfg = smtp.toml("settle_ms = 200\n");
    let site1 = TestNode::start_configured("acme", Role::Retailer, &cfg).await;
    let site2 = TestNode::start_configured("acme", Role::Retailer, &cfg).await;
    let bolt = TestNode::start_configured("bolt", Role::Supplier, &cfg).await;
    let ann = add_person(&site1, "ann", Some("ann@acme.test")).await;
    add_person(&site2, "ann", Some("ann.site2@acme.test")).await;
    set(&bolt, "admin", json!({"email": "admin@bolt.test"})).await;
    pair(&site1, &site2).await;
    pair(&site1, &bolt).await;

    let marker = format!("ZZ-INT-{}", uuid::Uuid::new_v4().simple());
    let mut ids = Vec::new();
    for subject in ["Carton sizes", "Label stock"] {
        let c = site1
            .create(json!({"kind": "task", "partner": "bolt", "subject": subject, "body": "Please send them"}))
            .await;
        let id = c["id"].as_str().unwrap().to_string();
        let (s, _) = site1
            .post(
                &format!("/api/v1/conversations/{id}/notes"),
                json!({"body": format!("{marker} they are slow")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        ids.push(id);
    }
    // The partner is told of the new tasks (a fence: its mail has gone out).
    smtp.wait_for("admin@bolt.test", 2, 60).await;

    let (s, _) = site1
        .put(
            &format!("/api/v1/conversations/{}/assignee", ids[0]),
            json!({"assignee": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let here = smtp.wait_for("ann@acme.test", 1, 60).await;
    assert!(
        here[0].text.contains("assigned this task to you"),
        "{}",
        here[0].text
    );
    assert!(here[0].subject().contains("Carton sizes"), "{:?}", here[0]);
    // At site 2 the same person is told once the team document arrives.
    let there = smtp.wait_for("ann.site2@acme.test", 1, 60).await;
    assert!(there[0].subject().contains("Carton sizes"));

    // Ann takes the second one herself: nobody is told, here or there. Then the first is
    // given to her again by the admin, as a fence: that mail comes, and nothing before it.
    let (s, _) = site1
        .call(
            "PUT",
            &format!("/api/v1/conversations/{}/assignee", ids[1]),
            Some(json!({"assignee": "ann"})),
            Some(&ann),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let path = format!("/api/v1/conversations/{}", ids[1]);
    eventually(60, "the self-assignment at site 2", || async {
        (site2.get(&path).await.1["assignee"] == "ann").then_some(())
    })
    .await;
    for to in [None, Some("ann")] {
        let (s, _) = site1
            .put(
                &format!("/api/v1/conversations/{}/assignee", ids[0]),
                json!({"assignee": to}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        // Site 2 must see each step on its own: both arriving in one batch would change
        // nothing there, and tell nobody.
        let path = format!("/api/v1/conversations/{}", ids[0]);
        let want = to.map_or(Value::Null, |u| Value::String(u.into()));
        eventually(60, "the assignment step at site 2", || async {
            let c = site2.get(&path).await.1;
            (c.get("assignee").cloned().unwrap_or(Value::Null) == want).then_some(())
        })
        .await;
    }
    let here = smtp.wait_for("ann@acme.test", 2, 60).await;
    assert_eq!(here.len(), 2, "{:?}", subjects(&here));
    assert!(
        here.iter().all(|m| m.subject().contains("Carton sizes")),
        "{:?}",
        subjects(&here)
    );
    let there = smtp.wait_for("ann.site2@acme.test", 2, 60).await;
    assert!(
        there.iter().all(|m| m.subject().contains("Carton sizes")),
        "{:?}",
        subjects(&there)
    );

    for m in smtp.mails() {
        assert!(
            !m.text.contains(&marker) && !m.html.contains(&marker),
            "a mail to {} carries a note",
            m.to()
        );
    }
}
