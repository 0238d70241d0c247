//! Assignment and internal notes reach our org's other sites and never the partner.
//!
//! Three real nodes on real sockets: `acme` site 1, `acme` site 2 (another site of the same
//! org) and the partner `bolt`, paired with both acme sites through recording proxies, so
//! every byte between acme and bolt is kept. At site 1 a colleague writes internal notes
//! carrying a marker and assigns the task; then the thread goes on in public, so sync to the
//! partner demonstrably ran after the notes existed. The marker must appear at site 2, and at
//! bolt in no API answer, in no stored document (every value of every change of every
//! document it holds), and in none of the bytes that crossed (every Automerge change of every
//! sync message decoded, which inflates what Automerge compressed; the raw bytes searched too).

mod common;

use automerge::ReadDoc;
use common::wstap::Recorder;
use common::{TestNode, eventually, pair};
use parley::domain::Role;
use parley::domain::team::is_team_id;
use parley_sync::{Record, decode_frame};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

/// Every value of every change of every document `n` stores, as text.
fn stored_changes_text(n: &TestNode) -> (String, usize, Vec<u128>) {
    let store = n.svc().store();
    let tx = store.begin_read().unwrap();
    let ids = parley::store::docs::all_ids(&tx).unwrap();
    let mut text = String::new();
    for id in &ids {
        let d = parley::store::docs::load_automerge(&tx, *id)
            .unwrap()
            .unwrap();
        for c in d.get_changes(&[]) {
            text.push_str(&serde_json::to_string(&c.decode()).unwrap());
        }
    }
    (text, ids.len(), ids)
}

/// Decodes every sync message the recorders saw: the documents they named, and the text of
/// every change they carried. The chunks of each document are loaded together (the partner's
/// first link carried every change from the start, so no change waits for a missing one:
/// checked), then every change is decoded, which inflates what Automerge compressed.
fn wire_text(recs: &[&Recorder]) -> (String, Vec<u128>, usize) {
    let mut text = String::new();
    let mut ids = Vec::new();
    let mut docs: std::collections::HashMap<u128, automerge::Automerge> = Default::default();
    for r in recs {
        for (_, m) in r.messages.lock().unwrap().iter() {
            let frame = decode_frame(m).expect("a sync frame");
            for rec in frame.records {
                match rec {
                    Record::Sync { doc, message } => {
                        let id = u128::from_be_bytes(doc.0);
                        ids.push(id);
                        let msg = automerge::sync::Message::decode(&message).unwrap();
                        let d = docs.entry(id).or_default();
                        for chunk in msg.changes.iter() {
                            d.load_incremental(chunk).expect("a chunk Automerge loads");
                        }
                    }
                    Record::Feed { entries, .. } => {
                        ids.extend(entries.iter().map(|e| u128::from_be_bytes(e.doc.0)))
                    }
                    other => text.push_str(&format!("{other:?}")),
                }
            }
        }
    }
    let mut changes = 0;
    for d in docs.values() {
        assert!(
            d.get_missing_deps(&[]).is_empty(),
            "a change crossed without its dependencies"
        );
        for c in d.get_changes(&[]) {
            changes += 1;
            text.push_str(&serde_json::to_string(&c.decode()).unwrap());
        }
    }
    (text, ids, changes)
}

