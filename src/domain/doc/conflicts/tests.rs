use automerge::{AutoCommit, transaction::Transactable};

use super::*;

#[test]
fn a_field_set_on_two_copies_is_reported_until_set_again() {
    let mut a = AutoCommit::new();
    a.put(ROOT, "progress", "open").unwrap();
    let mut b = a.fork();
    a.put(ROOT, "progress", "completed").unwrap();
    b.put(ROOT, "progress", "cancelled").unwrap();
    a.merge(&mut b).unwrap();
    let doc = a.document().clone();
    let c = read(&doc).unwrap();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].field, "progress");
    let standing = doc
        .get(ROOT, "progress")
        .unwrap()
        .unwrap()
        .0
        .into_string()
        .ok();
    assert_eq!(c[0].standing.value, standing);
    assert_eq!(c[0].others.len(), 1);
    assert_ne!(c[0].others[0].value, standing);
    // No history entries were written: nobody is named.
    assert_eq!(c[0].standing.by, None);
    a.put(ROOT, "progress", "in_progress").unwrap();
    assert!(read(a.document()).unwrap().is_empty());
}

#[test]
fn commands_name_who_set_each_value_and_settle_a_crossing_with_the_standing_value() {
    use crate::domain::commands::{self, Command, NewConversation};
    use crate::domain::{Kind, OrgId, Role, new_id};
    let who = |org: &str| Author {
        org: OrgId::parse(org).unwrap(),
        user: format!("{org}-user"),
    };
    let now = chrono::Utc::now();
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "Thin description".into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: None,
        message_id: new_id(),
        attachments: Vec::new(),
    };
    let bolt = OrgId::parse("bolt").unwrap();
    let c = commands::new_conversation(n, who("acme"), Role::Retailer, &bolt, Role::Supplier, now)
        .unwrap();
    let mut a = AutoCommit::new().with_actor(automerge::ActorId::random());
    super::super::create(&mut a, &c).unwrap();
    let mut b = a.fork().with_actor(automerge::ActorId::random());
    let set = |d: &mut AutoCommit, by: &Author, p: Progress| {
        let v = super::super::read(d).unwrap();
        let o = commands::apply(d, &v, &Command::SetProgress(p), by, now).unwrap();
        // One change per command, as the store writes them.
        d.commit();
        o
    };
    set(&mut a, &who("acme"), Progress::Completed);
    set(&mut b, &who("bolt"), Progress::Cancelled);
    let rename = |d: &mut AutoCommit, s: &str| {
        let v = super::super::read(d).unwrap();
        let cmd = Command::Update {
            subject: Some(s.into()),
            reference_id: None,
            due_date: None,
        };
        let o = commands::apply(d, &v, &cmd, &who("acme"), now).unwrap();
        d.commit();
        o
    };
    rename(&mut a, "From site A");
    rename(&mut b, "From site B");
    a.merge(&mut b).unwrap();
    let got = read(a.document()).unwrap();
    assert_eq!(
        got.iter().map(|c| c.field).collect::<Vec<_>>(),
        ["subject", "progress"]
    );
    let p = &got[1];
    let by_value = |s: &Setting| (s.value.clone().unwrap(), s.by.clone().unwrap().org);
    let mut all: Vec<_> = p.others.iter().chain([&p.standing]).map(by_value).collect();
    all.sort();
    assert_eq!(
        all,
        [
            ("cancelled".to_string(), OrgId::parse("bolt").unwrap()),
            ("completed".to_string(), OrgId::parse("acme").unwrap())
        ]
    );
    // Confirming the standing values is a change, and it settles both crossings.
    let standing = Progress::parse(p.standing.value.as_deref().unwrap()).unwrap();
    let subject = got[0].standing.value.clone().unwrap();
    assert_eq!(
        set(&mut a, &who("bolt"), standing),
        commands::Outcome::Changed
    );
    assert_eq!(rename(&mut a, &subject), commands::Outcome::Changed);
    assert!(read(a.document()).unwrap().is_empty());
    // Without a crossing the same command changes nothing.
    assert_eq!(
        set(&mut a, &who("bolt"), standing),
        commands::Outcome::Unchanged
    );
}

#[test]
fn a_value_the_schema_refuses_is_left_out() {
    let mut a = AutoCommit::new();
    let mut b = a.fork();
    a.put(ROOT, "progress", "completed").unwrap();
    b.put(ROOT, "progress", "exploded").unwrap();
    a.merge(&mut b).unwrap();
    let c = read(a.document()).unwrap();
    assert!(c.iter().all(|c| {
        c.others
            .iter()
            .chain([&c.standing])
            .all(|s| s.value.as_deref() != Some("exploded"))
    }));
}

/// A task started by acme with bolt, on two copies of the document with actors of their
/// own, and a way to set progress through the commands.
fn started() -> (AutoCommit, AutoCommit) {
    use crate::domain::commands::{self, NewConversation};
    use crate::domain::{Kind, Role, new_id};
    let n = NewConversation {
        id: new_id(),
        kind: Kind::Task,
        subject: "Photos".into(),
        topic: None,
        reference_id: None,
        due_date: None,
        body: None,
        message_id: new_id(),
        attachments: Vec::new(),
    };
    let bolt = OrgId::parse("bolt").unwrap();
    let c = commands::new_conversation(
        n,
        who("acme"),
        Role::Retailer,
        &bolt,
        Role::Supplier,
        chrono::Utc::now(),
    )
    .unwrap();
    let mut a = AutoCommit::new().with_actor(automerge::ActorId::random());
    super::super::create(&mut a, &c).unwrap();
    let b = a.fork().with_actor(automerge::ActorId::random());
    (a, b)
}

