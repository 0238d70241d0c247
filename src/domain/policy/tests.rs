//! The gate's rules, each broken once. The hostile-peer tests (`tests/hostile_peer.rs`) send
//! the same forgeries over the real protocol.

use automerge::{AutoCommit, ROOT, ReadDoc, transaction::Transactable};
use chrono::{Duration, Utc};

use super::*;
use crate::domain::commands::{self, Command, NewConversation};
use crate::domain::{Progress, doc, new_id};

fn org(s: &str) -> OrgId {
    OrgId::parse(s).unwrap()
}

fn by(o: &str) -> Author {
    Author {
        org: org(o),
        user: "u".into(),
    }
}

/// A task started by acme (retailer) with bolt, as stored at acme.
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
        attachments: Vec::new(),
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

fn gate_at(me: &OrgId, role: Role) -> Gate<'_> {
    Gate {
        me,
        my_role: role,
        now: Utc::now(),
    }
}

/// Runs the whole gate at acme (retailer) for a change to `before`, as the sync path does:
/// strict read of the result first.
fn check(before: &AutoCommit, after: &AutoCommit, a: Authority) -> Result<(), String> {
    let me = org("acme");
    let after =
        doc::read_strict(after).map_err(|e| Violation::Schema(e.to_string()).to_string())?;
    gate_at(&me, Role::Retailer)
        .admit(Some(&doc::read(before).unwrap()), &after, &a)
        .map_err(|e| e.to_string())
}

fn bolt() -> Authority {
    Authority::Org(org("bolt"))
}

fn reply(t: &mut AutoCommit, v: &Conversation, who: &str, body: &str) {
    commands::apply(
        t,
        v,
        &Command::Reply {
            id: new_id(),
            body: body.into(),
            attachments: Vec::new(),
        },
        &by(who),
        Utc::now(),
    )
    .unwrap();
}

#[test]
fn a_partner_may_reply_resolve_and_progress() {
    let mut d = ours();
    let t = theirs(&mut d, |t, v| {
        reply(t, v, "bolt", "on it");
        let bo = by("bolt");
        let v = doc::read(t).unwrap();
        commands::apply(
            t,
            &v,
            &Command::SetProgress(Progress::Completed),
            &bo,
            Utc::now(),
        )
        .unwrap();
        let v = doc::read(t).unwrap();
        commands::apply(t, &v, &Command::Resolve, &bo, Utc::now()).unwrap();
    });
    check(&d, &t, bolt()).unwrap();
}

#[test]
fn a_partner_may_not_rewrite_or_impersonate() {
    let mut d = ours();
    let t = theirs(&mut d, |t, _| {
        let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
        let first = t.keys(&msgs).next().unwrap();
        let (_, m) = t.get(&msgs, first.as_str()).unwrap().unwrap();
        t.put(&m, "body", "we never asked").unwrap();
    });
    assert!(check(&d, &t, bolt()).unwrap_err().contains("altered"));
    let t = theirs(&mut d, |t, _| {
        let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
        let first = t.keys(&msgs).next().unwrap();
        t.delete(&msgs, first.as_str()).unwrap();
    });
    assert!(check(&d, &t, bolt()).unwrap_err().contains("removed"));
    let t = theirs(&mut d, |t, v| reply(t, v, "acme", "fake"));
    assert!(
        check(&d, &t, bolt())
            .unwrap_err()
            .contains("written as acme")
    );
    let t = theirs(&mut d, |t, _| {
        let (_, p) = t.get(ROOT, "participants").unwrap().unwrap();
        t.put(&p, "retailer", "evil").unwrap();
    });
    assert!(check(&d, &t, bolt()).is_err());
    let t = theirs(&mut d, |t, _| doc::set_subject(t, "renamed").unwrap());
    assert!(check(&d, &t, bolt()).unwrap_err().contains("only acme"));
    let t = theirs(&mut d, |t, _| t.put(ROOT, "kind", "poem").unwrap());
    assert!(check(&d, &t, bolt()).unwrap_err().contains("schema"));
    // Our own user is held to the same rules through the same gate.
    let t = theirs(&mut d, |t, v| reply(t, v, "bolt", "as bolt, from acme"));
    assert!(
        check(&d, &t, Authority::Org(org("acme")))
            .unwrap_err()
            .contains("written as bolt")
    );
}

