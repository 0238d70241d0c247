//! `GET /conversations/export.csv`: an inbox view as CSV, streamed page by page.
//!
//! RFC 4180: CRLF line ends; a field holding `,`, `"`, CR or LF is quoted with `"` doubled.
//! Against formula injection (OWASP "CSV Injection") a cell starting with `=`, `+`, `-`, `@`,
//! TAB or CR gets a leading `'`, so a spreadsheet shows it as text instead of running it.
//!
//! The 200 goes out after the first page is read; a later page that fails ends the file with
//! a one-field record saying it is incomplete ([`incomplete`]), because a body that fails
//! part way still ends cleanly on the wire with this HTTP stack.

use std::sync::Arc;

use chrono::SecondsFormat;
use futures_util::StreamExt;
use poem::Body;
use poem_openapi::param::Query;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi};

use super::Tags;
use super::auth::BearerAuth;
use super::conversations::{Folder, Sort};
use super::error::ApiError;
use super::inbox_params::{InboxParams, folder_name};
use super::models::{Kind, Progress, State, TopicKind};
use crate::service::{ExportRow, Service};

pub struct ExportApi {
    pub svc: Arc<Service>,
}

/// The header row; every row has these columns in this order.
pub const COLUMNS: [&str; 13] = [
    "id",
    "kind",
    "partner",
    "subject",
    "topic",
    "reference_id",
    "due_date",
    "progress",
    "state",
    "assignee",
    "created",
    "last_activity",
    "last_message",
];

#[derive(ApiResponse)]
pub enum CsvFile {
    /// The rows, streamed; the parameters were all checked before it started.
    #[oai(status = 200, content_type = "text/csv; charset=utf-8")]
    Ok(Binary<Body>, #[oai(header = "Content-Disposition")] String),
}

/// Appends one field, neutralised and quoted as the module doc says.
pub fn push_field(out: &mut String, value: &str) {
    let formula = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = value.contains([',', '"', '\r', '\n']);
    if quote {
        out.push('"');
    }
    if formula {
        out.push('\'');
    }
    if quote {
        for c in value.chars() {
            if c == '"' {
                out.push('"');
            }
            out.push(c);
        }
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// Appends one record and its CRLF.
pub fn push_record<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
    for (i, f) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_field(out, f);
    }
    out.push_str("\r\n");
}

/// The last record of an export that could not be completed: one field, so that a reader
/// expecting the columns refuses it, and a person opening the file reads it.
pub fn incomplete(why: &str) -> String {
    format!("ERROR: this export is incomplete, rows are missing after this line ({why})")
}

fn push_row(out: &mut String, r: &ExportRow) {
    let s = &r.summary;
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let topic = s
        .topic
        .as_ref()
        .map(|t| format!("{}:{}", t.kind, t.reference))
        .unwrap_or_default();
    let fields: [String; 13] = [
        s.id.to_string(),
        s.kind.to_string(),
        r.partner_name.clone(),
        s.subject.clone(),
        topic,
        s.reference_id.clone().unwrap_or_default(),
        s.due_date.map(|d| d.to_string()).unwrap_or_default(),
        s.progress.map(|p| p.to_string()).unwrap_or_default(),
        s.state.to_string(),
        // Our own user's name: the export is for our org, never sent to the partner.
        s.assignee.clone().unwrap_or_default(),
        time(s.created_at),
        time(s.last_activity_at),
        s.last_message_preview.clone().unwrap_or_default(),
    ];
    push_record(out, fields.iter().map(String::as_str));
}

#[OpenApi(tag = "Tags::Conversations")]
impl ExportApi {
    /// The inbox as CSV: every conversation of a view, in the inbox's order
    ///
    /// Takes the parameters of `GET /conversations` (without `limit`: every row from `cursor`
    /// on, or from the start). Columns: id, kind, partner (the partner's name where known),
    /// subject, topic (`kind:ref`), reference_id, due_date, progress, state, assignee,
    /// created, last_activity (RFC 3339), last_message (the preview). Cells
    /// that a spreadsheet would run as a formula start with `'`.
    #[oai(
        path = "/conversations/export.csv",
        method = "get",
        operation_id = "exportConversations"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn export(
        &self,
        auth: BearerAuth,
        kind: Query<Option<Kind>>,
        state: Query<Option<State>>,
        progress: Query<Option<Progress>>,
        overdue: Query<Option<bool>>,
        #[oai(validator(min_length = 1, max_length = 64))] partner: Query<Option<String>>,
        topic_kind: Query<Option<TopicKind>>,
        topic_ref: Query<Option<String>>,
        reference_id: Query<Option<String>>,
        awaiting_reply: Query<Option<bool>>,
        action_required: Query<Option<bool>>,
        q: Query<Option<String>>,
        folder: Query<Option<Folder>>,
        sort: Query<Option<Sort>>,
        /// `next_cursor` of an inbox page of the same sort: the export starts after it.
        cursor: Query<Option<String>>,
        /// `me`, `none` or a user name.
        #[oai(validator(min_length = 1, max_length = 64))]
        assignee: Query<Option<String>>,
    ) -> Result<CsvFile, ApiError> {
        let (f, view) = InboxParams {
            kind: kind.0,
            state: state.0,
            progress: progress.0,
            overdue: overdue.0,
            partner: partner.0,
            topic_kind: topic_kind.0,
            topic_ref: topic_ref.0,
            reference_id: reference_id.0,
            awaiting_reply: awaiting_reply.0,
            action_required: action_required.0,
            q: q.0,
            folder: folder.0,
            sort: sort.0,
            cursor: cursor.0,
            limit: 1,
            assignee: assignee.0,
            user: auth.0.user.clone(),
        }
        .parse()?;
        let pages = self.svc.export(&auth.0, f, view).await?;
        let mut head = String::new();
        push_record(&mut head, COLUMNS);
        let head = futures_util::stream::once(async move { Ok(head.into_bytes()) });
        let rows = pages.map(|page| {
            let bytes = match page {
                Ok(rows) => {
                    let mut out = String::with_capacity(rows.len() * 256);
                    for r in &rows {
                        push_row(&mut out, r);
                    }
                    out
                }
                Err(e) => {
                    // The status line is sent, and a failed body still ends as a complete
                    // one on the wire (the HTTP stack writes the last chunk): the file says
                    // itself that it is cut short. The service's stream ends after an error.
                    tracing::error!(error = %e, "export stopped part way");
                    let mut out = String::new();
                    push_record(&mut out, [incomplete(&e.to_string()).as_str()]);
                    out
                }
            };
            Ok::<_, std::io::Error>(bytes.into_bytes())
        });
        let name = format!(
            "attachment; filename=\"parley-{}-{}.csv\"",
            folder_name(folder.0),
            self.svc.today()
        );
        Ok(CsvFile::Ok(
            Binary(Body::from_bytes_stream(head.chain(rows))),
            name,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(v: &str) -> String {
        let mut s = String::new();
        push_field(&mut s, v);
        s
    }

    #[test]
    fn quoting_follows_rfc_4180() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(field(""), "");
        let mut rec = String::new();
        push_record(&mut rec, ["a", "b,c", ""]);
        assert_eq!(rec, "a,\"b,c\",\r\n");
    }

    #[test]
    fn formula_cells_are_neutralised() {
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("+1"), "'+1");
        assert_eq!(field("-5"), "'-5");
        assert_eq!(field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(field("\tx"), "'\tx");
        assert_eq!(field("\rx"), "\"'\rx\"");
        assert_eq!(field("a=1"), "a=1");
    }
}