fn who(org: &str) -> Author {
    Author {
        org: OrgId::parse(org).unwrap(),
        user: format!("{org}-user"),
    }
}

fn apply(d: &mut AutoCommit, by: &str, cmd: crate::domain::commands::Command) {
    let v = super::super::read(d).unwrap();
    crate::domain::commands::apply(d, &v, &cmd, &who(by), chrono::Utc::now()).unwrap();
    d.commit();
}

#[test]
fn the_same_value_set_on_both_sides_is_no_crossing() {
    use crate::domain::commands::Command;
    let (mut a, mut b) = started();
    apply(&mut a, "acme", Command::SetProgress(Progress::Completed));
    apply(&mut b, "bolt", Command::SetProgress(Progress::Completed));
    apply(&mut a, "acme", Command::Resolve);
    apply(&mut b, "bolt", Command::Resolve);
    a.merge(&mut b).unwrap();
    assert_eq!(a.get_all(ROOT, "progress").unwrap().len(), 2);
    assert!(read(a.document()).unwrap().is_empty());
    assert!(!crossed(&a, "progress"));
    assert!(!crossed(&a, "state"));
}

/// Writes `field = value` with a history entry in `by`'s name in the same change, or with
/// none — the way a hostile node can, bypassing the commands.
fn plant(d: &mut AutoCommit, field: &str, value: &str, by: Option<&str>) {
    d.put(ROOT, field, value).unwrap();
    if let Some(by) = by {
        let e = crate::domain::Event {
            id: crate::domain::new_id(),
            at: chrono::Utc::now(),
            by: who(by),
            action: field.into(),
            from: None,
            to: Some(value.into()),
        };
        super::super::add_event(d, &e).unwrap();
    }
    d.commit();
}

#[test]
fn a_planted_losing_value_is_not_reported() {
    use crate::domain::commands::Command;
    let (mut a, mut b) = started();
    let (mut bidi, mut by_partner, mut unnamed, mut huge) =
        (b.fork(), b.fork(), b.fork(), b.fork());
    for c in [&mut bidi, &mut by_partner, &mut unnamed, &mut huge] {
        c.set_actor(automerge::ActorId::random());
    }
    // A bidi override, even in a change that claims to be the creator's.
    plant(
        &mut bidi,
        "subject",
        "Invoice \u{202E}fdp.exe",
        Some("acme"),
    );
    // A clean value, but bolt may not set the reference ID.
    plant(&mut by_partner, "reference_id", "PO-666", Some("bolt"));
    // A clean value whose setter cannot be told.
    plant(&mut unnamed, "due_date", "2031-01-01", None);
    let long = "x".repeat(limits::SUBJECT_CHARS + 1);
    plant(&mut huge, "subject", &long, Some("acme"));
    // Acme's own writes come later in op order, so they are the standing values.
    for p in [Progress::InProgress, Progress::Open, Progress::InProgress] {
        apply(&mut a, "acme", Command::SetProgress(p));
    }
    apply(
        &mut a,
        "acme",
        Command::Update {
            subject: Some("Photos, all sides".into()),
            reference_id: Some(Some("PO-1".into())),
            due_date: Some(Some("2030-06-01".parse().unwrap())),
        },
    );
    for c in [&mut bidi, &mut by_partner, &mut unnamed, &mut huge] {
        a.merge(c).unwrap();
    }
    let v = super::super::read(&a).unwrap();
    assert_eq!(v.subject, "Photos, all sides");
    assert_eq!(v.reference_id.as_deref(), Some("PO-1"));
    assert!(crossed(&a, "subject") && crossed(&a, "reference_id"));
    assert_eq!(read(a.document()).unwrap(), vec![]);
}

fn pad(d: &mut AutoCommit) {
    for i in 0..60 {
        let p = if i % 2 == 0 { "in_progress" } else { "open" };
        d.put(ROOT, "progress", p).unwrap();
        d.commit();
    }
}

#[test]
fn only_a_real_resolve_explains_a_leftover_resolved_at() {
    use crate::domain::commands::Command;
    let (mut a, _) = started();
    apply(&mut a, "acme", Command::Resolve);
    let mut b = a.fork().with_actor(automerge::ActorId::random());
    // Honest: acme reopens while bolt reopens and resolves again; the reopen stands and
    // bolt's resolved_at survives it (a concurrent put wins over a delete).
    let mut honest = a.fork().with_actor(automerge::ActorId::random());
    let mut resolver = a.fork().with_actor(automerge::ActorId::random());
    apply(&mut resolver, "bolt", Command::Reopen);
    apply(&mut resolver, "bolt", Command::Resolve);
    // Writes before the reopen give acme's side the higher operation ids, so its open
    // stands. (Setting a value that is already there writes nothing, so they alternate.)
    pad(&mut honest);
    apply(&mut honest, "acme", Command::Reopen);
    // Forged: an open state without clearing resolved_at, excused only by a garbage
    // losing value.
    b.put(ROOT, "state", "gone").unwrap();
    b.commit();
    pad(&mut a);
    a.put(ROOT, "state", "open").unwrap();
    a.commit();
    a.merge(&mut b).unwrap();
    assert_eq!(a.get_all(ROOT, "state").unwrap().len(), 2);
    assert_eq!(super::super::read(&a).unwrap().state, State::Open);
    assert!(super::super::read_strict(&a).is_err());
    honest.merge(&mut resolver).unwrap();
    let v = super::super::read_strict(&honest).unwrap();
    assert_eq!(v.state, State::Open);
    assert!(v.resolved_at.is_some());
}
