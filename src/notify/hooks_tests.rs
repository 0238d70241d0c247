//! The sender's reading of the queue: order per conversation and endpoint, what waits, what
//! fails with its disabled endpoint. On a real store.

use std::collections::HashSet;

use chrono::{TimeDelta, Utc};
use uuid::Uuid;

use super::plan;
use crate::domain::hooks::{Disabled, Endpoint};
use crate::store::{Store, StoreError, StoreOptions, outbox};

fn endpoint(disabled: bool) -> Endpoint {
    let now = Utc::now();
    Endpoint {
        id: Uuid::now_v7(),
        url: "http://10.0.0.5/h".into(),
        events: vec!["message.created".into()],
        description: None,
        secrets: vec![],
        created_at: now,
        created_by: "admin".into(),
        disabled: disabled.then(|| Disabled {
            at: now,
            reason: "410".into(),
        }),
        failing_since: None,
    }
}

#[test]
fn later_deliveries_of_a_conversation_wait_for_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
    let (a, off) = (endpoint(false), endpoint(true));
    let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
    let now = Utc::now();
    let (a2, off2) = (a.clone(), off.clone());
    let ids: Vec<String> = store
        .write_blocking(move |ctx| {
            let tx = ctx.tx();
            outbox::put_endpoint(tx, &a2)?;
            let body = serde_json::json!({});
            let mut ids = Vec::new();
            for conv in [Some(c1), Some(c1), Some(c2), None, None] {
                ids.push(outbox::queue_delivery(
                    tx,
                    &a2,
                    "message.created",
                    conv,
                    &body,
                    now,
                )?);
            }
            // Queued while enabled, then disabled (as a 410 or max_pending would).
            let mut on = off2.clone();
            on.disabled = None;
            outbox::put_endpoint(tx, &on)?;
            ids.push(outbox::queue_delivery(
                tx,
                &off2,
                "message.created",
                Some(c1),
                &body,
                now,
            )?);
            outbox::put_endpoint(tx, &off2)?;
            Ok::<_, StoreError>(ids)
        })
        .unwrap();
    let rx = store.begin_read().unwrap();
    let none: HashSet<u128> = HashSet::new();
    let no_lanes: HashSet<super::Lane> = HashSet::new();
    let p = plan(&rx, &none, &no_lanes, 8, now).unwrap();
    let due: Vec<&str> = p.due.iter().map(|(_, d, _)| d.msg_id.as_str()).collect();
    // c1's second delivery waits for its first; c2's and both test events go at once.
    assert_eq!(due, vec![&ids[0], &ids[2], &ids[3], &ids[4]]);
    assert_eq!(p.orphans.len(), 1);
    assert_eq!(p.orphans[0].1.msg_id, ids[5]);
    assert!(p.orphans[0].2.as_deref().unwrap_or("").contains("disabled"));
    // While c1's first is being sent, its second still waits; a free slot takes the next.
    let busy: HashSet<u128> = p.due.iter().map(|(k, _, _)| *k).collect();
    let lanes: HashSet<_> = p
        .due
        .iter()
        .filter_map(|(_, d, _)| super::lane(d))
        .collect();
    let p = plan(&rx, &busy, &lanes, 8, now).unwrap();
    assert!(p.due.is_empty());
    // A retry waiting an hour holds its lane and sets the wake-up.
    let (key, mut first) = outbox::queued_page(&rx, None, 1).unwrap().remove(0);
    first.next_attempt_at = now + TimeDelta::hours(1);
    drop(rx);
    store
        .write_blocking(move |ctx| outbox::update_delivery(ctx.tx(), key, &first))
        .unwrap();
    let rx = store.begin_read().unwrap();
    let p = plan(&rx, &none, &no_lanes, 8, now).unwrap();
    let due: Vec<&str> = p.due.iter().map(|(_, d, _)| d.msg_id.as_str()).collect();
    assert_eq!(due, vec![&ids[2], &ids[3], &ids[4]]);
    let wake = p.wake.unwrap();
    assert!(wake > std::time::Duration::from_secs(3500), "{wake:?}");
    // Pages: a limit of one picks the first due only.
    let p = plan(&rx, &none, &no_lanes, 1, now).unwrap();
    assert_eq!(p.due.len(), 1);
}
