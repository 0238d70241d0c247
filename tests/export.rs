//! CSV export (`GET /api/v1/conversations/export.csv`) on real nodes through HTTP.
//!
//! The promise: for every folder, filter, search and order the export lists the same rows as
//! the inbox, in the same order; its text is RFC 4180 (parsed here by a strict reader that
//! takes CRLF only); a cell a spreadsheet would run as a formula starts with `'`; and a bad
//! parameter is the list's own 4xx, with no CSV.

mod common;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use common::TestNode;
use futures_util::stream::{self, StreamExt};
use parley::domain::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

const EXPORT: &str = "/api/v1/conversations/export.csv";

/// A strict RFC 4180 reader: records end with CRLF; a quoted field may hold anything, `""`
/// standing for `"`; a bare CR or LF outside quotes, or a quote inside an unquoted field,
/// is an error.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_start => {
                loop {
                    match chars.next().expect("unterminated quoted field") {
                        '"' if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        '"' => break,
                        c => field.push(c),
                    }
                }
                at_start = false;
                assert!(
                    matches!(chars.peek(), Some(',') | Some('\r') | None),
                    "text after a closing quote: {field:?}"
                );
            }
            '"' => panic!("a quote inside an unquoted field: {field:?}"),
            ',' => {
                record.push(std::mem::take(&mut field));
                at_start = true;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF after {field:?}");
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                at_start = true;
            }
            '\n' => panic!("a bare LF outside quotes after {field:?}"),
            c => {
                field.push(c);
                at_start = false;
            }
        }
    }
    assert!(
        record.is_empty() && field.is_empty(),
        "the last record has no CRLF"
    );
    records
}

/// What a cell must say: OWASP's neutralised form of `v`.
fn cell(v: &str) -> String {
    if v.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{v}")
    } else {
        v.to_string()
    }
}

const HEADER: [&str; 13] = [
    "id",
    "kind",
    "partner",
    "subject",
    "topic",
    "reference_id",
    "due_date",
    "progress",
    "state",
    "assignee",
    "created",
    "last_activity",
    "last_message",
];