#[test]
fn fields_that_arrive_meet_the_api_limits() {
    let mut d = ours();
    type Edit = Box<dyn Fn(&mut AutoCommit, &Conversation)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "subject",
            Box::new(|t, _| doc::set_subject(t, &"x".repeat(250_000)).unwrap()),
        ),
        (
            "control",
            Box::new(|t, _| doc::set_subject(t, "bell\u{7}\u{1b}[2J").unwrap()),
        ),
        (
            "bidi",
            Box::new(|t, _| doc::set_subject(t, "invoice\u{202E}fdp.exe").unwrap()),
        ),
        (
            "body",
            Box::new(|t, v| {
                let m = Message {
                    id: new_id(),
                    author: by("acme"),
                    body: "y".repeat(900_000),
                    sent_at: v.created_at,
                    attachments: Vec::new(),
                };
                doc::add_message(t, &m).unwrap();
            }),
        ),
        (
            "schema",
            Box::new(|t, _| t.put(ROOT, "schema", 99_u64).unwrap()),
        ),
        (
            "not part of the conversation schema",
            Box::new(|t, _| t.put(ROOT, "payload", "z".repeat(3_000)).unwrap()),
        ),
        (
            "not part of the conversation schema",
            Box::new(|t, _| {
                let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
                let first = t.keys(&msgs).next().unwrap();
                let (_, m) = t.get(&msgs, first.as_str()).unwrap().unwrap();
                t.put(&m, "hidden", "extra").unwrap();
            }),
        ),
        (
            "cannot carry resolved_at",
            Box::new(|t, _| {
                t.put(ROOT, "resolved_at", automerge::ScalarValue::Timestamp(1))
                    .unwrap()
            }),
        ),
        (
            "ahead of this node's clock",
            Box::new(|t, v| {
                let m = Message {
                    id: new_id(),
                    author: by("acme"),
                    body: "pinned on top".into(),
                    sent_at: "9999-12-31T00:00:00Z".parse().unwrap(),
                    attachments: Vec::new(),
                };
                let _ = v;
                doc::add_message(t, &m).unwrap();
            }),
        ),
        (
            "is not one of",
            Box::new(|t, _| {
                let e = Event {
                    id: new_id(),
                    at: Utc::now(),
                    by: by("acme"),
                    action: "bank account changed".into(),
                    from: None,
                    to: None,
                };
                doc::add_event(t, &e).unwrap();
            }),
        ),
        (
            "user",
            Box::new(|t, v| {
                let m = Message {
                    id: new_id(),
                    author: Author {
                        org: org("acme"),
                        user: "a b\u{0}".into(),
                    },
                    body: "hi".into(),
                    sent_at: v.created_at,
                    attachments: Vec::new(),
                };
                doc::add_message(t, &m).unwrap();
            }),
        ),
    ];
    for (want, edit) in cases {
        let t = theirs(&mut d, |t, v| edit(t, v));
        // Run as our own site (the most trusted sender): limits hold for everyone.
        let err = check(&d, &t, Authority::OwnSite).unwrap_err();
        assert!(err.contains(want), "{want}: {err}");
    }
}

#[test]
fn task_fields_stay_on_tasks() {
    let me = org("acme");
    let g = gate_at(&me, Role::Retailer);
    let mut c = doc::read(&ours()).unwrap();
    c.kind = Kind::Message;
    assert!(
        validate(None, &c, &g)
            .unwrap_err()
            .to_string()
            .contains("only tasks")
    );
    c.kind = Kind::Task;
    c.progress = None;
    assert!(validate(None, &c, &g).is_err());
}

