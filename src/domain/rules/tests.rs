use automerge::{AutoCommit, ROOT, ReadDoc, transaction::Transactable};
use chrono::Utc;

use super::*;
use crate::domain::commands::{self, Command, NewConversation};
use crate::domain::{Author, Kind, Role, new_id};

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

fn by(o: &str) -> Author {
    Author {
        org: org(o),
        user: "u".into(),
    }
}

/// A conversation started by acme (retailer) with bolt, as stored at acme.
fn ours() -> AutoCommit {
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "Thin description".into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: Some("Please add detail".into()),
        message_id: new_id(),
    };
    let c = commands::new_conversation(
        n,
        by("acme"),
        Role::Retailer,
        &org("bolt"),
        Role::Supplier,
        Utc::now(),
    )
    .unwrap();
    let mut d = AutoCommit::new();
    doc::create(&mut d, &c).unwrap();
    d
}

/// The partner's copy after `f` edits it.
fn theirs(d: &mut AutoCommit, f: impl FnOnce(&mut AutoCommit, &Conversation)) -> AutoCommit {
    let mut t = d.fork().with_actor(automerge::ActorId::random());
    let view = doc::read(&t).unwrap();
    f(&mut t, &view);
    t.commit();
    t
}

fn check(before: &AutoCommit, after: &AutoCommit, sender: Sender) -> Result<Conversation, String> {
    check_update(
        Some(&doc::read(before).unwrap()),
        after,
        &org("acme"),
        &sender,
    )
}

fn bolt() -> Sender {
    Sender::Partner(org("bolt"))
}

#[test]
fn a_partner_may_reply_resolve_and_progress() {
    let mut d = ours();
    let t = theirs(&mut d, |t, v| {
        let bo = by("bolt");
        commands::apply(
            t,
            v,
            &Command::Reply {
                id: new_id(),
                body: "on it".into(),
            },
            &bo,
            Utc::now(),
        )
        .unwrap();
        let v = doc::read(t).unwrap();
        commands::apply(
            t,
            &v,
            &Command::SetProgress(crate::domain::Progress::Completed),
            &bo,
            Utc::now(),
        )
        .unwrap();
        let v = doc::read(t).unwrap();
        commands::apply(t, &v, &Command::Resolve, &bo, Utc::now()).unwrap();
    });
    assert!(check(&d, &t, bolt()).is_ok());
}

#[test]
fn a_partner_may_not_rewrite_or_impersonate() {
    let mut d = ours();
    // Rewrite acme's first message.
    let t = theirs(&mut d, |t, _| {
        let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
        let first = t.keys(&msgs).next().unwrap();
        let (_, m) = t.get(&msgs, first.as_str()).unwrap().unwrap();
        t.put(&m, "body", "we never asked").unwrap();
    });
    assert!(check(&d, &t, bolt()).unwrap_err().contains("altered"));
    // Delete it.
    let t = theirs(&mut d, |t, _| {
        let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
        let first = t.keys(&msgs).next().unwrap();
        t.delete(&msgs, first.as_str()).unwrap();
    });
    assert!(check(&d, &t, bolt()).unwrap_err().contains("removed"));
    // Write as acme.
    let t = theirs(&mut d, |t, v| {
        commands::apply(
            t,
            v,
            &Command::Reply {
                id: new_id(),
                body: "fake".into(),
            },
            &by("acme"),
            Utc::now(),
        )
        .unwrap();
    });
    assert!(check(&d, &t, bolt()).unwrap_err().contains("another org"));
    // Change participants.
    let t = theirs(&mut d, |t, _| {
        let (_, p) = t.get(ROOT, "participants").unwrap().unwrap();
        t.put(&p, "retailer", "evil").unwrap();
    });
    assert!(check(&d, &t, bolt()).is_err());
    // Change the subject of acme's conversation.
    let t = theirs(&mut d, |t, _| doc::set_subject(t, "renamed").unwrap());
    assert!(check(&d, &t, bolt()).unwrap_err().contains("only acme"));
    // Break the schema.
    let t = theirs(&mut d, |t, _| t.put(ROOT, "kind", "poem").unwrap());
    assert!(check(&d, &t, bolt()).unwrap_err().contains("schema"));
}

#[test]
fn own_sites_relay_anything_but_participants() {
    let mut d = ours();
    let t = theirs(&mut d, |t, v| {
        commands::apply(
            t,
            v,
            &Command::Reply {
                id: new_id(),
                body: "relayed".into(),
            },
            &by("bolt"),
            Utc::now(),
        )
        .unwrap();
        doc::set_subject(t, "renamed at another site").unwrap();
    });
    assert!(check(&d, &t, Sender::OwnOrg).is_ok());
    let t = theirs(&mut d, |t, _| {
        let (_, p) = t.get(ROOT, "participants").unwrap().unwrap();
        t.put(&p, "supplier", "zeta").unwrap();
    });
    assert!(check(&d, &t, Sender::OwnOrg).is_err());
}

#[test]
fn a_partner_creates_only_in_its_own_name_and_with_us() {
    let d = ours(); // created by acme
    let me_bolt = org("bolt");
    // At bolt's node, a "new" doc arriving from acme is fine.
    assert!(check_update(None, &d, &me_bolt, &Sender::Partner(org("acme"))).is_ok());
    // The same doc claimed by zeta is refused: zeta is not a participant.
    assert!(check_update(None, &d, &me_bolt, &Sender::Partner(org("zeta"))).is_err());
    // A doc between acme and bolt arriving at a third org is refused.
    assert!(check_update(None, &d, &org("zeta"), &Sender::Partner(org("acme"))).is_err());
}
