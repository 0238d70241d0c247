//! The store's story: everything written through the service survives a reopen, the derived
//! indexes agree with the documents, a lost index is rebuilt from the documents, and one
//! damaged document does not take the rest of the node down with it.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use parley::domain::commands::Command;
use parley::domain::{Facet, Kind, Progress, Role, State, Topic, TopicKind};
use parley::service::{Clock, CreateInput, InboxFilter, Principal, Service};
use parley::store::{Store, StoreOptions};

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

fn clock() -> Clock {
    Clock::Fixed(Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap())
}

async fn open(dir: &std::path::Path) -> Arc<Service> {
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || {
        Store::open(
            &d,
            StoreOptions {
                doc_cache: 4,
                ..Default::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    Service::new(store, clock())
}

fn input(
    kind: Kind,
    subject: &str,
    due: Option<&str>,
    topic: Option<(&str, TopicKind)>,
) -> CreateInput {
    CreateInput {
        id: None,
        kind,
        partner: "bolt".into(),
        subject: subject.into(),
        topic: topic.map(|(r, k)| Topic {
            kind: k,
            reference: r.into(),
            label: None,
            url: None,
        }),
        reference_id: Some(format!("REF-{subject}")),
        due_date: due.map(|d| d.parse().unwrap()),
        body: Some(format!("about {subject}")),
        idempotency_key: None,
    }
}

fn filter(filters: Vec<Facet>, overdue: Option<bool>) -> InboxFilter {
    InboxFilter {
        filters,
        overdue,
        cursor: None,
        limit: 50,
        q: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_everything_reopen_and_read_it_all_back() {
    let dir = tempfile::tempdir().unwrap();
    let svc = open(dir.path()).await;
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    svc.add_user(
        &parley::service::Principal::operator(),
        "admin",
        Some("password123".into()),
        true,
    )
    .await
    .unwrap();
    svc.add_user(
        &parley::service::Principal::operator(),
        "bea",
        Some("password123".into()),
        false,
    )
    .await
    .unwrap();
    svc.add_partner(
        &parley::service::Principal::operator(),
        "bolt",
        "Bolt Supplies",
        Role::Supplier,
    )
    .await
    .unwrap();
    let p = admin();

    // 40 conversations: more than the 4-document cache, so documents are evicted and reloaded.
    let mut ids = Vec::new();
    for i in 0..40 {
        let kind = if i % 2 == 0 {
            Kind::Task
        } else {
            Kind::Message
        };
        let due = (kind == Kind::Task).then_some(if i % 4 == 0 {
            "2026-06-01"
        } else {
            "2026-07-01"
        });
        let sku = format!("SKU-{}", i % 3);
        let (c, created) = svc
            .create(
                &p,
                input(kind, &format!("s{i}"), due, Some((&sku, TopicKind::Item))),
            )
            .await
            .unwrap();
        assert!(created);
        ids.push(c.id);
    }
    // Replies, well over the chunk count that triggers a compacted full save.
    for n in 0..40 {
        svc.reply(&p, ids[0], format!("reply {n}"), None, None)
            .await
            .unwrap();
    }
    svc.command(&p, ids[2], Command::SetProgress(Progress::Completed))
        .await
        .unwrap();
    svc.command(&p, ids[4], Command::Resolve).await.unwrap();
    let rename = Command::Update {
        subject: Some("renamed".into()),
        reference_id: Some(None),
        due_date: None,
    };
    svc.command(&p, ids[6], rename).await.unwrap();

    let mut before = Vec::new();
    for id in &ids {
        before.push(svc.get(&p, *id).await.unwrap());
    }
    let overdue_before = svc.inbox(&p, filter(vec![], Some(true))).await.unwrap();
    // Tasks 0, 4, 8, ... are due 2026-06-01 (past); 4 is resolved: 10 - 1 = 9.
    assert_eq!(overdue_before.total, 9);
    svc.store().shutdown();
    drop(svc);

    let svc = open(dir.path()).await;
    for (id, b) in ids.iter().zip(&before) {
        assert_eq!(&svc.get(&p, *id).await.unwrap(), b);
    }
    assert_eq!(before[0].messages.len(), 41);
    let report = svc.store().check().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.conversations, 40);

    let all = svc.inbox(&p, filter(vec![], None)).await.unwrap();
    assert_eq!(all.total, 40);
    // The clock is fixed, so every row has the same activity time and ids break the tie.
    let keys: Vec<_> = all
        .items
        .iter()
        .map(|(s, _)| (s.last_activity_at, s.id))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] > w[1]),
        "newest activity first"
    );
    let tasks = svc
        .inbox(&p, filter(vec![Facet::Kind(Kind::Task)], None))
        .await
        .unwrap();
    assert_eq!(tasks.total, 20);
    assert_eq!(
        svc.inbox(&p, filter(vec![Facet::State(State::Resolved)], None))
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        svc.inbox(&p, filter(vec![], Some(true)))
            .await
            .unwrap()
            .total,
        9
    );
    assert_eq!(
        svc.inbox(&p, filter(vec![], Some(false)))
            .await
            .unwrap()
            .total,
        31
    );
    let sku0 = filter(
        vec![Facet::TopicRef("SKU-0".into()), Facet::Kind(Kind::Task)],
        None,
    );
    assert_eq!(
        svc.inbox(&p, sku0).await.unwrap().total,
        7,
        "i in 0..40 step 2 with i % 3 == 0"
    );
    // Bea has not read anything the admin wrote.
    let bea = Principal {
        user: "bea".into(),
        admin: false,
    };
    assert_eq!(
        svc.inbox(&bea, filter(vec![], None)).await.unwrap().unread,
        40
    );

    // Paging visits every conversation once.
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    loop {
        let page = svc
            .inbox(
                &p,
                InboxFilter {
                    filters: vec![],
                    overdue: None,
                    cursor,
                    limit: 7,
                    q: None,
                },
            )
            .await
            .unwrap();
        for (s, _) in &page.items {
            assert!(seen.insert(s.id));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c.encode()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 40);

    // A rebuild from the documents gives the same answers, and the feed keeps rising.
    let (_, last_before) = svc.changes(0, 1000).await.unwrap();
    let store = svc.store().clone();
    tokio::task::spawn_blocking(move || store.rebuild_indexes())
        .await
        .unwrap()
        .unwrap();
    assert!(svc.store().check().await.unwrap().is_clean());
    assert_eq!(
        svc.inbox(&p, filter(vec![Facet::Kind(Kind::Task)], None))
            .await
            .unwrap()
            .total,
        20
    );
    assert_eq!(
        svc.inbox(&p, filter(vec![], Some(true)))
            .await
            .unwrap()
            .total,
        9
    );
    let (feed, last_after) = svc.changes(last_before, 1000).await.unwrap();
    assert_eq!(
        feed.len(),
        40,
        "after a rebuild every conversation is in the feed again, above the old end"
    );
    assert!(last_after > last_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_document_is_contained() {
    let dir = tempfile::tempdir().unwrap();
    let svc = open(dir.path()).await;
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    svc.add_partner(
        &parley::service::Principal::operator(),
        "bolt",
        "Bolt Supplies",
        Role::Supplier,
    )
    .await
    .unwrap();
    let p = admin();
    let (good, _) = svc
        .create(&p, input(Kind::Message, "good", None, None))
        .await
        .unwrap();
    let (bad, _) = svc
        .create(&p, input(Kind::Message, "bad", None, None))
        .await
        .unwrap();
    svc.store().shutdown();
    drop(svc);

    // Overwrite the stored bytes of one document with garbage.
    {
        let db = redb::Database::create(dir.path().join("parley.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(parley::store::tables::DOCS)
            .unwrap()
            .insert(bad.id.as_u128(), b"garbage".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let svc = open(dir.path()).await;
    let err = svc.get(&p, bad.id).await.unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
    assert!(
        svc.reply(&p, bad.id, "hi".into(), None, None)
            .await
            .is_err()
    );
    // Everything else keeps working.
    svc.reply(&p, good.id, "still fine".into(), None, None)
        .await
        .unwrap();
    assert_eq!(svc.get(&p, good.id).await.unwrap().messages.len(), 2);
    assert_eq!(svc.inbox(&p, filter(vec![], None)).await.unwrap().total, 2);
    let report = svc.store().check().await.unwrap();
    assert_eq!(report.damaged, vec![bad.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_write_does_not_stop_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let svc = open(dir.path()).await;
    svc.init_identity("acme", "Acme Retail", Role::Retailer)
        .await
        .unwrap();
    svc.add_partner(
        &parley::service::Principal::operator(),
        "bolt",
        "Bolt Supplies",
        Role::Supplier,
    )
    .await
    .unwrap();
    let r: Result<(), parley::store::StoreError> =
        svc.store().write(|_ctx| panic!("a job that panics")).await;
    assert!(r.is_err());
    let (c, _) = svc
        .create(
            &admin(),
            input(Kind::Message, "after the panic", None, None),
        )
        .await
        .unwrap();
    assert_eq!(
        svc.get(&admin(), c.id).await.unwrap().subject,
        "after the panic"
    );
}
