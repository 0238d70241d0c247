//! The inbox folders as the server decides them, the due-date order and its cursors, and the
//! rule that a reply or change to a resolved conversation reopens it — through real nodes
//! and their HTTP API. Each folder's rows and `total` are checked against what the folder
//! promises, paging with small pages so that every answer crosses pages.

mod common;

use std::collections::HashSet;

use common::{TestNode, assert_error, eventually, pair};
use parley::domain::Role;
use parley::service::{NewToken, Principal};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every page of `query` (which must not hold `limit` or `cursor`), following `next_cursor`:
/// the ids in order, and each page's `total` and `unread`.
async fn walk(
    n: &TestNode,
    token: &str,
    query: &str,
    limit: u32,
) -> (Vec<String>, Vec<(u64, u64)>) {
    let mut ids = Vec::new();
    let mut counts = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/conversations?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, page) = n.call("GET", &path, None, Some(token)).await;
        assert_eq!(s, StatusCode::OK, "{path}: {page}");
        for item in page["items"].as_array().unwrap() {
            ids.push(item["id"].as_str().unwrap().to_string());
        }
        counts.push((
            page["total"].as_u64().unwrap(),
            page["unread"].as_u64().unwrap(),
        ));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (ids, counts),
        }
    }
}

/// Checks that `query` lists exactly `want` (in any order), each once, with that total.
async fn expect(n: &TestNode, query: &str, want: &[&str]) {
    let (ids, counts) = walk(n, &n.token, query, 2).await;
    let got: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(got.len(), ids.len(), "{query}: a row listed twice: {ids:?}");
    let want_set: HashSet<&str> = want.iter().copied().collect();
    assert_eq!(got, want_set, "{query}");
    for (total, _) in counts {
        assert_eq!(total, want.len() as u64, "{query}: total");
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A due date long past, so a task is overdue whatever the day the test runs.
fn long_ago() -> String {
    "2025-01-02".to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_folder_lists_what_it_promises_with_exact_totals() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let msg = id(&n.create(json!({"kind": "message", "partner": "bolt", "subject": "Stock", "body": "Why out of stock?"})).await);
    let task = id(&n.create(json!({"kind": "task", "partner": "bolt", "subject": "Photos", "due_date": "2031-01-01"})).await);
    let late = id(&n
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Late", "due_date": long_ago()}),
        )
        .await);
    let done = id(&n
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Done", "due_date": long_ago()}),
        )
        .await);
    let cancelled = id(&n
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Dropped"}))
        .await);
    let closed = id(&n
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Closed"}))
        .await);

    let all = [&msg, &task, &late, &done, &cancelled, &closed].map(String::as_str);
    expect(&n, "folder=inbox", &all).await;
    expect(&n, "folder=tasks", &[&task, &late, &done, &cancelled]).await;
    // Overdue, so action required; we wrote last everywhere else.
    expect(&n, "folder=action", &[&late, &done]).await;
    expect(&n, "folder=resolved", &[]).await;

    let (s, _) = n
        .put(
            &format!("/api/v1/conversations/{done}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = n
        .put(
            &format!("/api/v1/conversations/{cancelled}/progress"),
            json!({"progress": "cancelled"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{closed}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Finished tasks leave Tasks and Action required while they are still open.
    expect(&n, "folder=inbox", &[&msg, &task, &late, &done, &cancelled]).await;
    expect(&n, "folder=tasks", &[&task, &late]).await;
    expect(&n, "folder=action", &[&late]).await;
    expect(&n, "action_required=true", &[&late]).await;
    expect(&n, "folder=resolved", &[&closed]).await;
    expect(&n, "folder=all", &all).await;
    // Without a folder the endpoint is what it was: every conversation.
    expect(&n, "", &all).await;
    // Filters combine with a folder.
    expect(&n, "folder=inbox&kind=message", &[&msg]).await;
    expect(&n, "folder=tasks&overdue=true", &[&late]).await;
    expect(&n, "folder=tasks&overdue=false", &[&task]).await;
    expect(&n, "folder=inbox&kind=task&progress=completed", &[&done]).await;
    expect(&n, "folder=resolved&partner=bolt", &[&closed]).await;
    expect(&n, "folder=all&q=photos", &[&task]).await;
    expect(&n, "folder=resolved&q=photos", &[]).await;
    expect(&n, "folder=tasks&sort=due", &[&task, &late]).await;

    // A rebuild of the derived tables (as after an upgrade) gives the same answers.
    n.svc().store().rebuild_indexes().unwrap();
    expect(&n, "folder=tasks", &[&task, &late]).await;
    expect(&n, "folder=action", &[&late]).await;
    expect(&n, "folder=all&sort=due", &all).await;
    n.stop().await;
}

/// A second user, for whom everything the admin wrote is unread.
async fn second_user(n: &TestNode) -> String {
    let op = Principal::operator();
    n.svc()
        .add_user(&op, "bea", Some("correct-horse".into()), false)
        .await
        .unwrap();
    n.svc()
        .create_token(
            &op,
            NewToken {
                name: "bea".into(),
                user: Some("bea".into()),
            },
        )
        .await
        .unwrap()
        .secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unread_folder_total_is_the_unread_count() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let bea = second_user(&n).await;
    let mut made = Vec::new();
    for i in 0..7 {
        let body = if i % 2 == 0 {
            json!({"kind": "task", "partner": "bolt", "subject": format!("Task {i}"), "due_date": format!("2031-01-0{}", i + 1)})
        } else {
            json!({"kind": "message", "partner": "bolt", "subject": format!("Note {i}")})
        };
        made.push(id(&n.create(body).await));
    }
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/resolve", made[1]),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Checks the folder for bea against the unread count of every page and her marks.
    let check = |want: Vec<String>| {
        let (n, bea) = (&n, bea.clone());
        async move {
            for sort in ["activity", "due"] {
                let (ids, counts) = walk(n, &bea, &format!("folder=unread&sort={sort}"), 3).await;
                let got: HashSet<String> = ids.iter().cloned().collect();
                assert_eq!(got.len(), ids.len(), "listed twice: {ids:?}");
                assert_eq!(
                    got,
                    want.iter().cloned().collect::<HashSet<_>>(),
                    "sort={sort}"
                );
                for (total, unread) in counts {
                    assert_eq!(
                        total, unread,
                        "sort={sort}: total is the header's unread count"
                    );
                    assert_eq!(total, want.len() as u64);
                }
            }
            // The admin wrote everything: nothing is unread for them.
            let (ids, counts) = walk(n, &n.token, "folder=unread", 3).await;
            assert!(ids.is_empty());
            assert_eq!(counts, vec![(0, 0)]);
        }
    };
    // Any state: the resolved one too. Newest activity first.
    check(made.clone()).await;
    let (ids, _) = walk(&n, &bea, "folder=unread", 3).await;
    // Newest activity first (the resolve is the latest activity of its conversation), ties
    // by id: as `last_activity_at` and the ids say.
    let (_, all) = n.get("/api/v1/conversations?folder=all&limit=200").await;
    let at = |i: &Value| {
        chrono::DateTime::parse_from_rfc3339(i["last_activity_at"].as_str().unwrap()).unwrap()
    };
    let mut newest_first: Vec<_> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (at(i), id(i)))
        .collect();
    newest_first.sort_by(|a, b| b.cmp(a));
    let newest_first: Vec<String> = newest_first.into_iter().map(|(_, i)| i).collect();
    assert_eq!(ids, newest_first);

    for i in [0, 3, 6] {
        let (s, _) = n
            .call(
                "POST",
                &format!("/api/v1/conversations/{}/read", made[i]),
                None,
                Some(&bea),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let left: Vec<String> = made
        .iter()
        .enumerate()
        .filter(|(i, _)| ![0, 3, 6].contains(i))
        .map(|(_, x)| x.clone())
        .collect();
    check(left.clone()).await;
    // Marked unread again; and a reply by the admin makes it unread for bea (it already is).
    let (s, _) = n
        .call(
            "POST",
            &format!("/api/v1/conversations/{}/unread", made[3]),
            None,
            Some(&bea),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/messages", made[2]),
            json!({"body": "Any news?"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut now_unread = left.clone();
    now_unread.push(made[3].clone());
    check(now_unread.clone()).await;
    // The reply moved it to the top of her Unread folder.
    let (ids, _) = walk(&n, &bea, "folder=unread", 3).await;
    assert_eq!(ids[0], made[2]);
    // The order is derived: a rebuild from the documents and her marks gives it back.
    n.svc().store().rebuild_indexes().unwrap();
    check(now_unread.clone()).await;
    assert_eq!(walk(&n, &bea, "folder=unread", 3).await.0, ids);
    // Filters narrow the folder; the total follows them.
    let (ids, counts) = walk(&n, &bea, "folder=unread&kind=task", 2).await;
    let want: HashSet<&String> = [&made[2], &made[4]].into_iter().collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>(), want);
    assert!(counts.iter().all(|(t, _)| *t == 2));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_by_due_pages_every_conversation_once() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let mut dated = Vec::new();
    for (i, due) in [
        "2031-03-01",
        "2031-01-15",
        "2031-03-01",
        "2031-02-01",
        "2031-03-01",
    ]
    .iter()
    .enumerate()
    {
        let c = n.create(json!({"kind": "task", "partner": "bolt", "subject": format!("Due {i}"), "due_date": due})).await;
        dated.push((due.to_string(), id(&c)));
    }
    let mut undated = Vec::new();
    for i in 0..4 {
        let kind = if i == 0 { "task" } else { "message" };
        undated.push(id(&n
            .create(json!({"kind": kind, "partner": "bolt", "subject": format!("Plain {i}")}))
            .await));
    }
    // Soonest first, ties by id; then newest activity first.
    let mut want: Vec<String> = {
        let mut d = dated.clone();
        d.sort();
        d.into_iter().map(|(_, i)| i).collect()
    };
    want.extend(undated.iter().rev().cloned());
    let (ids, counts) = walk(&n, &n.token, "sort=due", 2).await;
    assert_eq!(ids, want);
    assert!(counts.iter().all(|(t, _)| *t == 9));

    // Changes between pages: a reply to a row already seen, a reply to one not seen yet, a
    // new task due last and a resolve. Each row still comes exactly once.
    let (s, first) = n.get("/api/v1/conversations?sort=due&limit=3").await;
    assert_eq!(s, StatusCode::OK);
    let seen: Vec<String> = first["items"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(seen, want[..3]);
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/messages", seen[0]),
            json!({"body": "seen"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/messages", undated[1]),
            json!({"body": "not yet seen"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = n
        .post(
            &format!("/api/v1/conversations/{}/resolve", want[4]),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let added = id(&n.create(json!({"kind": "task", "partner": "bolt", "subject": "Due last", "due_date": "2032-01-01"})).await);
    let mut rest = Vec::new();
    let mut cursor = first["next_cursor"].as_str().unwrap().to_string();
    loop {
        let (s, page) = n
            .get(&format!(
                "/api/v1/conversations?sort=due&limit=2&cursor={cursor}"
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 10);
        rest.extend(page["items"].as_array().unwrap().iter().map(id));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    let mut all: Vec<String> = seen.iter().chain(rest.iter()).cloned().collect();
    assert!(rest.contains(&added));
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a row came twice");
    assert_eq!(all.len(), 10, "every conversation once");

    // Within a folder: only tasks, the dated ones first.
    let (ids, counts) = walk(&n, &n.token, "folder=tasks&sort=due", 2).await;
    assert_eq!(
        ids.len(),
        6 - 1 + 1,
        "four open dated tasks, the new one, the plain task"
    );
    assert_eq!(ids.last(), Some(&undated[0]));
    assert!(counts.iter().all(|(t, _)| *t == ids.len() as u64));
    // Search within the order.
    let (ids, _) = walk(&n, &n.token, "sort=due&q=due", 2).await;
    assert_eq!(ids.len(), 6);
    assert_eq!(ids.last(), Some(&added));
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_folder_sort_or_cursor_is_refused_and_changes_nothing() {
    let n = TestNode::start("acme", Role::Retailer).await;
    for i in 0..3 {
        n.create(json!({"kind": "task", "partner": "bolt", "subject": format!("T{i}"), "due_date": "2031-01-01"})).await;
        n.create(json!({"kind": "message", "partner": "bolt", "subject": format!("M{i}")}))
            .await;
    }
    let (_, before) = n.get("/api/v1/conversations?limit=200").await;
    let (_, by_activity) = n.get("/api/v1/conversations?limit=2").await;
    let activity_cursor = by_activity["next_cursor"].as_str().unwrap().to_string();
    let (_, by_due) = n.get("/api/v1/conversations?limit=2&sort=due").await;
    let due_cursor = by_due["next_cursor"].as_str().unwrap().to_string();
    // Past the dated rows: a cursor into the undated part.
    let (_, later) = n
        .get(&format!(
            "/api/v1/conversations?limit=2&sort=due&cursor={due_cursor}"
        ))
        .await;
    let undated_cursor = later["next_cursor"].as_str().unwrap().to_string();
    let (_, later) = n
        .get(&format!(
            "/api/v1/conversations?limit=2&sort=due&cursor={undated_cursor}"
        ))
        .await;
    assert!(
        later["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["due_date"].is_null())
    );

    for (query, what) in [
        ("folder=archive".to_string(), "folder"),
        ("folder=".to_string(), "folder"),
        ("folder=INBOX".to_string(), "folder"),
        ("sort=subject".to_string(), "sort"),
        ("sort=due&cursor=".to_string() + &activity_cursor, "cursor"),
        ("cursor=".to_string() + &due_cursor, "cursor"),
        ("cursor=".to_string() + &undated_cursor, "cursor"),
        (
            "sort=activity&cursor=".to_string() + &undated_cursor,
            "cursor",
        ),
        ("sort=due&cursor=x".to_string(), "cursor"),
        (
            "sort=due&cursor=d%2B5.00000000000000000000000000000000".to_string(),
            "cursor",
        ),
        ("sort=due&cursor=n".to_string(), "cursor"),
        (
            "cursor=%2B5.00000000000000000000000000000000".to_string(),
            "cursor",
        ),
        (
            "folder=unread&sort=due&cursor=".to_string() + &activity_cursor,
            "cursor",
        ),
    ] {
        let (s, v) = n.get(&format!("/api/v1/conversations?{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_error(&v, what);
    }
    let (_, after) = n.get("/api/v1/conversations?limit=200").await;
    assert_eq!(before, after);
    n.stop().await;
}

/// A folder decides the state it lists; a `state` (or an open-only filter) that contradicts
/// it used to win silently (`folder=inbox&state=resolved` listed resolved rows). It is
/// refused, in both orders, and a filter that agrees with the folder still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_filter_that_contradicts_the_folder_is_refused() {
    let n = TestNode::start("acme", Role::Retailer).await;
    let open = id(&n
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Open", "due_date": "2031-01-01"}),
        )
        .await);
    let shut = id(&n
        .create(
            json!({"kind": "task", "partner": "bolt", "subject": "Shut", "due_date": "2031-01-01"}),
        )
        .await);
    let (s, _) = n
        .post(&format!("/api/v1/conversations/{shut}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    for sort in ["activity", "due"] {
        for (query, what) in [
            ("folder=inbox&state=resolved&kind=task", "state"),
            ("folder=inbox&state=resolved", "state"),
            ("folder=tasks&state=resolved", "state"),
            ("folder=action&state=resolved", "state"),
            ("folder=resolved&state=open&kind=task", "state"),
            ("folder=resolved&awaiting_reply=true", "awaiting_reply"),
            ("folder=resolved&action_required=true", "action_required"),
        ] {
            let q = format!("/api/v1/conversations?{query}&sort={sort}");
            let (s, v) = n.get(&q).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{q}: {v}");
            assert_error(&v, what);
            assert_error(&v, "folder");
        }
        let q = format!("sort={sort}&kind=task");
        expect(&n, &format!("folder=inbox&state=open&{q}"), &[&open]).await;
        expect(&n, &format!("folder=resolved&state=resolved&{q}"), &[&shut]).await;
        expect(&n, &format!("folder=all&state=resolved&{q}"), &[&shut]).await;
    }
    n.stop().await;
}

async fn conversation(n: &TestNode, id: &str) -> Value {
    let (s, v) = n.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn folder_ids(n: &TestNode, query: &str) -> Vec<String> {
    walk(n, &n.token, query, 50).await.0
}

/// The history actions of a conversation, oldest first.
fn actions(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_resolved_conversation_reopens_it_on_both_nodes() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    pair(&acme, &bolt).await;

    let c = acme.create(json!({"kind": "message", "partner": "bolt", "subject": "Late shipment", "body": "Where is PO-7?"})).await;
    let cid = id(&c);
    eventually(20, "the conversation at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{cid}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    // The supplier answers in its Action required folder (the retailer wrote last), resolves it.
    assert_eq!(folder_ids(&bolt, "folder=action").await, vec![cid.clone()]);
    let (s, _) = bolt
        .post(
            &format!("/api/v1/conversations/{cid}/messages"),
            json!({"body": "Shipped today"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = bolt
        .post(&format!("/api/v1/conversations/{cid}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = bolt
        .post(&format!("/api/v1/conversations/{cid}/read"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        folder_ids(&bolt, "folder=resolved").await,
        vec![cid.clone()]
    );
    assert!(folder_ids(&bolt, "folder=inbox").await.is_empty());
    assert!(folder_ids(&bolt, "folder=unread").await.is_empty());
    eventually(20, "the resolve at acme", || async {
        (conversation(&acme, &cid).await["state"] == "resolved").then_some(())
    })
    .await;

    // The retailer replies to the resolved conversation: it is open again, in one change.
    let (s, v) = acme
        .post(
            &format!("/api/v1/conversations/{cid}/messages"),
            json!({"body": "Not arrived"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["state"], "open");
    assert_eq!(actions(&v), ["created", "resolved", "reopened"]);
    assert_eq!(v["history"][2]["by"]["org"], "acme");

    // The supplier's node admits the combined change and sees it back, open and unread.
    let seen = eventually(20, "the reopened conversation at bolt", || async {
        let v = conversation(&bolt, &cid).await;
        (v["state"] == "open" && v["messages"].as_array().unwrap().len() == 3).then_some(v)
    })
    .await;
    assert_eq!(actions(&seen), ["created", "resolved", "reopened"]);
    assert_eq!(folder_ids(&bolt, "folder=inbox").await, vec![cid.clone()]);
    assert_eq!(folder_ids(&bolt, "folder=unread").await, vec![cid.clone()]);
    assert_eq!(folder_ids(&bolt, "folder=action").await, vec![cid.clone()]);
    assert!(folder_ids(&bolt, "folder=resolved").await.is_empty());
    let (_, page) = bolt.get("/api/v1/conversations?folder=unread").await;
    assert_eq!(page["total"], page["unread"]);
    assert_eq!(page["items"][0]["unread"], true);

    // A task the supplier finishes leaves the retailer's Action required even though the
    // supplier wrote last; a progress change on a resolved task reopens it.
    let t = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Photos"}))
        .await;
    let tid = id(&t);
    eventually(20, "the task at bolt", || async {
        let (s, _) = bolt.get(&format!("/api/v1/conversations/{tid}")).await;
        (s == StatusCode::OK).then_some(())
    })
    .await;
    let (s, _) = bolt
        .post(
            &format!("/api/v1/conversations/{tid}/messages"),
            json!({"body": "Uploaded"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    eventually(20, "the task awaiting acme's reply", || async {
        folder_ids(&acme, "folder=action")
            .await
            .contains(&tid)
            .then_some(())
    })
    .await;
    let (s, _) = bolt
        .put(
            &format!("/api/v1/conversations/{tid}/progress"),
            json!({"progress": "completed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    eventually(20, "the completed task out of acme's folders", || async {
        let a = folder_ids(&acme, "folder=action").await;
        let t = folder_ids(&acme, "folder=tasks").await;
        (!a.contains(&tid) && !t.contains(&tid)).then_some(())
    })
    .await;
    let (s, _) = acme
        .post(&format!("/api/v1/conversations/{tid}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    eventually(20, "the resolve at bolt", || async {
        (conversation(&bolt, &tid).await["state"] == "resolved").then_some(())
    })
    .await;
    let (s, v) = bolt
        .put(
            &format!("/api/v1/conversations/{tid}/progress"),
            json!({"progress": "in_progress"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "open");
    let n = actions(&v).len();
    assert_eq!(actions(&v)[n - 2..], ["reopened", "progress"]);
    eventually(20, "the reopened task in acme's Tasks", || async {
        folder_ids(&acme, "folder=tasks")
            .await
            .contains(&tid)
            .then_some(())
    })
    .await;
    // Resolving or reopening as such is unchanged: no extra entry.
    let (s, v) = bolt
        .post(&format!("/api/v1/conversations/{tid}/reopen"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(actions(&v).len(), n);
    acme.stop().await;
    bolt.stop().await;
}

/// Whether an inbox item passes a filter, by hand.
type Keep = fn(&Value) -> bool;

/// What each folder promises, as a predicate on an inbox item (one node: no partner
/// messages, so Action required is the overdue tasks).
fn in_folder(folder: &str, i: &Value) -> bool {
    let open = i["state"] == "open";
    let active =
        i["kind"] == "task" && open && (i["progress"] == "open" || i["progress"] == "in_progress");
    match folder {
        "inbox" => open,
        "tasks" => active,
        "action" => i["overdue"] == true,
        "resolved" => !open,
        _ => true,
    }
}

/// Every folder with every filter, in both orders: rows and totals agree with a count by
/// hand over all conversations, after a mix of resolves, completions and cancellations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_totals_agree_with_a_hand_count_for_every_filter() {
    let n = TestNode::start("acme", Role::Retailer).await;
    for i in 0..24 {
        let due = match i % 4 {
            0 => Some(long_ago()),
            1 => Some("2031-05-01".to_string()),
            _ => None,
        };
        let kind = if i % 3 == 0 { "message" } else { "task" };
        let mut body = json!({"kind": kind, "partner": "bolt", "subject": format!("Item {i}")});
        if kind == "task"
            && let Some(d) = due
        {
            body["due_date"] = json!(d);
        }
        let c = id(&n.create(body).await);
        if kind == "task" && i % 5 < 3 {
            let p = ["completed", "cancelled", "in_progress"][i % 5];
            let (s, _) = n
                .put(
                    &format!("/api/v1/conversations/{c}/progress"),
                    json!({"progress": p}),
                )
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        if i % 7 == 2 {
            let (s, _) = n
                .post(&format!("/api/v1/conversations/{c}/resolve"), json!({}))
                .await;
            assert_eq!(s, StatusCode::OK);
        }
    }
    let (_, everything) = n.get("/api/v1/conversations?limit=200").await;
    let items = everything["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 24);
    let filters: [(&str, Keep); 7] = [
        ("", |_| true),
        ("kind=task", |i| i["kind"] == "task"),
        ("kind=message", |i| i["kind"] == "message"),
        ("progress=completed", |i| i["progress"] == "completed"),
        ("overdue=true", |i| i["overdue"] == true),
        ("overdue=false", |i| i["overdue"] == false),
        ("kind=task&overdue=false&partner=bolt", |i| {
            i["kind"] == "task" && i["overdue"] == false
        }),
    ];
    for folder in ["inbox", "tasks", "action", "resolved", "all"] {
        for (query, keep) in &filters {
            let want: HashSet<String> = items
                .iter()
                .filter(|i| in_folder(folder, i) && keep(i))
                .map(id)
                .collect();
            for sort in ["activity", "due"] {
                let q = format!("folder={folder}&sort={sort}&{query}");
                let (ids, counts) = walk(&n, &n.token, &q, 4).await;
                assert_eq!(ids.len(), want.len(), "{q}: {ids:?}");
                assert_eq!(ids.iter().cloned().collect::<HashSet<_>>(), want, "{q}");
                assert!(
                    counts.iter().all(|(t, _)| *t == want.len() as u64),
                    "{q}: {counts:?}"
                );
            }
        }
    }
    n.stop().await;
}
