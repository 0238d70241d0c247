//! Damage stays where it is.
//!
//! A byte flipped on disk (a bad sector, a bit rot, a copy cut short) once spread: one flipped
//! byte in an inbox row made the inbox answer 500 to everyone, one in a document chunk served
//! that conversation with messages silently missing and went on accepting writes into it, and
//! after one `parley check` or one unclean stop the database no longer opened at all, because
//! redb verifies every page checksum when it recovers and refuses a file in which one fails.
//!
//! These tests flip real bytes in the database file of a real node (found by writing a unique
//! marker and searching the file for it), run the real binary on it, stop it with SIGKILL, and
//! check what the node and `parley check` say: the damaged conversation is named by its own
//! requests and by the check, refused for writing, and everything else keeps working;
//! `parley check` leaves the file byte for byte as it was; `parley check --repair` rebuilds
//! what is derived.

mod common;

use common::bin::*;
use serde_json::json;
use uuid::Uuid;

/// `parley check` without `--repair`: fails, names what it must, and leaves the file as it was.
fn check_reports(node: &Node, wants: &[&str]) -> String {
    let before = sha(&node.db());
    let (ok, out) = cli(&node.dir, &["check"]);
    assert!(!ok, "check must fail on damage:\n{out}");
    for w in wants {
        assert!(
            out.contains(w),
            "expected {w:?} in `parley check` output:\n{out}"
        );
    }
    assert_eq!(
        sha(&node.db()),
        before,
        "`parley check` changed the database file:\n{out}"
    );
    out
}

