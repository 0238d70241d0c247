//! Search terms of an inbox row: what the search box finds a conversation by (words of its
//! subject, its reference ID and its topic ref). Pure, so the store's index and the matching
//! of a query against a row always agree.

use super::Summary;

/// Terms shorter than this are not indexed on their own (they still match inside a longer
/// whole reference such as `po-1`).
const MIN_TERM_CHARS: usize = 2;
/// Longer terms are cut, which keeps index keys bounded.
const MAX_TERM_CHARS: usize = 40;
/// At most this many terms are taken from one query.
pub const MAX_QUERY_TERMS: usize = 5;

fn cut(s: &str) -> String {
    s.chars().take(MAX_TERM_CHARS).collect()
}

/// The terms of a text: each whitespace-separated token, lower-cased and trimmed of
/// punctuation at its ends (so `SKU-12345,` gives `sku-12345`), and each alphanumeric part of
/// it (so `sku` and `12345` find it too).
pub fn terms_of(text: &str, out: &mut Vec<String>) {
    for token in text.split_whitespace() {
        let t = token
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        if t.chars().count() >= MIN_TERM_CHARS {
            out.push(cut(&t));
        }
        let parts: Vec<&str> = t.split(|c: char| !c.is_alphanumeric()).collect();
        if parts.len() > 1 {
            for p in parts {
                if p.chars().count() >= MIN_TERM_CHARS {
                    out.push(cut(p));
                }
            }
        }
        // Pieces joined by anything but `-`, `.` or `_`: `ticket#TK-77` is found by `tk-77`,
        // `ann@bolt.example` by `bolt.example`.
        let pieces: Vec<&str> = t
            .split(|c: char| !(c.is_alphanumeric() || matches!(c, '-' | '.' | '_')))
            .map(|p| p.trim_matches(|c: char| !c.is_alphanumeric()))
            .filter(|p| p.chars().count() >= MIN_TERM_CHARS)
            .collect();
        if pieces.len() > 1 {
            out.extend(pieces.into_iter().map(cut));
        }
    }
}

/// Every term a row is indexed under, without duplicates.
pub fn terms(s: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    terms_of(&s.subject, &mut out);
    if let Some(r) = &s.reference_id {
        terms_of(r, &mut out);
    }
    if let Some(t) = &s.topic {
        terms_of(&t.reference, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// The terms of a search query; each must be the start of some term of a matching row.
pub fn query_terms(q: &str) -> Vec<String> {
    let mut out: Vec<String> = q
        .split_whitespace()
        .map(|t| {
            cut(&t
                .trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase())
        })
        .filter(|t| !t.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out.truncate(MAX_QUERY_TERMS);
    out
}

/// Whether a row matches every query term by prefix.
pub fn matches(row_terms: &[String], query: &[String]) -> bool {
    query
        .iter()
        .all(|q| row_terms.iter().any(|t| t.starts_with(q.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_references() {
        let mut v = Vec::new();
        terms_of("Why is SKU-12345, out of stock?", &mut v);
        assert!(v.contains(&"sku-12345".to_string()));
        assert!(v.contains(&"sku".to_string()));
        assert!(v.contains(&"12345".to_string()));
        assert!(v.contains(&"stock".to_string()));
        assert!(!v.iter().any(|t| t.ends_with('?') || t.ends_with(',')));
        let q = query_terms("  sku-123 ");
        assert!(matches(&v, &q));
        assert!(!matches(&v, &query_terms("sku-9")));
        assert!(matches(&v, &query_terms("STOCK why")));
    }

    #[test]
    fn query_is_bounded() {
        let q = query_terms(&"ab ".repeat(50));
        assert!(q.len() <= MAX_QUERY_TERMS);
        assert!(query_terms("  ,, ").is_empty());
    }
}
