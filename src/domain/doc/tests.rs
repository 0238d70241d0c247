use super::*;
use crate::domain::commands::{self, Command, NewConversation, Outcome};
use automerge::ActorId;
use chrono::TimeZone;
use proptest::prelude::*;

fn at(s: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_780_000_000_000 + s * 1000)
        .unwrap()
}

fn author(org: &str, user: &str) -> Author {
    Author {
        org: OrgId::parse(org).unwrap(),
        user: user.into(),
    }
}

fn new_task(due: Option<&str>) -> Conversation {
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "Description too thin".into(),
        topic: Some(Topic {
            kind: TopicKind::Item,
            reference: "SKU-1".into(),
            label: Some("Kettle".into()),
            url: None,
        }),
        reference_id: Some("REF-9".into()),
        due_date: due.map(|d| d.parse().unwrap()),
        body: Some("Please add detail".into()),
        message_id: new_id(),
        attachments: Vec::new(),
    };
    let partner = OrgId::parse("bolt").unwrap();
    commands::new_conversation(
        n,
        author("acme", "ann"),
        Role::Retailer,
        &partner,
        Role::Supplier,
        at(0),
    )
    .unwrap()
}

fn doc_of(c: &Conversation) -> AutoCommit {
    let mut d = AutoCommit::new().with_actor(ActorId::random());
    create(&mut d, c).unwrap();
    d
}

#[test]
fn create_and_read_back() {
    let c = new_task(Some("2026-06-01"));
    let d = doc_of(&c);
    assert_eq!(read(&d).unwrap(), c);
    assert_eq!(c.participants.retailer.as_str(), "acme");
    assert_eq!(c.progress, Some(Progress::Open));
}

#[test]
fn document_survives_save_and_load() {
    let c = new_task(None);
    let mut d = doc_of(&c);
    let bytes = d.save();
    let loaded = AutoCommit::load(&bytes).unwrap();
    assert_eq!(read(&loaded).unwrap(), c);
}

#[test]
fn commands_follow_the_rules() {
    let c = new_task(Some("2026-06-01"));
    let mut d = doc_of(&c);
    let ann = author("acme", "ann");
    let bo = author("bolt", "bo");
    let eve = author("evil", "eve");
    let mut now = 1;
    let mut run = |d: &mut AutoCommit, cmd: Command, by: &Author| {
        now += 1;
        let view = read(d).unwrap();
        commands::apply(d, &view, &cmd, by, at(now))
    };
    let reply = Command::Reply {
        id: new_id(),
        body: "On it".into(),
        attachments: Vec::new(),
    };
    assert_eq!(run(&mut d, reply.clone(), &bo).unwrap(), Outcome::Changed);
    // The same reply retried is a no-op, not a duplicate.
    assert_eq!(run(&mut d, reply, &bo).unwrap(), Outcome::Unchanged);
    assert_eq!(read(&d).unwrap().messages.len(), 2);
    // Only participants act; only the creator edits the subject.
    assert!(run(&mut d, Command::Resolve, &eve).is_err());
    let upd = Command::Update {
        subject: Some("New".into()),
        reference_id: None,
        due_date: None,
    };
    assert!(matches!(
        run(&mut d, upd.clone(), &bo),
        Err(commands::CommandError::Domain(DomainError::Forbidden(_)))
    ));
    assert_eq!(run(&mut d, upd, &ann).unwrap(), Outcome::Changed);
    // Remove the reference ID.
    let rm = Command::Update {
        subject: None,
        reference_id: Some(None),
        due_date: None,
    };
    assert_eq!(run(&mut d, rm, &ann).unwrap(), Outcome::Changed);
    assert_eq!(read(&d).unwrap().reference_id, None);
    // Completing a task makes it not overdue.
    let today: NaiveDate = "2026-07-01".parse().unwrap();
    assert!(read(&d).unwrap().overdue(today));
    run(&mut d, Command::SetProgress(Progress::Completed), &bo).unwrap();
    let v = read(&d).unwrap();
    assert!(!v.overdue(today));
    // Resolve and reopen leave history.
    run(&mut d, Command::Resolve, &bo).unwrap();
    assert_eq!(read(&d).unwrap().state, State::Resolved);
    assert_eq!(
        run(&mut d, Command::Resolve, &bo).unwrap(),
        Outcome::Unchanged
    );
    run(&mut d, Command::Reopen, &ann).unwrap();
    let v = read(&d).unwrap();
    assert_eq!(v.state, State::Open);
    assert!(v.resolved_by.is_none());
    let actions: Vec<_> = v.history.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "created",
            "subject",
            "reference_id",
            "progress",
            "resolved",
            "reopened"
        ]
    );
}

#[test]
fn a_message_has_no_due_date_or_progress() {
    let mut c = new_task(None);
    c.kind = Kind::Message;
    c.progress = None;
    let mut d = doc_of(&c);
    let view = read(&d).unwrap();
    let by = author("acme", "ann");
    let set_due = Command::Update {
        subject: None,
        reference_id: None,
        due_date: Some(Some("2026-01-01".parse().unwrap())),
    };
    assert!(commands::apply(&mut d, &view, &set_due, &by, at(5)).is_err());
    assert!(
        commands::apply(
            &mut d,
            &view,
            &Command::SetProgress(Progress::Completed),
            &by,
            at(5)
        )
        .is_err()
    );
    assert_eq!(read(&d).unwrap(), view, "a refused command changes nothing");
}

