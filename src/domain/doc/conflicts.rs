//! Crossed changes: a field two nodes set while they were apart.
//!
//! Automerge keeps every value set concurrently for a map key and picks the same one on every
//! node (the value of the operation with the highest id); `get_all` lists them all, the
//! standing one last. The other values stay until someone sets the field again: that write
//! sees them all and replaces them, so the crossing clears by itself.
//!
//! A concurrent delete does not survive as a value of its own (Automerge lets a concurrent set
//! win over a delete), so `None` here only stands for a value this node cannot show.

use std::collections::HashMap;

use automerge::{Automerge, ObjType, ROOT, ReadDoc, Value};

use super::super::{Author, OrgId, Progress, State, check_text, limits};

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
/// the value set is the one already standing (that is how a user settles a crossing). Values
/// that are all equal (both sides reopened, or marked the same progress) are no crossing.
pub fn crossed<D: ReadDoc>(doc: &D, field: &str) -> bool {
    doc.get_all(ROOT, field)
        .is_ok_and(|all| all.windows(2).any(|w| w[0].0 != w[1].0))
}

/// Whether `s` is a value of `field` as the API shows it; a value the schema would refuse
/// (only a losing value of a crossing is not checked on arrival) is left out of the report.
/// Text fields get the same checks the write gate applies to a standing value.
fn valid(field: &'static str, s: &str) -> bool {
    match field {
        "state" => State::parse(s).is_some(),
        "progress" => Progress::parse(s).is_some(),
        "due_date" => s.parse::<chrono::NaiveDate>().is_ok(),
        "subject" => check_text(field, s, limits::SUBJECT_CHARS, true).is_ok(),
        "reference_id" => check_text(field, s, limits::REFERENCE_ID_CHARS, true).is_ok(),
        _ => false,
    }
}

/// Fields only the org that started the conversation may set. A losing value of one of them
/// is shown only when its setter is known to be that org: the gate judges the standing value
/// alone, so a partner's concurrent write would otherwise reach the report unchecked.
const CREATOR_ONLY: &[&str] = &["subject", "due_date", "reference_id"];

/// Every crossed field of `doc`, in [`FIELDS`] order; empty when nothing crossed.
pub fn read(doc: &Automerge) -> Result<Vec<Conflict>, automerge::AutomergeError> {
    let mut out = Vec::new();
    let mut authors: Option<Changes> = None;
    for &field in FIELDS {
        let all = doc.get_all(ROOT, field)?;
        if all.len() < 2 {
            continue;
        }
        // Who made each change is read once, and only for a document that has a crossing.
        let authors = match &mut authors {
            Some(a) => a,
            None => authors.insert(Changes::read(doc)?),
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
                by: authors.by(id).cloned(),
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
        let creator_only = CREATOR_ONLY.contains(&field);
        let others: Vec<Setting> = rest
            .iter()
            .filter_map(setting)
            // The same value set on both sides is no crossing to settle.
            .filter(|o| o.value != standing.value)
            .filter(|o| {
                !creator_only
                    || o.by
                        .as_ref()
                        .is_some_and(|b| Some(&b.org) == authors.creator.as_ref())
            })
            .collect();
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

/// One change's operation range and the author of the history entry written in it.
struct ChangeAuthor {
    start_op: u64,
    max_op: u64,
    by: Option<Author>,
}

/// The changes of a document per actor, each actor's sorted by operation range (an actor's
/// ranges never overlap), so the change that made an operation is a binary search away.
struct Changes {
    by_actor: HashMap<automerge::ActorId, Vec<ChangeAuthor>>,
    /// The org that started the conversation, when the document says.
    creator: Option<OrgId>,
}

impl Changes {
    /// Every local write puts a field and its history entry in one change, so the entry whose
    /// object was made in the change that set a value tells exactly who set it. A change with
    /// no history entry (one not made through Parley's commands) has no known author.
    fn read(doc: &Automerge) -> Result<Self, automerge::AutomergeError> {
        let mut by_actor: HashMap<automerge::ActorId, Vec<ChangeAuthor>> = HashMap::new();
        for m in doc.get_changes_meta(&[]) {
            by_actor
                .entry(m.actor.into_owned())
                .or_default()
                .push(ChangeAuthor {
                    start_op: m.start_op,
                    max_op: m.max_op,
                    by: None,
                });
        }
        // An empty change's range is empty; among equal starts it sorts first, so the search
        // below lands on the change that holds operations.
        for v in by_actor.values_mut() {
            v.sort_by_key(|c| (c.start_op, c.max_op));
        }
        let mut out = Changes {
            by_actor,
            creator: None,
        };
        if let Some((Value::Object(ObjType::Map), cb)) = doc.get(ROOT, "created_by")? {
            out.creator = doc
                .get(&cb, "org")?
                .and_then(|(v, _)| v.into_string().ok())
                .and_then(|o| OrgId::parse(&o).ok());
        }
        let Some((Value::Object(ObjType::Map), hist)) = doc.get(ROOT, "history")? else {
            return Ok(out);
        };
        for item in doc.map_range(&hist, ..) {
            let obj = item.id();
            let Some(c) = out.find_mut(&obj) else {
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

    /// The change that made operation `op`: the one of its actor whose range holds it.
    fn find_mut(&mut self, op: &automerge::ObjId) -> Option<&mut ChangeAuthor> {
        let automerge::ObjId::Id(ctr, actor, _) = op else {
            return None;
        };
        let v = self.by_actor.get_mut(actor)?;
        let i = v.partition_point(|c| c.start_op <= *ctr).checked_sub(1)?;
        v.get_mut(i).filter(|c| *ctr <= c.max_op)
    }

    /// Who made operation `op`, when its change wrote a history entry.
    fn by(&self, op: &automerge::ObjId) -> Option<&Author> {
        let automerge::ObjId::Id(ctr, actor, _) = op else {
            return None;
        };
        let v = self.by_actor.get(actor)?;
        let i = v.partition_point(|c| c.start_op <= *ctr).checked_sub(1)?;
        v.get(i).filter(|c| *ctr <= c.max_op)?.by.as_ref()
    }
}

#[cfg(test)]
mod tests;
