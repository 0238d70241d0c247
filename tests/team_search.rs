//! Search that finds things (message bodies and our notes, across folders), folder counts that
//! agree with the folders, and display names.

mod common;

use common::TestNode;
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn search(n: &TestNode, q: &str) -> Value {
    let (s, v) = n
        .get(&format!(
            "/api/v1/conversations?folder=all&q={}",
            urlencode(q)
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_notes_are_found_in_every_folder() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let a = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Spring catalogue", "body": "The photos of the teapots are blurry"}))
        .await;
    let b = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Missing dimensions", "body": "Please send the carton sizes"}))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    // A reply's words too, and in a resolved conversation.
    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{a}/messages"),
            json!({"body": "Reshoot booked with Marguerite"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = acme
        .post(&format!("/api/v1/conversations/{a}/resolve"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);

    let r = search(&acme, "marguerite").await;
    assert_eq!(ids(&r), vec![a.to_string()], "{r}");
    assert_eq!(
        r["items"][0]["folder"], "resolved",
        "a result says where it is"
    );
    assert_eq!(
        ids(&search(&acme, "teapot").await),
        vec![a.to_string()],
        "by prefix"
    );
    assert_eq!(ids(&search(&acme, "carton").await), vec![b.to_string()]);
    // Words of the subject and of a body together.
    assert_eq!(
        ids(&search(&acme, "catalogue blurry").await),
        vec![a.to_string()]
    );
    assert!(ids(&search(&acme, "catalogue carton").await).is_empty());
    // Words joined by `#` or `@` are found by their parts.
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Support", "body": "see ticket#TK-77 from ops@depot.example"}))
        .await;
    let c = c["id"].as_str().unwrap().to_string();
    assert_eq!(ids(&search(&acme, "TK-77").await), vec![c.clone()]);
    assert_eq!(ids(&search(&acme, "depot.example").await), vec![c.clone()]);
    // A search of punctuation only is refused: it would list everything (and a bulk action on
    // "all matching" would take everything).
    for q in ["*", "-", "\"", "\u{202E}", "  "] {
        let (s, v) = acme
            .get(&format!(
                "/api/v1/conversations?folder=all&q={}",
                urlencode(q)
            ))
            .await;
        // A blank `q` on the list is no search at all; "all matching" a blank one is refused.
        if !q.trim().is_empty() {
            assert_eq!(s, StatusCode::BAD_REQUEST, "q={q:?}: {v}");
        }
        let (s, v) = acme
            .post(
                "/api/v1/conversations/bulk",
                json!({"action": "resolve", "filter": {"folder": "all", "q": q}}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "bulk q={q:?}: {v}");
    }
    let (_, v) = acme.get("/api/v1/conversations?folder=resolved").await;
    assert_eq!(
        v["total"], 1,
        "nothing was resolved by the refused requests: {v}"
    );

    // Narrowed to a folder: the resolved one is not in the Inbox.
    let (_, v) = acme
        .get("/api/v1/conversations?folder=inbox&q=marguerite")
        .await;
    assert_eq!(v["total"], 0, "{v}");
    let (_, v) = acme
        .get("/api/v1/conversations?folder=resolved&q=marguerite")
        .await;
    assert_eq!(v["total"], 1, "{v}");

    // A note's words, until it is edited or deleted.
    let (s, n) = acme
        .post(
            &format!("/api/v1/conversations/{b}/notes"),
            json!({"body": "Ask Quentin in logistics"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(ids(&search(&acme, "quentin").await), vec![b.to_string()]);
    let note = format!(
        "/api/v1/conversations/{b}/notes/{}",
        n["id"].as_str().unwrap()
    );
    let (s, _) = acme
        .patch(&note, json!({"body": "Ask Rosalind in logistics"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ids(&search(&acme, "quentin").await).is_empty());
    assert_eq!(ids(&search(&acme, "rosalind").await), vec![b.to_string()]);
    // "logistics" was in both versions: still found once.
    assert_eq!(ids(&search(&acme, "logistics").await), vec![b.to_string()]);
    let (s, _) = acme.call("DELETE", &note, None, Some(&acme.token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert!(ids(&search(&acme, "rosalind").await).is_empty());
    assert!(ids(&search(&acme, "logistics").await).is_empty());

    // The words index survives a rebuild, derived again from the documents.
    acme.svc().store().rebuild_indexes().unwrap();
    assert_eq!(ids(&search(&acme, "marguerite").await), vec![a.to_string()]);
    assert_eq!(ids(&search(&acme, "carton").await), vec![b.to_string()]);
    assert!(acme.svc().store().check().await.unwrap().is_clean());

    // `parley check` sees a lost or altered word entry, and a rebuild restores it.
    let ida = uuid::Uuid::parse_str(a).unwrap().as_u128();
    acme.svc()
        .store()
        .write(move |ctx| -> Result<(), parley::store::StoreError> {
            let mut t = ctx.tx().open_table(parley::store::text_words::TEXT_WORDS)?;
            t.remove(("marguerite", ida))?;
            t.insert(("reshoot", ida), 7)?;
            Ok(())
        })
        .await
        .unwrap();
    let report = acme.svc().store().check().await.unwrap();
    assert_eq!(
        report.mismatched,
        vec![uuid::Uuid::from_u128(ida)],
        "{report:?}"
    );
    acme.svc().store().rebuild_indexes().unwrap();
    assert!(acme.svc().store().check().await.unwrap().is_clean());
    assert_eq!(ids(&search(&acme, "marguerite").await), vec![a.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_folder_count_is_what_its_list_holds() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let bolt_token = {
        let (s, _) = acme
            .post(
                "/api/v1/users",
                json!({"name": "ann", "password": "a long password"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (_, t) = acme
            .post("/api/v1/tokens", json!({"name": "ann", "user": "ann"}))
            .await;
        t["token"].as_str().unwrap().to_string()
    };
    let mut made = Vec::new();
    for (kind, subject) in [
        ("task", "T1"),
        ("task", "T2"),
        ("message", "M1"),
        ("message", "M2"),
    ] {
        let c = acme
            .create(json!({"kind": kind, "partner": "bolt", "subject": subject, "body": "x"}))
            .await;
        made.push(c["id"].as_str().unwrap().to_string());
    }
    let (s, _) = acme
        .post(
            &format!("/api/v1/conversations/{}/resolve", made[3]),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = acme
        .put(
            &format!("/api/v1/conversations/{}/assignee", made[0]),
            json!({"assignee": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    // Ann has read nothing: the resolved one is in her Unread too.
    let (s, counts) = acme
        .call("GET", "/api/v1/folders", None, Some(&bolt_token))
        .await;
    assert_eq!(s, StatusCode::OK, "{counts}");
    let count = |f: &str| {
        counts
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["folder"] == f)
            .unwrap_or_else(|| panic!("no count for {f}: {counts}"))["total"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(count("unread"), 4);
    assert_eq!(count("resolved"), 1);
    assert_eq!(count("inbox"), 3);
    assert_eq!(count("tasks"), 2);
    assert_eq!(count("all"), 4);
    assert_eq!(count("mine"), 1);
    assert_eq!(count("unassigned"), 2);
    for (f, q) in [
        ("unread", "folder=unread"),
        ("resolved", "folder=resolved"),
        ("inbox", "folder=inbox"),
        ("tasks", "folder=tasks"),
        ("action", "folder=action"),
        ("all", "folder=all"),
        ("mine", "folder=inbox&assignee=me"),
        ("unassigned", "folder=inbox&assignee=none"),
    ] {
        let (_, page) = acme
            .call(
                "GET",
                &format!("/api/v1/conversations?{q}&limit=200"),
                None,
                Some(&bolt_token),
            )
            .await;
        assert_eq!(page["total"].as_u64(), Some(count(f)), "{f}");
        assert_eq!(
            page["items"].as_array().unwrap().len() as u64,
            count(f),
            "{f}"
        );
    }
    // `mine` and `unassigned` are folders of their own too.
    for f in ["mine", "unassigned"] {
        let (s, page) = acme
            .call(
                "GET",
                &format!("/api/v1/conversations?folder={f}"),
                None,
                Some(&bolt_token),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        assert_eq!(page["total"].as_u64(), Some(count(f)), "{f}");
    }
    let (_, unread) = acme
        .call(
            "GET",
            "/api/v1/conversations?folder=unread",
            None,
            Some(&bolt_token),
        )
        .await;
    assert!(
        unread["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["state"] == "resolved"),
        "the Unread folder holds a resolved conversation: {unread}"
    );
    let (s, _) = acme.call("GET", "/api/v1/folders", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn display_names_are_set_by_their_owner_or_an_admin() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let (s, _) = acme
        .post(
            "/api/v1/users",
            json!({"name": "ann", "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, t) = acme
        .post("/api/v1/tokens", json!({"name": "ann", "user": "ann"}))
        .await;
    let ann = t["token"].as_str().unwrap().to_string();
    let (s, v) = acme
        .call(
            "PUT",
            "/api/v1/users/ann/display-name",
            Some(json!({"display_name": "Ann Lee"})),
            Some(&ann),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Not someone else's, unless an admin.
    let (s, _) = acme
        .call(
            "PUT",
            "/api/v1/users/admin/display-name",
            Some(json!({"display_name": "Boss"})),
            Some(&ann),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = acme
        .put(
            "/api/v1/users/ann/display-name",
            json!({"display_name": "Ann \u{202E}eeL"}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = acme
        .put(
            "/api/v1/users/ghost/display-name",
            json!({"display_name": "Ghost"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = acme
        .call("GET", "/api/v1/colleagues", None, Some(&ann))
        .await;
    assert_eq!(s, StatusCode::OK);
    let ann_row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ann")
        .unwrap();
    assert_eq!(ann_row["display_name"], "Ann Lee");
}