/// The damaged conversation answers its own requests with `damaged`, naming it and saying
/// what to do; it lists, loads and takes replies for nobody; the others are served.
async fn assert_contained(node: &Node, s: &Server, victim: Uuid, healthy: Uuid) {
    let (st, v) = node
        .call(s, "GET", &format!("/conversations/{victim}"), None)
        .await;
    assert_eq!(st, 500, "{v}");
    assert_eq!(v["error"], "damaged", "{v}");
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(&victim.to_string()) && detail.contains("parley check"),
        "{v}"
    );
    assert!(node.inbox(s, "").await.contains(&healthy));
    let (st, v) = node
        .call(s, "GET", &format!("/conversations/{healthy}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_document_chunk_is_named_refused_and_contained() {
    let node = Node::new();
    let s = start(&node.dir).await.unwrap();
    let marker = format!("chunkmark{}", Uuid::new_v4().simple());
    let victim = node.create(&s, "Victim of a bad sector", None).await;
    assert_eq!(
        node.reply(&s, victim, &format!("the body that gets damaged: {marker}"))
            .await
            .0,
        201
    );
    assert_eq!(
        node.reply(&s, victim, "a later reply, stored in its own chunk")
            .await
            .0,
        201
    );
    let healthy = node.create(&s, "Healthy neighbour", None).await;
    assert_eq!(node.reply(&s, healthy, "fine").await.0, 201);
    stop(s).await;

    assert!(
        flip(&node.db(), &marker) >= 1,
        "the marker must be in the file"
    );
    check_reports(
        &node,
        &[&format!("damaged: {victim}"), "page checksums fail"],
    );

    // Reads only, then an unclean stop: nothing but meeting the damage rewrote its page.
    let s = start(&node.dir).await.unwrap();
    let (ok, out) = cli(&node.dir, &["check"]);
    assert!(
        !ok && out.contains("in use"),
        "check against a running node: {out}"
    );
    assert_contained(&node, &s, victim, healthy).await;
    crash(s).await;
    // The file needs recovery now; the check recovers a copy and leaves the file as it is.
    check_reports(&node, &[&format!("damaged: {victim}")]);
    let s = start(&node.dir)
        .await
        .expect("the node must open after an unclean stop");
    assert_contained(&node, &s, victim, healthy).await;

    // Never written to: a reply and an edit are refused, and the document stays as it was.
    let (st, v) = node.reply(&s, victim, "into a damaged document").await;
    assert_eq!((st, v["error"].as_str()), (500, Some("damaged")), "{v}");
    let (st, v) = node
        .call(
            &s,
            "PATCH",
            &format!("/conversations/{victim}"),
            Some(json!({"subject": "renamed"})),
        )
        .await;
    assert_eq!((st, v["error"].as_str()), (500, Some("damaged")), "{v}");
    assert_eq!(node.reply(&s, healthy, "still taking replies").await.0, 201);
    crash(s).await;

    let s = start(&node.dir)
        .await
        .expect("opens after a second unclean stop");
    assert_contained(&node, &s, victim, healthy).await;
    stop(s).await;
    // The check names it; its pages verify again.
    let out = check_reports(
        &node,
        &[&format!("damaged: {victim}"), "page checksums verify"],
    );
    assert!(!out.contains("index differs"), "{out}");
    let out = cli(&node.dir, &["check", "--repair"]).1;
    assert!(out.contains(&format!("damaged: {victim}")), "{out}");
}

async fn subject_in_inbox(node: &Node, s: &Server, id: Uuid) -> String {
    let (st, v) = node.call(s, "GET", "/conversations?limit=200", None).await;
    assert_eq!(st, 200, "{v}");
    let row = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == json!(id));
    row.unwrap_or_else(|| panic!("{id} is not listed: {v}"))["subject"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_an_inbox_row_is_derived_again_from_its_document() {
    let node = Node::new();
    let s = start(&node.dir).await.unwrap();
    // The row's JSON is the only place where the subject follows `"subject":"`.
    let still_json = format!("Still valid JSON {}", Uuid::new_v4().simple());
    let broken = format!("Broken JSON {}", Uuid::new_v4().simple());
    let a = node.create(&s, &still_json, None).await;
    let b = node.create(&s, &broken, None).await;
    let healthy = node.create(&s, "Healthy neighbour", None).await;
    stop(s).await;

    // A letter of one subject (still valid JSON: only the row's checksum can tell), and the
    // `:` before the other (no longer JSON: this answered 500 to everyone).
    let needle_a = format!("\"subject\":\"{still_json}\"");
    let needle_b = format!("\"subject\":\"{broken}\"");
    assert!(flip_at(&node.db(), &needle_a, needle_a.len() - 5) >= 1);
    assert!(flip_at(&node.db(), &needle_b, 9) >= 1);
    check_reports(
        &node,
        &[
            &format!("index differs from document: {a}"),
            &format!("index differs from document: {b}"),
        ],
    );

    let s = start(&node.dir).await.unwrap();
    // A write meets b's damaged row first: its entries are forgotten and it is listed afresh.
    assert_eq!(node.reply(&s, b, "a reply over a damaged row").await.0, 201);
    // The inbox answers everyone, with a's row derived from its document.
    let listed = node.inbox(&s, "").await;
    assert!(
        listed.contains(&a) && listed.contains(&b) && listed.contains(&healthy),
        "{listed:?}"
    );
    assert_eq!(subject_in_inbox(&node, &s, a).await, still_json);
    assert_eq!(subject_in_inbox(&node, &s, b).await, broken);
    let (st, v) = node
        .call(&s, "GET", &format!("/conversations/{a}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    crash(s).await;

    let s = start(&node.dir)
        .await
        .expect("the node must open after an unclean stop");
    assert_eq!(subject_in_inbox(&node, &s, a).await, still_json);
    assert_eq!(node.reply(&s, a, "and a reply after it").await.0, 201);
    crash(s).await;
    // The rows were rewritten from the documents: nothing is left to repair.
    let out = cli_ok(&node.dir, &["check"]);
    assert!(
        out.contains("all indexes agree") && out.contains("page checksums verify"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_search_entry_is_reported_and_rebuilt_by_repair() {
    let node = Node::new();
    let s = start(&node.dir).await.unwrap();
    let term = format!("qx{}", Uuid::new_v4().simple());
    // Search terms are stored lower-cased; the document and the row keep the subject's case.
    let victim = node
        .create(
            &s,
            &format!("Find me by QX{}", &term[2..].to_uppercase()),
            None,
        )
        .await;
    let healthy = node.create(&s, "Healthy neighbour", None).await;
    assert_eq!(node.inbox(&s, &format!("&q={term}")).await, vec![victim]);
    stop(s).await;

    assert!(flip(&node.db(), &term) >= 1);
    check_reports(
        &node,
        &[
            &format!("index differs from document: {victim}"),
            "page checksums fail",
        ],
    );
    // A one-off command closes the file cleanly (it used to exit with it open, so the next
    // open had to recover, walked every page and refused the file for this one).
    cli_ok(&node.dir, &["partner", "list"]);
    // Nothing reads the damaged entry (a search for it just misses), so nothing rewrites its
    // page; the node still opens after an unclean stop, because recovery does not walk pages.
    let s = start(&node.dir)
        .await
        .expect("opens after a one-off command");
    assert!(node.inbox(&s, &format!("&q={term}")).await.is_empty());
    assert!(node.inbox(&s, "").await.contains(&healthy));
    crash(s).await;
    let s = start(&node.dir)
        .await
        .expect("the node must open after an unclean stop with a damaged index page");
    assert!(node.inbox(&s, "").await.contains(&victim));
    stop(s).await;
    check_reports(&node, &[&format!("index differs from document: {victim}")]);

    let out = cli_ok(&node.dir, &["check", "--repair"]);
    assert!(
        out.contains("indexes rebuilt") && out.contains("all indexes agree"),
        "{out}"
    );
    assert!(out.contains("page checksums verify"), "{out}");
    let s = start(&node.dir).await.unwrap();
    assert_eq!(node.inbox(&s, &format!("&q={term}")).await, vec![victim]);
    assert!(node.inbox(&s, "").await.contains(&healthy));
    crash(s).await;
    let s = start(&node.dir)
        .await
        .expect("the node must open after an unclean stop");
    assert_eq!(node.inbox(&s, &format!("&q={term}")).await, vec![victim]);
    stop(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_a_file_is_named_and_repair_fetches_it_again() {
    let node = Node::new();
    let s = start(&node.dir).await.unwrap();
    let marker = format!("filemark{}", Uuid::new_v4().simple());
    let mut pdf = format!("%PDF-1.7\n{marker}\n").into_bytes();
    pdf.extend(std::iter::repeat_n(b'x', 600_000));
    let r = reqwest::Client::new()
        .post(s.url("/attachments"))
        .bearer_auth(&node.token)
        .header("x-filename", "pod.pdf")
        .header("content-type", "application/pdf")
        .body(pdf.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let up: serde_json::Value = r.json().await.unwrap();
    let sha256 = up["sha256"].as_str().unwrap().to_string();
    let (st, c) = node
        .call(
            &s,
            "POST",
            "/conversations",
            Some(
                json!({"kind": "message", "partner": "bolt", "subject": "POD",
                        "body": "attached", "attachments": [sha256]}),
            ),
        )
        .await;
    assert_eq!(st, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    stop(s).await;
    assert!(flip(&node.db(), &marker) >= 1, "the marker is in the file");

    let out = check_reports(&node, &["damaged file:", &sha256]);
    assert!(out.contains("files checked"), "{out}");
    let (ok, out) = cli(&node.dir, &["check", "--repair"]);
    assert!(ok, "after --repair the check is clean:\n{out}");

    // The file is gone (never served with a flipped byte) and shows as arriving, to be fetched
    // again from the partner.
    let s = start(&node.dir).await.unwrap();
    let (st, v) = node
        .call(&s, "GET", &format!("/conversations/{id}"), None)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["messages"][0]["attachments"][0]["state"], "arriving",
        "{v}"
    );
    let r = reqwest::Client::new()
        .get(s.url(&format!("/attachments/{sha256}")))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    stop(s).await;
}