#[test]
fn concurrent_replies_are_all_kept_in_one_order() {
    let c = new_task(None);
    let mut a = doc_of(&c);
    let mut b = a.fork().with_actor(ActorId::random());
    let va = read(&a).unwrap();
    commands::apply(
        &mut a,
        &va,
        &Command::Reply {
            id: new_id(),
            body: "from a".into(),
            attachments: Vec::new(),
        },
        &author("acme", "ann"),
        at(9),
    )
    .unwrap();
    commands::apply(
        &mut b,
        &va,
        &Command::Reply {
            id: new_id(),
            body: "from b".into(),
            attachments: Vec::new(),
        },
        &author("bolt", "bo"),
        at(9),
    )
    .unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    let (ra, rb) = (read(&a).unwrap(), read(&b).unwrap());
    assert_eq!(ra.messages.len(), 3);
    assert_eq!(ra, rb);
}

/// One of the commands a user can give, for the property below.
fn command_strategy() -> impl Strategy<Value = (Command, bool)> {
    let cmd = prop_oneof![
        "[a-z ]{0,12}".prop_map(|body| Command::Reply {
            id: new_id(),
            body,
            attachments: Vec::new()
        }),
        Just(Command::Resolve),
        Just(Command::Reopen),
        (0usize..4).prop_map(|p| Command::SetProgress(Progress::ALL[p])),
        (
            proptest::option::of("[a-z ]{0,8}"),
            proptest::option::of(proptest::option::of("[A-Z]{1,4}")),
            proptest::option::of(proptest::option::of(1u32..28)),
        )
            .prop_map(|(subject, reference_id, due)| Command::Update {
                subject,
                reference_id,
                due_date: due.map(|d| d.map(|d| NaiveDate::from_ymd_opt(2026, 6, d).unwrap())),
            }),
    ];
    (cmd, any::<bool>())
}

proptest! {
    // Each case replays up to 12 commands and reads the document after each: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `apply_to` changes the view exactly as the document changes: after any sequence of
    /// commands (valid or refused, by either org), the view it kept equals a fresh read.
    #[test]
    fn the_view_kept_by_a_command_equals_a_fresh_read(cmds in proptest::collection::vec(command_strategy(), 1..12)) {
        let c = new_task(Some("2026-06-01"));
        let mut d = doc_of(&c);
        d.commit(); // as stored: a refused command rolls back only its own operations
        let mut view = c;
        for (i, (cmd, partner)) in cmds.iter().enumerate() {
            let by = if *partner { author("bolt", "bo") } else { author("acme", "ann") };
            let mut next = view.clone();
            match commands::apply_to(&mut d, &mut next, cmd, &by, at(10 + i as i64)) {
                Ok(_) => {
                    // As the store does when it saves the change.
                    d.commit();
                    view = next;
                }
                Err(_) => {
                    d.rollback();
                }
            }
            prop_assert_eq!(&read(&d).unwrap(), &view);
        }
    }
}

proptest! {
    /// Any valid subject, reference ID and body round-trips through the document unchanged.
    #[test]
    fn fields_round_trip(subject in "[a-zA-Z0-9 äöü€]{1,200}", reference in proptest::option::of("[A-Z0-9-]{1,100}"), body in ".{1,300}") {
        prop_assume!(!subject.trim().is_empty() && !body.trim().is_empty());
        let mut c = new_task(None);
        c.subject = subject.trim().to_string();
        c.reference_id = reference;
        c.messages[0].body = body;
        let d = doc_of(&c);
        prop_assert_eq!(read(&d).unwrap(), c);
    }

    /// Overdue holds exactly when a task is open, not done, and past its due date.
    #[test]
    fn overdue_rule(task in any::<bool>(), resolved in any::<bool>(), p in 0usize..4, due_off in proptest::option::of(-5i64..5)) {
        let today: NaiveDate = "2026-06-10".parse().unwrap();
        let kind = if task { Kind::Task } else { Kind::Message };
        let state = if resolved { State::Resolved } else { State::Open };
        let progress = task.then(|| Progress::ALL[p]);
        let due = due_off.map(|o| today + chrono::Duration::days(o));
        let expect = task && !resolved && !matches!(progress, Some(Progress::Completed | Progress::Cancelled)) && due.is_some_and(|d| d < today);
        prop_assert_eq!(is_overdue(kind, state, progress, due, today), expect);
    }
}

#[test]
fn concurrent_state_and_subject_changes_converge_with_full_history() {
    let c = new_task(None);
    let mut a = doc_of(&c);
    let mut b = a.fork().with_actor(ActorId::random());
    let v = read(&a).unwrap();
    let (ann, bo) = (author("acme", "ann"), author("bolt", "bo"));
    commands::apply(
        &mut a,
        &v,
        &Command::SetProgress(Progress::Completed),
        &ann,
        at(5),
    )
    .unwrap();
    commands::apply(
        &mut b,
        &v,
        &Command::SetProgress(Progress::Cancelled),
        &bo,
        at(5),
    )
    .unwrap();
    let rename = |s: &str| Command::Update {
        subject: Some(s.into()),
        reference_id: None,
        due_date: None,
    };
    let (va, vb) = (read(&a).unwrap(), read(&b).unwrap());
    commands::apply(&mut a, &va, &rename("from a"), &ann, at(6)).unwrap();
    commands::apply(&mut b, &vb, &rename("from b"), &ann, at(6)).unwrap();
    a.merge(&mut b).unwrap();
    b.merge(&mut a).unwrap();
    let (ra, rb) = (read(&a).unwrap(), read(&b).unwrap());
    assert_eq!(ra, rb, "the same winner everywhere");
    let progress_events = ra.history.iter().filter(|e| e.action == "progress").count();
    assert_eq!(progress_events, 2, "both changes stay in the history");
    assert!(["from a", "from b"].contains(&ra.subject.as_str()));
}