#[test]
fn a_new_conversation_is_between_us_in_our_role() {
    let d = ours(); // acme retailer, bolt supplier
    let c = doc::read(&d).unwrap();
    let bolt_org = org("bolt");
    // At bolt's node, a "new" doc arriving from acme is fine.
    gate_at(&bolt_org, Role::Supplier)
        .admit(None, &c, &Authority::Org(org("acme")))
        .unwrap();
    // Claimed by zeta, who is no participant: refused.
    assert!(
        gate_at(&bolt_org, Role::Supplier)
            .admit(None, &c, &Authority::Org(org("zeta")))
            .is_err()
    );
    // At a third org: refused.
    let zeta = org("zeta");
    assert!(
        gate_at(&zeta, Role::Supplier)
            .admit(None, &c, &Authority::Org(org("acme")))
            .is_err()
    );
    // Roles swapped: bolt (a supplier) named as the retailer.
    let mut swapped = c.clone();
    std::mem::swap(
        &mut swapped.participants.retailer,
        &mut swapped.participants.supplier,
    );
    let err = gate_at(&bolt_org, Role::Supplier)
        .admit(None, &swapped, &Authority::OwnSite)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("must be the conversation's supplier")
    );
}

#[test]
fn own_sites_relay_either_org_but_never_rewrite() {
    let mut d = ours();
    let t = theirs(&mut d, |t, v| {
        reply(t, v, "bolt", "relayed");
        doc::set_subject(t, "renamed at another site").unwrap();
    });
    check(&d, &t, Authority::OwnSite).unwrap();
    let t = theirs(&mut d, |t, _| {
        let (_, p) = t.get(ROOT, "participants").unwrap().unwrap();
        t.put(&p, "supplier", "zeta").unwrap();
    });
    assert!(check(&d, &t, Authority::OwnSite).is_err());
    let t = theirs(&mut d, |t, _| {
        let (_, msgs) = t.get(ROOT, "messages").unwrap().unwrap();
        let first = t.keys(&msgs).next().unwrap();
        t.delete(&msgs, first.as_str()).unwrap();
    });
    assert!(
        check(&d, &t, Authority::OwnSite)
            .unwrap_err()
            .contains("removed")
    );
}

#[test]
fn concurrent_state_changes_are_not_refused() {
    // acme reopens while bolt resolves: Automerge keeps both state values, and the loser's
    // resolved_at may stay beside an open state. That is an honest merge, not a forgery.
    let mut d = ours();
    let v = doc::read(&d).unwrap();
    commands::apply(&mut d, &v, &Command::Resolve, &by("acme"), Utc::now()).unwrap();
    d.commit();
    let mut t = d.fork().with_actor(automerge::ActorId::random());
    let v = doc::read(&d).unwrap();
    commands::apply(&mut d, &v, &Command::Reopen, &by("acme"), Utc::now()).unwrap();
    d.commit();
    let tv = doc::read(&t).unwrap();
    commands::apply(&mut t, &tv, &Command::Reopen, &by("bolt"), Utc::now()).unwrap();
    let tv = doc::read(&t).unwrap();
    commands::apply(
        &mut t,
        &tv,
        &Command::Resolve,
        &by("bolt"),
        Utc::now() + Duration::seconds(1),
    )
    .unwrap();
    t.commit();
    let before = d.clone();
    d.merge(&mut t).unwrap();
    check(&before, &d, bolt()).unwrap();
}

