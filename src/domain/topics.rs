//! Topic records: the orders, items, returns, … that conversations are about, as shown in
//! list and detail views. A record is keyed by (kind, ref); it comes from the API, from a CSV
//! import, or from a conversation started about a topic nobody described yet.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DomainError, Topic, TopicKind, check_multiline_text, check_text, limits};

/// At most this many extra fields per record, each name and value bounded.
pub const MAX_FIELDS: usize = 20;
pub const FIELD_NAME_CHARS: usize = 40;
pub const FIELD_VALUE_CHARS: usize = 500;
/// At most this many rows in one import.
pub const MAX_IMPORT_ROWS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub kind: TopicKind,
    #[serde(rename = "ref")]
    pub reference: String,
    pub title: String,
    pub url: Option<String>,
    /// Other columns, e.g. `status`, `quantity`, `store`.
    pub fields: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A record as a user sends it (API body or CSV row), before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInput {
    pub kind: TopicKind,
    pub reference: String,
    pub title: String,
    pub url: Option<String>,
    pub fields: BTreeMap<String, String>,
}

impl TopicInput {
    /// Checks every field; refs and titles are trimmed.
    pub fn validate(mut self) -> Result<TopicInput, DomainError> {
        self.reference = self.reference.trim().to_string();
        self.title = self.title.trim().to_string();
        check_text("ref", &self.reference, limits::TOPIC_REF_CHARS, true)?;
        check_text("title", &self.title, limits::TOPIC_LABEL_CHARS, true)?;
        if let Some(u) = &self.url {
            check_text("url", u, limits::TOPIC_URL_CHARS, false)?;
            check_link_scheme(u)?;
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(DomainError::invalid(
                "fields",
                format!("at most {MAX_FIELDS} fields per record"),
            ));
        }
        for (k, v) in &self.fields {
            check_text("field name", k, FIELD_NAME_CHARS, true)?;
            check_multiline_text("field value", v, FIELD_VALUE_CHARS, false)?;
        }
        Ok(self)
    }

    pub fn into_record(self, created_at: DateTime<Utc>, now: DateTime<Utc>) -> TopicRecord {
        TopicRecord {
            kind: self.kind,
            reference: self.reference,
            title: self.title,
            url: self.url,
            fields: self.fields,
            created_at,
            updated_at: now,
        }
    }
}

/// Schemes a record's link may use: it is shown as a link that opens on a click, so anything
/// that runs or reads in the page's context (`javascript:`, `data:`, `file:`, …) is refused.
pub const LINK_SCHEMES: [&str; 3] = ["http", "https", "mailto"];

/// Checks that a non-empty link starts with one of [`LINK_SCHEMES`] and holds no spaces (a
/// browser strips leading spaces and tabs, which could hide a scheme).
fn check_link_scheme(url: &str) -> Result<(), DomainError> {
    if url.is_empty() {
        return Ok(());
    }
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    let allowed = scheme.as_deref().is_some_and(|s| LINK_SCHEMES.contains(&s));
    if !allowed || url.chars().any(char::is_whitespace) {
        return Err(DomainError::invalid(
            "url",
            "must be an http://, https:// or mailto: address without spaces",
        ));
    }
    Ok(())
}

/// The record a conversation's topic implies when no record exists yet.
pub fn record_for_topic(t: &Topic, now: DateTime<Utc>) -> TopicRecord {
    TopicRecord {
        kind: t.kind,
        reference: t.reference.trim().to_string(),
        title: t
            .label
            .clone()
            .filter(|l| !l.trim().is_empty())
            .unwrap_or_else(|| t.reference.trim().to_string()),
        url: None,
        fields: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    }
}

/// One refused row of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Splits CSV text (RFC 4180: commas, double-quoted fields with `""` escapes and line breaks
/// inside quotes, LF or CRLF) into records, each with the line number it starts on.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, LineError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start = 1;
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => {
                return Err(LineError {
                    line,
                    message: "a quote inside an unquoted field; put the whole field in quotes and double the quote".into(),
                });
            }
            ',' => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
                if !(row.len() == 1 && row[0].is_empty()) {
                    rows.push((start, std::mem::take(&mut row)));
                }
                row.clear();
                line += 1;
                start = line;
            }
            _ if was_quoted => {
                return Err(LineError {
                    line,
                    message: "text after a closing quote; a quoted field must end at a comma or the end of the line".into(),
                });
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(LineError {
            line: start,
            message: "a quoted field is never closed".into(),
        });
    }
    if !field.is_empty() || !row.is_empty() || was_quoted {
        row.push(field);
        rows.push((start, row));
    }
    Ok(rows)
}

