//! Crossed changes: a field two nodes set while they were apart.
//!
//! Automerge keeps every value set concurrently for a map key and picks the same one on every
//! node (the value of the operation with the highest id); `get_all` lists them all, the
//! standing one last. The other values stay until someone sets the field again: that write
//! sees them all and replaces them, so the crossing clears by itself.
//!
//! A concurrent delete does not survive as a value of its own (Automerge lets a concurrent set
//! win over a delete), so `None` here only stands for a value this node cannot show.

use automerge::{Automerge, ObjType, ROOT, ReadDoc, Value};

use super::super::{Author, OrgId, Progress, State};

/// The fields whose crossings are reported, as the API names them.
pub const FIELDS: &[&str] = &["subject", "state", "progress", "due_date", "reference_id"];

/// One value of a crossed field and, when the history tells, who set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub value: Option<String>,
    pub by: Option<Author>,
}

/// A field that holds more than one value: the one that stands and the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub field: &'static str,
    pub standing: Setting,
    pub others: Vec<Setting>,
}

/// Whether `field` holds more than one value: setting it then changes the document even when
/// the value set is the one already standing (that is how a user settles a crossing).
pub fn crossed<D: ReadDoc>(doc: &D, field: &str) -> bool {
    doc.get_all(ROOT, field).is_ok_and(|all| all.len() > 1)
}

/// Whether `s` is a value of `field` as the API shows it; a value the schema would refuse
/// (only a losing value of a crossing is not checked on arrival) is left out of the report.
fn valid(field: &str, s: &str) -> bool {
    match field {
        "state" => State::parse(s).is_some(),
        "progress" => Progress::parse(s).is_some(),
        "due_date" => s.parse::<chrono::NaiveDate>().is_ok(),
        _ => true,
    }
}

/// Every crossed field of `doc`, in [`FIELDS`] order; empty when nothing crossed.
pub fn read(doc: &Automerge) -> Result<Vec<Conflict>, automerge::AutomergeError> {
    let mut out = Vec::new();
    let mut authors: Option<Vec<ChangeAuthor>> = None;
    for &field in FIELDS {
        let all = doc.get_all(ROOT, field)?;
        if all.len() < 2 {
            continue;
        }
        // Who made each change is read once, and only for a document that has a crossing.
        let authors = match &mut authors {
            Some(a) => a,
            None => authors.insert(change_authors(doc)?),
        };
        let setting = |(v, id): &(Value<'_>, automerge::ObjId)| -> Option<Setting> {
            let value = match v {
                Value::Scalar(s) => match s.as_ref() {
                    automerge::ScalarValue::Str(s) if valid(field, s) => Some(s.to_string()),
                    automerge::ScalarValue::Null => None,
                    _ => return None,
                },
                Value::Object(_) => return None,
            };
            Some(Setting {
                value,
                by: position(authors, id)
                    .and_then(|i| authors.get(i))
                    .and_then(|c| c.by.clone()),
            })
        };
        // `get_all` orders values by operation id; the last is the one `get` answers, and a
        // stored document's standing value has passed the schema check.
        let Some((last, rest)) = all.split_last() else {
            continue;
        };
        let Some(standing) = setting(last) else {
            continue;
        };
        let others: Vec<Setting> = rest.iter().filter_map(setting).collect();
        if others.is_empty() {
            continue;
        }
        out.push(Conflict {
            field,
            standing,
            others,
        });
    }
    Ok(out)
}

/// A change's operation range and the author of the history entry written in it.
struct ChangeAuthor {
    actor: automerge::ActorId,
    start_op: u64,
    max_op: u64,
    by: Option<Author>,
}

/// Every local write puts a field and its history entry in one change, so the entry whose
/// object was made in the change that set a value tells exactly who set it. A change with no
/// history entry (one not made through Parley's commands) has no known author.
fn change_authors(doc: &Automerge) -> Result<Vec<ChangeAuthor>, automerge::AutomergeError> {
    let mut out: Vec<ChangeAuthor> = doc
        .get_changes_meta(&[])
        .into_iter()
        .map(|m| ChangeAuthor {
            actor: m.actor.into_owned(),
            start_op: m.start_op,
            max_op: m.max_op,
            by: None,
        })
        .collect();
    let Some((Value::Object(ObjType::Map), hist)) = doc.get(ROOT, "history")? else {
        return Ok(out);
    };
    for item in doc.map_range(&hist, ..) {
        let obj = item.id();
        let Some(c) = position(&out, &obj).and_then(|i| out.get_mut(i)) else {
            continue;
        };
        if c.by.is_some() {
            continue;
        }
        let org = doc
            .get(&obj, "org")?
            .and_then(|(v, _)| v.into_string().ok());
        let user = doc
            .get(&obj, "user")?
            .and_then(|(v, _)| v.into_string().ok());
        if let (Some(org), Some(user)) = (org, user)
            && let Ok(org) = OrgId::parse(&org)
        {
            c.by = Some(Author { org, user });
        }
    }
    Ok(out)
}

/// The change that made operation `op`: the one of its actor whose operation range holds it.
fn position(changes: &[ChangeAuthor], op: &automerge::ObjId) -> Option<usize> {
    let automerge::ObjId::Id(ctr, actor, _) = op else {
        return None;
    };
    changes
        .iter()
        .position(|c| &c.actor == actor && c.start_op <= *ctr && *ctr <= c.max_op)
}

#[cfg(test)]
mod tests {
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
        };
        let bolt = OrgId::parse("bolt").unwrap();
        let c =
            commands::new_conversation(n, who("acme"), Role::Retailer, &bolt, Role::Supplier, now)
                .unwrap();
        let mut a = AutoCommit::new().with_actor(automerge::ActorId::random());
        super::super::create(&mut a, &c).unwrap();
        let mut b = a.fork().with_actor(automerge::ActorId::random());
        let set = |d: &mut AutoCommit, by: &Author, p: Progress| {
            let v = super::super::read(d).unwrap();
            commands::apply(d, &v, &Command::SetProgress(p), by, now).unwrap()
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
            commands::apply(d, &v, &cmd, &who("acme"), now).unwrap()
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
}
