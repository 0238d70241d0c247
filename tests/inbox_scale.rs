//! Inbox pages, folders and search stay index lookups at 100,000 conversations.
//!
//! The rows are written straight into the derived index (no Automerge documents: only the
//! read side is measured). Ignored by default because filling the index takes a while in a
//! debug build: `cargo test --release --test inbox_scale -- --ignored --nocapture`.

use std::time::Instant;

use chrono::{DateTime, Duration, NaiveDate};
use parley::domain::{Author, Facet, Kind, OrgId, Progress, State, Summary, Topic, TopicKind};
use parley::store::query::{self, InboxQuery};
use parley::store::search;
use parley::store::{Store, StoreError, StoreOptions, index};
use uuid::Uuid;

const N: usize = 100_000;

fn row(i: usize) -> Summary {
    let me = OrgId::parse("acme").unwrap();
    let partner = OrgId::parse(["bolt", "zeta", "kilo"][i % 3]).unwrap();
    let t = DateTime::from_timestamp(1_750_000_000 + i as i64 * 60, 0).unwrap();
    let task = i.is_multiple_of(4);
    Summary {
        id: Uuid::from_u128(i as u128 + 1),
        kind: if task { Kind::Task } else { Kind::Message },
        partner: partner.clone(),
        subject: format!(
            "Order {i} {}",
            ["kettle", "toaster", "pallet", "invoice"][i % 4]
        ),
        topic: Some(Topic {
            kind: TopicKind::Item,
            reference: format!("SKU-{i}"),
            label: None,
            url: None,
        }),
        reference_id: Some(format!("CASE-{i}")),
        state: if i.is_multiple_of(10) {
            State::Resolved
        } else {
            State::Open
        },
        progress: task.then_some(Progress::Open),
        due_date: task.then(|| {
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap() + Duration::days((i % 700) as i64)
        }),
        created_by: Author {
            org: me.clone(),
            user: "admin".into(),
        },
        created_at: t,
        last_activity_at: t,
        message_count: 1,
        last_message_org: Some(if i.is_multiple_of(7) { partner } else { me }),
        last_message_preview: Some("hello".into()),
        assignee: None,
    }
}

#[test]
#[ignore]
fn inbox_queries_at_100k() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let t = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(10_000) {
        let chunk = chunk.to_vec();
        store
            .write_blocking(move |ctx| -> Result<(), StoreError> {
                for i in chunk {
                    index::index_conversation(ctx.tx(), None, &row(i))?;
                }
                Ok(())
            })
            .unwrap();
    }
    eprintln!("indexed {N} rows in {:?}", t.elapsed());
    let today = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(store.sweep_overdue(today)).unwrap();
    let cases: Vec<(&str, Vec<Facet>)> = vec![
        ("Inbox (open)", vec![Facet::State(State::Open)]),
        (
            "Tasks (open tasks)",
            vec![Facet::Kind(Kind::Task), Facet::State(State::Open)],
        ),
        ("Action required", vec![Facet::ActionRequired]),
        ("Resolved", vec![Facet::State(State::Resolved)]),
    ];
    for (name, filters) in cases {
        let q = InboxQuery {
            filters,
            exclude_overdue: false,
            cursor: None,
            limit: 50,
            user: "admin".into(),
            today,
        };
        let t = Instant::now();
        let page = rt
            .block_on(store.read(move |tx| query::inbox(tx, &q)))
            .unwrap();
        let took = t.elapsed();
        eprintln!(
            "{name}: {} rows of {} in {took:?}",
            page.items.len(),
            page.total
        );
        assert_eq!(page.items.len(), 50);
        assert!(took.as_millis() < 500, "{name} took {took:?}");
    }
    for text in ["CASE-99999", "sku-4242", "toaster order 12"] {
        let terms = parley::domain::search::query_terms(text);
        let q = InboxQuery {
            filters: vec![],
            exclude_overdue: false,
            cursor: None,
            limit: 50,
            user: "admin".into(),
            today,
        };
        let t = Instant::now();
        let (page, _) = rt
            .block_on(store.read(move |tx| search::search(tx, &terms, &q)))
            .unwrap();
        let took = t.elapsed();
        eprintln!("search {text:?}: {} matches in {took:?}", page.total);
        assert!(page.total >= 1);
        assert!(took.as_millis() < 500, "search {text:?} took {took:?}");
    }
}