/// One table, both paths: each row is a change the API refuses as a command and the gate
/// refuses as a forged document, so the two can never disagree again.
#[test]
fn api_and_sync_paths_refuse_the_same_changes() {
    type Forge = Box<dyn Fn(&mut AutoCommit)>;
    let rows: Vec<(&str, Command, &str, Forge)> = vec![
        (
            "subject too long",
            Command::Update {
                subject: Some("s".repeat(201)),
                reference_id: None,
                due_date: None,
            },
            "acme",
            Box::new(|t| doc::set_subject(t, &"s".repeat(201)).unwrap()),
        ),
        (
            "bidi override in the subject",
            Command::Update {
                subject: Some("pay\u{202E}txt.exe".into()),
                reference_id: None,
                due_date: None,
            },
            "acme",
            Box::new(|t| doc::set_subject(t, "pay\u{202E}txt.exe").unwrap()),
        ),
        (
            "reference ID with a control character",
            Command::Update {
                subject: None,
                reference_id: Some(Some("CASE\u{7}".into())),
                due_date: None,
            },
            "acme",
            Box::new(|t| doc::set_opt_str(t, "reference_id", Some("CASE\u{7}")).unwrap()),
        ),
        (
            "subject changed by the org that did not start it",
            Command::Update {
                subject: Some("renamed".into()),
                reference_id: None,
                due_date: None,
            },
            "bolt",
            Box::new(|t| doc::set_subject(t, "renamed").unwrap()),
        ),
        (
            "a reply with an escape sequence",
            Command::Reply {
                id: new_id(),
                body: "\u{1b}[2J gone".into(),
                attachments: Vec::new(),
            },
            "bolt",
            Box::new(|t| {
                let m = Message {
                    id: new_id(),
                    author: by("bolt"),
                    body: "\u{1b}[2J gone".into(),
                    sent_at: Utc::now(),
                    attachments: Vec::new(),
                };
                doc::add_message(t, &m).unwrap();
            }),
        ),
        (
            "a body over 64 KiB",
            Command::Reply {
                id: new_id(),
                body: "x".repeat(limits::BODY_BYTES + 1),
                attachments: Vec::new(),
            },
            "bolt",
            Box::new(|t| {
                let m = Message {
                    id: new_id(),
                    author: by("bolt"),
                    body: "x".repeat(limits::BODY_BYTES + 1),
                    sent_at: Utc::now(),
                    attachments: Vec::new(),
                };
                doc::add_message(t, &m).unwrap();
            }),
        ),
    ];
    for (what, cmd, who, forge) in rows {
        let mut d = ours();
        let view = doc::read(&d).unwrap();
        let mut api = d.fork();
        assert!(
            commands::apply(&mut api, &view, &cmd, &by(who), Utc::now()).is_err(),
            "{what}: the API path accepted it"
        );
        let t = theirs(&mut d, |t, _| forge(t));
        assert!(
            check(&d, &t, Authority::Org(org(who))).is_err(),
            "{what}: the sync path accepted it"
        );
    }
}

mod written_locally_accepted_remotely {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Reply(bool, String),
        Subject(String),
        Reference(Option<String>),
        Resolve(bool),
        Reopen(bool),
        Progress(bool, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        let text = "[a-zA-Z0-9 äöüé漢字שלום.,!?-]{1,60}";
        prop_oneof![
            (any::<bool>(), text).prop_map(|(b, s)| Step::Reply(b, s)),
            text.prop_map(Step::Subject),
            proptest::option::of("[A-Z0-9-]{1,20}").prop_map(Step::Reference),
            any::<bool>().prop_map(Step::Resolve),
            any::<bool>().prop_map(Step::Reopen),
            (any::<bool>(), 0u8..4).prop_map(|(b, p)| Step::Progress(b, p)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Whatever either org writes through its own commands, the other org's gate accepts.
        #[test]
        fn partner_accepts(steps in proptest::collection::vec(step(), 1..12)) {
            let mut d = ours();
            // The conversation itself is committed first: a refused step rolls back only
            // its own changes (a body of spaces is refused before the first commit too).
            d.commit();
            for s in steps {
                let before = doc::read(&d).unwrap();
                let (who, cmd) = match s {
                    Step::Reply(b, body) => (if b { "acme" } else { "bolt" }, Command::Reply { id: new_id(), body, attachments: Vec::new() }),
                    Step::Subject(x) => ("acme", Command::Update { subject: Some(x), reference_id: None, due_date: None }),
                    Step::Reference(r) => ("acme", Command::Update { subject: None, reference_id: Some(r), due_date: None }),
                    Step::Resolve(b) => (if b { "acme" } else { "bolt" }, Command::Resolve),
                    Step::Reopen(b) => (if b { "acme" } else { "bolt" }, Command::Reopen),
                    Step::Progress(b, p) => (if b { "acme" } else { "bolt" }, Command::SetProgress(Progress::ALL[p as usize])),
                };
                if commands::apply(&mut d, &before, &cmd, &by(who), Utc::now()).is_err() {
                    d.rollback();
                    continue;
                }
                d.commit();
                // The writing org's own gate, then the other org's, both accept it.
                let after = doc::read_strict(&d).unwrap();
                let authority = Authority::Org(org(who));
                gate_at(&org("acme"), Role::Retailer).admit(Some(&before), &after, &authority).unwrap();
                gate_at(&org("bolt"), Role::Supplier).admit(Some(&before), &after, &authority).unwrap();
            }
        }
    }
}
