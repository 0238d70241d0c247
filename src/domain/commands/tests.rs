//! Reopening on reply: the combined change, as the partner's node's gate judges it.

use super::*;
use crate::domain::policy::{Authority, Gate};
use automerge::ActorId;
use chrono::TimeZone;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_780_000_000_000 + s * 1000)
        .unwrap()
}

fn author(org: &str) -> Author {
    Author {
        org: OrgId::parse(org).unwrap(),
        user: "u".into(),
    }
}

/// A task acme started with bolt and bolt resolved, as a document and its view.
fn resolved_task() -> (AutoCommit, Conversation) {
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "Photos".into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: Some("Please add photos".into()),
        message_id: new_id(),
        attachments: Vec::new(),
    };
    let bolt = OrgId::parse("bolt").unwrap();
    let c = new_conversation(
        n,
        author("acme"),
        Role::Retailer,
        &bolt,
        Role::Supplier,
        at(0),
    )
    .unwrap();
    let mut d = AutoCommit::new().with_actor(ActorId::random());
    doc::create(&mut d, &c).unwrap();
    let mut v = c;
    apply_to(&mut d, &mut v, &Command::Resolve, &author("bolt"), at(1)).unwrap();
    // Stored: a later rollback drops only what comes after.
    d.commit();
    (d, v)
}

/// Bolt's gate for a change acme's node sends.
fn bolts_gate(before: &Conversation, after: &Conversation) -> Result<(), policy::Violation> {
    let bolt = OrgId::parse("bolt").unwrap();
    let g = Gate {
        me: &bolt,
        my_role: Role::Supplier,
        now: at(10),
    };
    g.admit(
        Some(before),
        after,
        &Authority::Org(OrgId::parse("acme").unwrap()),
    )
}

#[test]
fn a_reply_progress_or_update_reopens_a_resolved_conversation() {
    let cmds = [
        Command::Reply {
            id: new_id(),
            body: "Not done yet".into(),
            attachments: Vec::new(),
        },
        Command::SetProgress(Progress::InProgress),
        Command::Update {
            subject: None,
            reference_id: Some(Some("REF-1".into())),
            due_date: None,
        },
    ];
    for cmd in cmds {
        let (mut d, before) = resolved_task();
        let mut after = before.clone();
        let o = apply_to(&mut d, &mut after, &cmd, &author("acme"), at(2)).unwrap();
        assert_eq!(o, Outcome::Changed);
        assert_eq!(after.state, State::Open, "{cmd:?}");
        assert_eq!((after.resolved_at, after.resolved_by.clone()), (None, None));
        // The view is what the document says, with `reopened` first at the same instant.
        assert_eq!(doc::read(&d).unwrap(), after, "{cmd:?}");
        let new: Vec<&str> = after.history[before.history.len()..]
            .iter()
            .map(|e| e.action.as_str())
            .collect();
        assert_eq!(new[0], "reopened", "{cmd:?}");
        assert!(new.len() == 1 || new[1] != "reopened");
        bolts_gate(&before, &after).unwrap();

        // The same change with the reopening written as bolt is refused whole.
        let mut forged = after.clone();
        let e = forged
            .history
            .iter_mut()
            .find(|e| e.action == "reopened")
            .unwrap();
        e.by = author("bolt");
        assert!(bolts_gate(&before, &forged).is_err(), "{cmd:?}");
    }
}

#[test]
fn a_refused_or_empty_command_does_not_reopen() {
    let (mut d, before) = resolved_task();
    // Bolt did not start it: its update is refused, and the conversation stays resolved.
    let mut v = before.clone();
    let cmd = Command::Update {
        subject: Some("Other".into()),
        reference_id: None,
        due_date: None,
    };
    assert!(apply_to(&mut d, &mut v, &cmd, &author("bolt"), at(2)).is_err());
    d.rollback();
    assert_eq!(doc::read(&d).unwrap().state, State::Resolved);
    // A retried reply with the same id changes nothing, so it does not reopen either.
    let (mut d, before) = resolved_task();
    let mid = before.messages[0].id;
    let mut v = before.clone();
    let retry = Command::Reply {
        id: mid,
        body: "Please add photos".into(),
        attachments: Vec::new(),
    };
    let o = apply_to(&mut d, &mut v, &retry, &author("acme"), at(2)).unwrap();
    assert_eq!(o, Outcome::Unchanged);
    assert_eq!(v.state, State::Resolved);
    assert_eq!(doc::read(&d).unwrap().state, State::Resolved);
}