/// Reads an import: a header row naming `kind`, `ref` and `title` (and optionally `url`; any
/// other column becomes a field), then one record per row. Every row is checked; if any is
/// wrong, all problems are returned and nothing is to be imported.
pub fn parse_import(text: &str) -> Result<Vec<TopicInput>, Vec<LineError>> {
    let rows = parse_csv(text).map_err(|e| vec![e])?;
    let mut rows = rows.into_iter();
    let Some((hline, header)) = rows.next() else {
        return Err(vec![LineError {
            line: 1,
            message: "the file is empty; the first line must name the columns, e.g. kind,ref,title"
                .into(),
        }]);
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(ck), Some(cr), Some(ct)) = (col("kind"), col("ref"), col("title")) else {
        return Err(vec![LineError {
            line: hline,
            message: format!(
                "the header must name the columns kind, ref and title (found: {})",
                header.join(", ")
            ),
        }]);
    };
    let cu = col("url");
    let mut seen_cols = HashMap::new();
    for (i, h) in header.iter().enumerate() {
        if h.is_empty() {
            return Err(vec![LineError {
                line: hline,
                message: format!("column {} has no name", i + 1),
            }]);
        }
        if let Some(j) = seen_cols.insert(h.clone(), i) {
            return Err(vec![LineError {
                line: hline,
                message: format!(
                    "column {h:?} appears twice (columns {} and {})",
                    j + 1,
                    i + 1
                ),
            }]);
        }
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashMap<(TopicKind, String), usize> = HashMap::new();
    for (line, row) in rows {
        if out.len() + errors.len() >= MAX_IMPORT_ROWS {
            errors.push(LineError {
                line,
                message: format!("too many rows: at most {MAX_IMPORT_ROWS} per import"),
            });
            break;
        }
        if row.len() != header.len() {
            errors.push(LineError {
                line,
                message: format!("has {} columns, the header has {}", row.len(), header.len()),
            });
            continue;
        }
        let Some(kind) = TopicKind::parse(row[ck].trim()) else {
            let kinds: Vec<&str> = TopicKind::ALL.iter().map(|k| k.as_str()).collect();
            errors.push(LineError {
                line,
                message: format!("kind {:?} is not one of {}", row[ck], kinds.join(", ")),
            });
            continue;
        };
        let fields = header
            .iter()
            .enumerate()
            .filter(|(i, _)| ![ck, cr, ct].contains(i) && Some(*i) != cu)
            .filter(|(i, _)| !row[*i].is_empty())
            .map(|(i, h)| (h.clone(), row[i].clone()))
            .collect();
        let input = TopicInput {
            kind,
            reference: row[cr].clone(),
            title: row[ct].clone(),
            url: cu.map(|i| row[i].clone()).filter(|u| !u.is_empty()),
            fields,
        };
        match input.validate() {
            Ok(t) => {
                if let Some(first) = seen.insert((t.kind, t.reference.clone()), line) {
                    errors.push(LineError {
                        line,
                        message: format!(
                            "{} {} already appears on line {first}",
                            t.kind, t.reference
                        ),
                    });
                } else {
                    out.push(t);
                }
            }
            Err(e) => errors.push(LineError {
                line,
                message: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_and_mail_links_are_taken() {
        let input = |url: &str| TopicInput {
            kind: TopicKind::Item,
            reference: "SKU-1".into(),
            title: "Kettle".into(),
            url: Some(url.into()),
            fields: BTreeMap::new(),
        };
        for ok in [
            "https://shop.example/sku-1",
            "HTTP://x",
            "mailto:buyer@example.com",
            "",
        ] {
            assert!(input(ok).validate().is_ok(), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>",
            "vbscript:x",
            "file:///etc/passwd",
            "/relative/path",
            "shop.example",
            " javascript:alert(1)",
            "https://x/ y",
        ] {
            let e = input(bad).validate().unwrap_err();
            assert!(e.to_string().contains("http://"), "{bad}: {e}");
        }
    }

    #[test]
    fn csv_quotes_and_line_numbers() {
        let rows =
            parse_csv("a,b\r\n\"x, y\",\"say \"\"hi\"\"\"\n\"two\nlines\",z\n\nlast,1").unwrap();
        assert_eq!(rows[0], (1, vec!["a".into(), "b".into()]));
        assert_eq!(rows[1], (2, vec!["x, y".into(), "say \"hi\"".into()]));
        assert_eq!(rows[2], (3, vec!["two\nlines".into(), "z".into()]));
        assert_eq!(rows[3], (6, vec!["last".into(), "1".into()]));
        assert_eq!(parse_csv("a,\"b").unwrap_err().line, 1);
        assert!(parse_csv("a,b\"c").is_err());
    }

    #[test]
    fn import_reports_every_bad_row_by_line() {
        let text = "kind,ref,title,status\nitem,SKU-1,Kettle,active\nplanet,X,Y,\nitem,,No ref,\nitem,SKU-1,Again,\norder,PO-1,Order one\n";
        let errs = parse_import(text).unwrap_err();
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 4, 5, 6], "{errs:?}");
        let ok = parse_import("kind,ref,title,status,url\nitem,SKU-1,Kettle,active,\n").unwrap();
        assert_eq!(
            ok[0].fields.get("status").map(String::as_str),
            Some("active")
        );
        assert_eq!(ok[0].url, None);
        assert!(parse_import("ref,title\nx,y\n").is_err());
        assert!(parse_import("").is_err());
    }
}