async fn export(node: &TestNode, query: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = reqwest::Client::new().get(format!("{}{EXPORT}?{query}", node.base));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// The export's rows (without the header), checking the answer's shape on the way.
async fn rows(node: &TestNode, query: &str) -> Vec<Vec<String>> {
    let r = export(node, query, Some(&node.token)).await;
    assert_eq!(r.status(), StatusCode::OK, "{query}");
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "text/csv; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let mut records = parse_csv(&text);
    assert_eq!(records.remove(0), HEADER, "{query}");
    for r in &records {
        assert_eq!(r.len(), HEADER.len(), "{query}: {r:?}");
    }
    records
}

/// The inbox's items for `query`, in order, walking every page (7 rows each).
async fn listed(node: &TestNode, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let c = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (s, v) = node
            .get(&format!("/api/v1/conversations?limit=7&{query}{c}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{query}: {v}");
        out.extend(v["items"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn text(v: &Value) -> String {
    v.as_str().map(String::from).unwrap_or_default()
}

fn time(v: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v)
        .unwrap_or_else(|e| panic!("{v:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// The row the export must have for one inbox item.
fn expected(item: &Value, names: &HashMap<&str, &str>) -> Vec<String> {
    let partner = item["partner"].as_str().unwrap();
    let topic = item
        .get("topic")
        .map(|t| format!("{}:{}", text(&t["kind"]), text(&t["ref"])))
        .unwrap_or_default();
    [
        text(&item["id"]),
        text(&item["kind"]),
        names
            .get(partner)
            .map(|n| n.to_string())
            .unwrap_or(partner.into()),
        text(&item["subject"]),
        topic,
        text(&item["reference_id"]),
        text(&item["due_date"]),
        text(&item["progress"]),
        text(&item["state"]),
        String::new(),
        String::new(),
        String::new(),
        text(&item["last_message_preview"]),
    ]
    .iter()
    .map(|v| cell(v))
    .collect()
}

fn assert_row(row: &[String], item: &Value, names: &HashMap<&str, &str>, query: &str) {
    let want = expected(item, names);
    for (i, col) in HEADER.iter().enumerate() {
        match *col {
            "created" => assert_eq!(time(&row[i]), time(item["created_at"].as_str().unwrap())),
            "last_activity" => assert_eq!(
                time(&row[i]),
                time(item["last_activity_at"].as_str().unwrap())
            ),
            _ => assert_eq!(row[i], want[i], "{query}: column {col} of {}", want[0]),
        }
    }
}

const SUBJECTS: [&str; 6] = [
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1",
    "-2",
    "@SUM(A1)",
    "Comma, and \"quotes\"",
    "Pallet count 5",
];

/// A supplier node with conversations of every shape: kinds, partners, topics, reference
/// IDs (one is `-5`), due dates past and future, progress, resolved ones, unread ones, and
/// subjects and bodies that need quoting or neutralising.
async fn node_with_data() -> (TestNode, Vec<String>) {
    let node = TestNode::start("bolt", Role::Supplier).await;
    let bodies: Vec<Value> = (0..30)
        .map(|i| {
            let task = i % 2 == 0;
            let subject = SUBJECTS
                .get(i)
                .map(|s| s.to_string())
                .unwrap_or_else(|| format!("Pallet count {i}"));
            let mut b = json!({
                "kind": if task { "task" } else { "message" },
                "partner": if i % 3 == 0 { "zeta" } else { "acme" },
                "subject": subject,
            });
            match i % 4 {
                0 => b["topic"] = json!({"kind": "order", "ref": "PO-1"}),
                1 => b["topic"] = json!({"kind": "item", "ref": format!("SKU-{i}")}),
                _ => {}
            }
            match i % 5 {
                0 => b["reference_id"] = json!("-5"),
                1 => b["reference_id"] = json!(format!("CASE-{i}")),
                _ => {}
            }
            if task {
                match i % 3 {
                    0 => b["due_date"] = json!(format!("2020-01-{:02}", i % 28 + 1)),
                    1 => b["due_date"] = json!(format!("2099-02-{:02}", i % 28 + 1)),
                    _ => {}
                }
            }
            match i % 6 {
                0 => b["body"] = json!("line one\r\nline two, with \"quotes\"\nand a bare LF"),
                1 => b["body"] = json!("=cmd|' /C calc'!A0"),
                5 => b["body"] = json!("\tTabbed reply"),
                3 => {}
                _ => b["body"] = json!(format!("hello {i}")),
            }
            b
        })
        .collect();
    let ids: Vec<String> = stream::iter(bodies)
        .then(|b| {
            let node = &node;
            async move { node.create(b).await["id"].as_str().unwrap().to_string() }
        })
        .collect()
        .await;
    for (i, id) in ids.iter().enumerate() {
        let conv = format!("/api/v1/conversations/{id}");
        if i % 2 == 0 && i % 8 == 0 {
            let (s, v) = node
                .put(
                    &format!("{conv}/progress"),
                    json!({"progress": "completed"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        } else if i % 2 == 0 && i % 8 == 2 {
            let (s, v) = node
                .put(
                    &format!("{conv}/progress"),
                    json!({"progress": "in_progress"}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        if i % 5 == 2 {
            let (s, v) = node.post(&format!("{conv}/resolve"), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        if i % 4 == 3 {
            let (s, v) = node.post(&format!("{conv}/unread"), json!({})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
    }
    (node, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_folder_and_filter_exports_the_inbox_rows_in_order() {
    let (node, ids) = node_with_data().await;
    let names: HashMap<&str, &str> = [("acme", "acme Co"), ("zeta", "zeta Co")].into();
    let folders = [
        "",
        "folder=inbox&",
        "folder=tasks&",
        "folder=action&",
        "folder=resolved&",
        "folder=unread&",
        "folder=all&",
    ];
    let filters = [
        "",
        "kind=task",
        "kind=message",
        "partner=acme",
        "progress=completed",
        "topic_ref=PO-1",
        "topic_kind=item",
        "reference_id=-5",
        "overdue=true",
        "overdue=false",
        "q=pallet",
        "sort=due",
        "kind=task&sort=due",
        "q=pallet&sort=due",
        "partner=zeta&overdue=false&kind=task",
    ];
    let mut nonempty = 0;
    for folder in folders {
        for filter in filters {
            let query = format!("{folder}{filter}");
            let items = listed(&node, &query).await;
            let got = rows(&node, &query).await;
            let got_ids: Vec<&str> = got.iter().map(|r| r[0].as_str()).collect();
            let want_ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
            assert_eq!(got_ids, want_ids, "{query}: the inbox's rows, in its order");
            for (row, item) in got.iter().zip(&items) {
                assert_row(row, item, &names, &query);
            }
            nonempty += usize::from(!items.is_empty());
        }
    }
    assert!(
        nonempty > 60,
        "the data set must give most views rows ({nonempty})"
    );

    // The cells themselves, read without the helper: neutralised and quoted as promised.
    let all = rows(&node, "folder=all").await;
    let subject = |id: &str| all.iter().find(|r| r[0] == id).unwrap()[3].clone();
    assert_eq!(
        subject(&ids[0]),
        "'=HYPERLINK(\"http://evil.example\",\"click\")"
    );
    assert_eq!(subject(&ids[1]), "'+1");
    assert_eq!(subject(&ids[2]), "'-2");
    assert_eq!(subject(&ids[3]), "'@SUM(A1)");
    assert_eq!(subject(&ids[4]), "Comma, and \"quotes\"");
    let row5 = all.iter().find(|r| r[0] == ids[5]).unwrap();
    assert_eq!(row5[12], "'\tTabbed reply");
    let row0 = all.iter().find(|r| r[0] == ids[0]).unwrap();
    assert_eq!(row0[5], "'-5");
    assert_eq!(row0[4], "order:PO-1");
    assert_eq!(
        row0[12],
        "line one\r\nline two, with \"quotes\"\nand a bare LF"
    );
    let row1 = all.iter().find(|r| r[0] == ids[1]).unwrap();
    assert_eq!(row1[12], "'=cmd|' /C calc'!A0");
    assert_eq!(row1[2], "acme Co");
    let raw = export(&node, "folder=all", Some(&node.token))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        raw.contains("\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"click\"\")\""),
        "{raw}"
    );
    assert!(raw.contains(",'-5,"), "{raw}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_named_and_a_cursor_continues_the_list() {
    let (node, _) = node_with_data().await;
    // Named for the folder and the node's date (either side of a midnight during the call).
    for (query, folder) in [
        ("folder=inbox", "inbox"),
        ("kind=task", "all"),
        ("folder=action", "action"),
    ] {
        let before = Utc::now().date_naive();
        let r = export(&node, query, Some(&node.token)).await;
        let after = Utc::now().date_naive();
        assert_eq!(r.status(), StatusCode::OK);
        let got = r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        let name = |d| format!("attachment; filename=\"parley-{folder}-{d}.csv\"");
        assert!(got == name(before) || got == name(after), "{query}: {got}");
    }
    for sort in ["activity", "due"] {
        let (_, first) = node
            .get(&format!(
                "/api/v1/conversations?folder=all&sort={sort}&limit=7"
            ))
            .await;
        let cursor = first["next_cursor"].as_str().unwrap();
        let query = format!("folder=all&sort={sort}");
        let rest: Vec<String> = listed(&node, &query).await[7..]
            .iter()
            .map(|i| text(&i["id"]))
            .collect();
        let got: Vec<String> = rows(&node, &format!("{query}&cursor={cursor}"))
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(got, rest, "sort={sort}: the rows after the cursor");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_the_lists_error_and_no_csv() {
    let node = TestNode::start("bolt", Role::Supplier).await;
    for i in 0..3 {
        node.create(json!({"kind": "task", "partner": "acme", "subject": format!("T {i}"), "due_date": "2099-01-01"}))
            .await;
    }
    let (_, due) = node.get("/api/v1/conversations?sort=due&limit=1").await;
    let due_cursor = due["next_cursor"].as_str().unwrap().to_string();
    let cases = [
        ("cursor=nonsense", 400),
        ("cursor=%2B1.00000000000000000000000000000000", 400),
        (&*format!("cursor={due_cursor}"), 400),
        ("folder=trash", 400),
        ("sort=random", 400),
        ("folder=inbox&state=resolved", 400),
        ("folder=resolved&awaiting_reply=true", 400),
        ("partner=NOT%20VALID", 400),
        ("kind=memo", 400),
        ("overdue=maybe", 400),
    ];
    for (query, status) in cases {
        let r = export(&node, query, Some(&node.token)).await;
        assert_eq!(r.status().as_u16(), status, "{query}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/json"), "{query}: {ct}");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"].is_string() && v["detail"].is_string(),
            "{query}: {v}"
        );
        // The list refuses the same query the same way.
        let (s, lv) = node.get(&format!("/api/v1/conversations?{query}")).await;
        assert_eq!(s.as_u16(), status, "{query}: {lv}");
        assert_eq!(lv["error"], v["error"], "{query}");
    }
    let r = reqwest::Client::new()
        .post(format!("{}{EXPORT}", node.base))
        .bearer_auth(&node.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "GET");
    for token in [None, Some("wrong")] {
        let r = export(&node, "folder=inbox", token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(!r.text().await.unwrap().contains("id,kind"));
    }

    // A browser's plain link: the session cookie alone, no CSRF token needed to read.
    let http = reqwest::Client::new();
    let cookie = node.session_cookie().await;
    let r = http
        .get(format!("{}{EXPORT}?folder=inbox", node.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(parse_csv(&r.text().await.unwrap()).len(), 4);
    node.stop().await;
}

/// More rows than one read of the export takes: every row once, in the inbox's order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_longer_than_one_read_lists_every_row_once() {
    let node = TestNode::start("acme", Role::Retailer).await;
    let n = 1100;
    let _: Vec<Value> = stream::iter(0..n)
        .map(|i| {
            let node = &node;
            async move {
                node.create(
                    json!({"kind": "message", "partner": "bolt", "subject": format!("Row {i}")}),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for query in ["folder=inbox", "folder=all&sort=due"] {
        let mut want = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let c = cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let (_, v) = node
                .get(&format!("/api/v1/conversations?limit=200&{query}{c}"))
                .await;
            want.extend(
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| text(&i["id"])),
            );
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(want.len(), n);
        let got: Vec<String> = rows(&node, query)
            .await
            .into_iter()
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(got, want, "{query}");
    }
    node.stop().await;
}

/// An export that cannot finish (here: the node starts to shut down after the first read)
/// says so in its last line, a record of one field that no reader takes for a row; it never
/// ends as a well-formed file that is only missing rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_short_says_so_in_its_last_line() {
    let node = TestNode::start("acme", Role::Retailer).await;
    let _: Vec<Value> = stream::iter(0..520)
        .map(|i| {
            let node = &node;
            async move {
                node.create(
                    json!({"kind": "message", "partner": "bolt", "subject": format!("Row {i}")}),
                )
                .await
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    node.svc().begin_shutdown();
    let r = export(&node, "folder=inbox", Some(&node.token)).await;
    // The first read was made before the answer started; the next one is refused.
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let records = parse_csv(&text);
    let last = records.last().unwrap();
    assert_eq!(
        last.len(),
        1,
        "the last record is the notice alone: {last:?}"
    );
    assert!(
        last[0].starts_with("ERROR: this export is incomplete")
            && last[0].contains("shutting down"),
        "{last:?}"
    );
    // Header, the first read's rows, the notice: fewer rows than there are.
    assert_eq!(records.len(), 1 + 500 + 1);
    assert!(
        records[1..records.len() - 1]
            .iter()
            .all(|r| r.len() == HEADER.len())
    );
    node.stop().await;
}
