//! Inbox totals and pages for every combination of up to two filters, with and without
//! `overdue`, agree with a count made by hand over all conversations — before and after the
//! day changes and the overdue sweep moves tasks into `overdue`. Totals for one filter come
//! from facet counts, for two from pair counts, for more from a walk; all must agree.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use parley::domain::commands::Command;
use parley::domain::{Facet, Kind, OrgId, Progress, Role, State, Summary, Topic, TopicKind};
use parley::service::{Clock, CreateInput, InboxFilter, Principal, Service};
use parley::store::query::InboxPage;
use parley::store::{Store, StoreOptions};

fn admin() -> Principal {
    Principal {
        user: "admin".into(),
        admin: true,
    }
}

async fn open(dir: &std::path::Path, now: DateTime<Utc>) -> Arc<Service> {
    let d = dir.to_path_buf();
    let store = tokio::task::spawn_blocking(move || Store::open(&d, StoreOptions::default()))
        .await
        .unwrap()
        .unwrap();
    Service::new(store, Clock::Fixed(now))
}

/// Every page of one query, following `next_cursor`.
async fn pages(
    svc: &Service,
    filters: &[Facet],
    overdue: Option<bool>,
    limit: usize,
) -> Vec<InboxPage> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let f = InboxFilter {
            filters: filters.to_vec(),
            overdue,
            cursor: cursor.clone(),
            limit,
            q: None,
        };
        let page = svc.inbox(&admin(), f).await.unwrap();
        cursor = page.next_cursor.map(|c| c.encode());
        out.push(page);
        if cursor.is_none() {
            return out;
        }
    }
}

/// Every row, by paging through the unfiltered inbox.
async fn all_rows(svc: &Service) -> Vec<Summary> {
    let pages = pages(svc, &[], None, 200).await;
    pages
        .into_iter()
        .flat_map(|p| p.items.into_iter().map(|(s, _)| s))
        .collect()
}

/// Checks total and rows of one query against the hand count; pages of 7 to cross pages.
async fn check(svc: &Service, rows: &[Summary], filters: Vec<Facet>, overdue: Option<bool>) {
    let today = svc.today();
    let want: HashSet<_> = rows
        .iter()
        .filter(|s| filters.iter().all(|f| s.matches(f, today)))
        .filter(|s| overdue.is_none_or(|o| s.overdue(today) == o))
        .map(|s| s.id)
        .collect();
    let mut got = HashSet::new();
    for page in pages(svc, &filters, overdue, 7).await {
        assert_eq!(
            page.total,
            want.len() as u64,
            "total of {filters:?} overdue={overdue:?}"
        );
        for (s, _) in page.items {
            assert!(got.insert(s.id), "{} listed twice", s.id);
        }
    }
    assert_eq!(got, want, "rows of {filters:?} overdue={overdue:?}");
}

async fn check_all(svc: &Service) {
    let rows = all_rows(svc).await;
    let singles = vec![
        Facet::Kind(Kind::Task),
        Facet::Kind(Kind::Message),
        Facet::State(State::Open),
        Facet::State(State::Resolved),
        Facet::Progress(Progress::Completed),
        Facet::Progress(Progress::Open),
        Facet::Partner(OrgId::parse("bolt").unwrap()),
        Facet::Partner(OrgId::parse("gear").unwrap()),
        Facet::TopicKind(TopicKind::Order),
        Facet::TopicRef("PO-1".into()),
        Facet::ActionRequired,
    ];
    for overdue in [None, Some(true), Some(false)] {
        check(svc, &rows, vec![], overdue).await;
        for (i, a) in singles.iter().enumerate() {
            check(svc, &rows, vec![a.clone()], overdue).await;
            for b in &singles[i + 1..] {
                check(svc, &rows, vec![a.clone(), b.clone()], overdue).await;
            }
        }
    }
    // Three filters: counted by a walk.
    let three = vec![
        Facet::Partner(OrgId::parse("gear").unwrap()),
        Facet::Kind(Kind::Task),
        Facet::TopicKind(TopicKind::Order),
    ];
    check(svc, &rows, three, Some(true)).await;
    let report = svc.store().check().await.unwrap();
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_filter_totals_agree_with_a_hand_count_across_the_overdue_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let day1 = Utc.with_ymd_and_hms(2026, 6, 10, 12, 0, 0).unwrap();
    let svc = open(dir.path(), day1).await;
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
    for (id, name) in [("bolt", "Bolt"), ("gear", "Gear")] {
        svc.add_partner(
            &parley::service::Principal::operator(),
            id,
            name,
            Role::Supplier,
        )
        .await
        .unwrap();
    }
    let p = admin();
    // Tasks due from 2026-06-05 to 2026-06-16: some overdue on day 1, more after a week.
    for i in 0..48u32 {
        let kind = if i % 3 == 0 {
            Kind::Message
        } else {
            Kind::Task
        };
        let due = (kind == Kind::Task && i % 4 != 1)
            .then(|| chrono::NaiveDate::from_ymd_opt(2026, 6, 5 + i % 12).unwrap());
        let topic = (i % 2 == 0).then(|| Topic {
            kind: if i % 4 == 0 {
                TopicKind::Order
            } else {
                TopicKind::Item
            },
            reference: format!("PO-{}", i % 5),
            label: None,
            url: None,
        });
        let (c, _) = svc
            .create(
                &p,
                CreateInput {
                    id: None,
                    kind,
                    partner: if i % 5 < 2 { "bolt" } else { "gear" }.into(),
                    subject: format!("conversation {i}"),
                    topic,
                    reference_id: None,
                    due_date: due,
                    body: Some("hello".into()),
                    idempotency_key: None,
                },
            )
            .await
            .unwrap();
        let cmd = match i % 7 {
            0 => Some(Command::Resolve),
            1 if kind == Kind::Task => Some(Command::SetProgress(Progress::Completed)),
            2 if kind == Kind::Task => Some(Command::SetProgress(Progress::InProgress)),
            3 if kind == Kind::Task => Some(Command::SetProgress(Progress::Cancelled)),
            _ => None,
        };
        if let Some(cmd) = cmd {
            svc.command(&p, c.id, cmd).await.unwrap();
        }
    }
    check_all(&svc).await;

    // A week later: the sweep moves the tasks due in between into `overdue`.
    svc.store().shutdown();
    drop(svc);
    let svc = open(dir.path(), day1 + chrono::Duration::days(7)).await;
    check_all(&svc).await;
    // Changes after the sweep move rows between facets and pairs.
    let rows = all_rows(&svc).await;
    for s in rows.iter().filter(|s| s.overdue(svc.today())).take(5) {
        svc.command(&p, s.id, Command::SetProgress(Progress::Completed))
            .await
            .unwrap();
    }
    for s in rows.iter().filter(|s| s.state == State::Resolved).take(3) {
        svc.command(&p, s.id, Command::Reopen).await.unwrap();
    }
    check_all(&svc).await;
    svc.store().shutdown();
}