async fn conversation(n: &TestNode, id: &str) -> Value {
    let (s, c) = n.get(&format!("/api/v1/conversations/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notes_and_assignment_reach_our_other_site_and_never_the_partner() {
    let site1 = TestNode::start("acme", Role::Retailer).await;
    let site2 = TestNode::start("acme", Role::Retailer).await;
    let bolt = TestNode::start("bolt", Role::Supplier).await;
    // bolt reaches each acme site only through a recorder; acme sites cannot dial bolt. Each
    // node sets its own address once its server is up: wait for that before replacing it.
    for n in [&site1, &site2, &bolt] {
        eventually(10, "the node's server", || async {
            n.svc().public_url().map(|_| ())
        })
        .await;
    }
    let rec1 = Recorder::start(site1.addr()).await;
    let rec2 = Recorder::start(site2.addr()).await;
    bolt.svc().set_public_url(None);
    pair(&site1, &site2).await;
    site1.svc().set_public_url(Some(rec1.url()));
    pair(&site1, &bolt).await;
    site2.svc().set_public_url(Some(rec2.url()));
    pair(&site2, &bolt).await;

    let (s, _) = site1
        .post(
            "/api/v1/users",
            json!({"name": "ann", "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let c = site1
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Thin description on SKU 4411", "body": "please add the fabric"}))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    eventually(30, "the task at bolt and at site 2", || async {
        (common::inbox_ids(&bolt).await.contains(&id)
            && common::inbox_ids(&site2).await.contains(&id))
        .then_some(())
    })
    .await;

    let marker = format!("ZZ-INT-{}", Uuid::new_v4().simple());
    // A long note as well: Automerge compresses columns over 256 bytes, so only decoding
    // finds it on the wire.
    let long = format!(
        "{marker} {}",
        "the buyer wants it before the catalogue closes; ".repeat(20)
    );
    for body in [
        format!("{marker} they always ship late, chase on Monday"),
        long,
    ] {
        let (s, n) = site1
            .post(
                &format!("/api/v1/conversations/{id}/notes"),
                json!({ "body": body }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{n}");
        assert_eq!(n["visibility"], "internal");
    }
    let (s, a) = site1
        .put(
            &format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{a}");
    // The public thread goes on after the notes.
    let (s, _) = site1
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"body": "Adding the fabric now"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Site 2 gets both notes and the assignment, and lists it under the assignee.
    let at2 = eventually(30, "the notes and assignee at site 2", || async {
        let c = conversation(&site2, &id).await;
        (c["notes"].as_array().map(|n| n.len()) == Some(2) && c["assignee"] == "ann").then_some(c)
    })
    .await;
    assert!(at2["notes"][0]["body"].as_str().unwrap().contains(&marker));
    let (_, page) = site2.get("/api/v1/conversations?assignee=ann").await;
    assert_eq!(page["total"], 1, "{page}");
    // The changes feed lists the conversation once, at its latest change (the team one).
    let (_, ch) = site1.get("/api/v1/changes?since=0&limit=1000").await;
    let listed = ch["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.to_string().contains(&id))
        .count();
    assert_eq!(listed, 1, "{ch}");
    let (_, page) = site2
        .get(&format!("/api/v1/conversations?q={marker}&folder=all"))
        .await;
    assert_eq!(
        page["total"], 1,
        "a note's words are found at our other site: {page}"
    );

    // The partner has the public reply — so sync ran after the notes — and nothing else.
    let at_bolt = eventually(30, "the reply at bolt", || async {
        let c = conversation(&bolt, &id).await;
        (c["messages"].as_array().map(|m| m.len()) == Some(2)).then_some(c)
    })
    .await;
    // Give site 2's link to bolt the same chance: its copy of the reply reached bolt as well
    // (bolt then holds exactly site 2's heads for it, settled by the same sync).
    eventually(30, "site 2 and bolt in step", || async {
        let b = conversation(&bolt, &id).await;
        let s2 = conversation(&site2, &id).await;
        (b["messages"] == s2["messages"]).then_some(())
    })
    .await;

    // 1. No API answer at bolt carries the marker, the assignee or a note.
    assert!(at_bolt.get("assignee").is_none(), "{at_bolt}");
    assert_eq!(at_bolt["notes"], json!([]));
    for path in [
        format!("/api/v1/conversations/{id}"),
        "/api/v1/conversations?folder=all".to_string(),
        format!("/api/v1/conversations?q={marker}&folder=all"),
        "/api/v1/conversations?assignee=ann".to_string(),
        "/api/v1/changes?since=0".to_string(),
    ] {
        let (_, v) = bolt.get(&path).await;
        let text = v.to_string();
        assert!(
            !text.contains(&marker),
            "{path} at bolt shows the marker: {text}"
        );
        assert!(
            !text.contains("\"ann\""),
            "{path} at bolt shows the assignee: {text}"
        );
    }
    let (_, v) = bolt
        .get(&format!("/api/v1/conversations?q={marker}&folder=all"))
        .await;
    assert_eq!(v["total"], 0);

    // 2. No stored document at bolt holds it; bolt holds no team document at all.
    let (text, n, ids) = stored_changes_text(&bolt);
    assert!(n >= 1);
    assert!(
        ids.iter().all(|i| !is_team_id(*i)),
        "bolt stores a team document"
    );
    assert!(
        !text.contains(&marker),
        "a document at bolt carries the marker"
    );
    assert!(
        text.contains("Adding the fabric now"),
        "the decoding found the public reply"
    );
    // ... while site 2 does hold it (the check can see it where it is).
    let (text2, _, ids2) = stored_changes_text(&site2);
    assert!(text2.contains(&marker));
    assert!(ids2.iter().any(|i| is_team_id(*i)));

    // 3. Nothing that crossed between acme and bolt carries it, nor names a team document.
    let (text, docs, changes) = wire_text(&[&rec1, &rec2]);
    assert!(
        changes > 0,
        "the recorders saw the conversation's changes: {} and {} messages, {} bytes; {text:.2000}",
        rec1.messages.lock().unwrap().len(),
        rec2.messages.lock().unwrap().len(),
        rec1.raw.lock().unwrap().len()
    );
    assert!(
        text.contains("Adding the fabric now"),
        "the decoding found the public reply"
    );
    assert!(!text.contains(&marker), "a sync message carried the marker");
    assert!(
        docs.iter().all(|d| !is_team_id(*d)),
        "a team document id crossed"
    );
    for r in [&rec1, &rec2] {
        let raw = r.raw.lock().unwrap();
        assert!(
            !raw.windows(marker.len()).any(|w| w == marker.as_bytes()),
            "the raw bytes carried the marker"
        );
        assert!(!raw.windows(7).any(|w| w == b"ZZ-INT-"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_author_changes_a_note_and_bad_input_changes_nothing() {
    let acme = TestNode::start("acme", Role::Retailer).await;
    let (s, _) = acme
        .post(
            "/api/v1/users",
            json!({"name": "ann", "password": "a long password"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, t) = acme
        .post("/api/v1/tokens", json!({"name": "ann", "user": "ann"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    let ann = t["token"].as_str().unwrap().to_string();
    let c = acme
        .create(json!({"kind": "message", "partner": "bolt", "subject": "Returns in March", "body": "how many?"}))
        .await;
    let id = c["id"].as_str().unwrap();
    let (s, n) = acme
        .post(
            &format!("/api/v1/conversations/{id}/notes"),
            json!({"body": "ask finance first"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let note = n["id"].as_str().unwrap();
    let path = format!("/api/v1/conversations/{id}/notes/{note}");

    // Another user may neither edit nor delete it.
    let (s, e) = acme
        .call(
            "PATCH",
            &path,
            Some(json!({"body": "mine now"})),
            Some(&ann),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    let (s, _) = acme.call("DELETE", &path, None, Some(&ann)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Bad bodies, unknown ids, a team-class id posing as a conversation.
    let team_like = Uuid::from_u128(parley::domain::team::team_id(Uuid::parse_str(id).unwrap()));
    for (method, p, body, want) in [
        (
            "POST",
            format!("/api/v1/conversations/{id}/notes"),
            json!({"body": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/v1/conversations/{id}/notes"),
            json!({"body": "bell \u{7}"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/v1/conversations/{id}/notes"),
            json!({"body": "x".repeat(70_000)}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/v1/conversations/{id}/notes"),
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            format!("/api/v1/conversations/{}/notes", Uuid::new_v4()),
            json!({"body": "hi"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            format!("/api/v1/conversations/{team_like}/notes"),
            json!({"body": "hi"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "GET",
            format!("/api/v1/conversations/{team_like}"),
            json!(null),
            StatusCode::NOT_FOUND,
        ),
        (
            "PATCH",
            format!("/api/v1/conversations/{id}/notes/{}", Uuid::new_v4()),
            json!({"body": "x"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": "ghost"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": "two words"}),
            StatusCode::BAD_REQUEST,
        ),
        // A misspelt or missing field must not read as "unassign".
        (
            "PUT",
            format!("/api/v1/conversations/{id}/assignee"),
            json!({"asignee": "ann"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{id}/assignee"),
            json!({}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PUT",
            format!("/api/v1/conversations/{team_like}/assignee"),
            json!({"assignee": "ann"}),
            StatusCode::NOT_FOUND,
        ),
        (
            "POST",
            "/api/v1/conversations".to_string(),
            json!({"id": team_like, "kind": "message", "partner": "bolt", "subject": "x", "body": "y"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let body = (!body.is_null()).then_some(body);
        let (s, v) = acme.call(method, &p, body, Some(&acme.token)).await;
        assert_eq!(s, want, "{method} {p}: {v}");
        if s != StatusCode::NOT_FOUND || method != "GET" {
            common::assert_error(&v, "");
        }
    }
    let (s, v) = acme
        .call(
            "POST",
            &format!("/api/v1/conversations/{id}/notes"),
            Some(json!({"body": "hi"})),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    let c = conversation(&acme, id).await;
    assert_eq!(c["notes"].as_array().unwrap().len(), 1);
    assert_eq!(c["notes"][0]["body"], "ask finance first");
    assert!(c.get("assignee").is_none());

    // The author edits, then deletes.
    let (s, e) = acme
        .patch(&path, json!({"body": "ask finance, then the buyer"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(e["edited_at"].is_string());
    let (s, _) = acme.call("DELETE", &path, None, Some(&acme.token)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(conversation(&acme, id).await["notes"], json!([]));

    // Assign, list under "assigned to me" (for ann) and "unassigned", unassign.
    let (s, _) = acme
        .put(
            &format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, mine) = acme
        .call("GET", "/api/v1/conversations?assignee=me", None, Some(&ann))
        .await;
    assert_eq!(mine["total"], 1, "{mine}");
    assert_eq!(mine["items"][0]["assignee"], "ann");
    let (_, none) = acme.get("/api/v1/conversations?assignee=none").await;
    assert_eq!(none["total"], 0);
    let (_, admin_mine) = acme.get("/api/v1/conversations?assignee=me").await;
    assert_eq!(admin_mine["total"], 0);
    let (s, _) = acme
        .put(
            &format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": null}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, none) = acme.get("/api/v1/conversations?assignee=none").await;
    assert_eq!(none["total"], 1);
    let (s, v) = acme.get("/api/v1/conversations?assignee=two%20words").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");

    // Assignment in bulk: each conversation's own outcome; what is malformed changes nothing.
    let other = acme
        .create(json!({"kind": "task", "partner": "bolt", "subject": "Pallet labels", "body": "x"}))
        .await;
    let ids = json!([id, other["id"]]);
    let (s, r) = acme
        .post(
            "/api/v1/conversations/bulk",
            json!({"action": "assign", "assignee": "ann", "ids": ids}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["changed"], 2, "{r}");
    let (_, r) = acme
        .post(
            "/api/v1/conversations/bulk",
            json!({"action": "assign", "assignee": "ann", "ids": ids}),
        )
        .await;
    assert_eq!(r["unchanged"], 2, "assigned already: {r}");
    for (body, what) in [
        (json!({"action": "assign", "ids": ids}), "assignee missing"),
        (
            json!({"action": "resolve", "assignee": "ann", "ids": ids}),
            "assignee with another action",
        ),
        (
            json!({"action": "assign", "assignee": "ann", "progress": "open", "ids": ids}),
            "progress with assign",
        ),
    ] {
        let (s, v) = acme.post("/api/v1/conversations/bulk", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {v}");
    }
    let (s, r) = acme
        .post(
            "/api/v1/conversations/bulk",
            json!({"action": "assign", "assignee": "ghost", "ids": ids}),
        )
        .await;
    // An unknown assignee is one refusal for the whole request, not one per conversation.
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{r}");
    let (s, r) = acme
        .post("/api/v1/conversations/bulk", json!({"action": "assign", "assignee": null, "filter": {"folder": "inbox", "assignee": "ann"}}))
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["changed"], 2, "{r}");
    let (_, none) = acme.get("/api/v1/conversations?assignee=none").await;
    assert_eq!(none["total"], 2);

    // A rebuild of the indexes derives the same assignee rows from the team documents.
    let (s, _) = acme
        .put(
            &format!("/api/v1/conversations/{id}/assignee"),
            json!({"assignee": "ann"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    acme.svc().store().rebuild_indexes().unwrap();
    let (_, mine) = acme
        .call("GET", "/api/v1/conversations?assignee=me", None, Some(&ann))
        .await;
    assert_eq!(mine["total"], 1, "{mine}");
    let report = acme.svc().store().check().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}
