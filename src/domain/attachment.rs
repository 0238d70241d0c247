//! Files on messages: the reference a conversation document holds, the kinds of file a node
//! takes, and how a file's kind is told from its bytes.
//!
//! A message refers to a file by its SHA-256; the bytes live in the store (`store::blobs`),
//! once per hash, and travel between nodes outside the document. The reference is part of the
//! message and, like the message, never changes once written.

use serde::{Deserialize, Serialize};

use super::{DomainError, check_text};

/// Files one message may carry.
pub const PER_MESSAGE: usize = 20;
/// Longest file name, in characters.
pub const NAME_CHARS: usize = 255;
/// The largest file a reference may describe, whatever a node's own upload limit: a partner
/// may allow bigger files than we do, and its message still arrives (the file is then not
/// fetched here). Beyond this a reference is refused.
pub const MAX_REF_BYTES: u64 = 1 << 30;
/// How files are cut for storage and transfer (the sync protocol's chunk size); the last
/// piece may be shorter.
pub const CHUNK_BYTES: usize = parley_sync::wire::BLOB_CHUNK_BYTES;

/// A file attached to a message. Who attached it and when are the message's author and time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRef {
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    pub size: u64,
    /// The name it was uploaded with (shown and offered on download; never a path here).
    pub name: String,
    /// The media type its content was recognised as (see [`FileKind`]).
    pub mime: String,
}

/// A kind of file a node may take, recognised by its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    /// The name used in configuration (`attachments.types`).
    pub name: &'static str,
    pub mime: &'static str,
    /// Shown in the thread as a picture: raster images only, never SVG.
    pub preview: bool,
}

impl FileKind {
    /// The file name endings this kind is saved under; the first is added to a name that
    /// ends otherwise.
    pub fn extensions(&self) -> &'static [&'static str] {
        match self.name {
            "jpeg" => &["jpg", "jpeg"],
            "txt" => &["txt", "text", "log"],
            "pdf" => &["pdf"],
            "png" => &["png"],
            "gif" => &["gif"],
            "webp" => &["webp"],
            "csv" => &["csv"],
            "docx" => &["docx"],
            "xlsx" => &["xlsx"],
            "pptx" => &["pptx"],
            "doc" => &["doc"],
            "xls" => &["xls"],
            "ppt" => &["ppt"],
            "svg" => &["svg"],
            _ => &[],
        }
    }
}

/// Characters a file name never keeps: path separators, what Windows refuses in names, and
/// the invisible ones that could make a name read as something else.
fn unsafe_in_name(c: char) -> bool {
    c.is_control()
        || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// The name a file is offered and saved under: `name` with unsafe characters replaced, and
/// always ending as its kind does (`invoice.hta` recognised as text is saved as
/// `invoice.hta.txt`), so a saved file can only open as what its content was recognised as,
/// whatever its sender named it.
pub fn safe_file_name(name: &str, kind: &FileKind) -> String {
    let mut clean: String = name
        .chars()
        .map(|c| if unsafe_in_name(c) { '_' } else { c })
        .collect::<String>()
        .trim_matches(|c: char| c.is_whitespace() || c == '.')
        .to_string();
    if clean.chars().count() > NAME_CHARS - 6 {
        clean = clean.chars().take(NAME_CHARS - 6).collect();
    }
    if clean.trim_matches('_').is_empty() {
        clean = "attachment".into();
    }
    // Windows device names open devices, whatever follows the dot.
    let stem = clean.split('.').next().unwrap_or("").to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        clean.insert(0, '_');
    }
    let lower = clean.to_lowercase();
    let ends_right = kind
        .extensions()
        .iter()
        .any(|e| lower.ends_with(&format!(".{e}")));
    if !ends_right && let Some(e) = kind.extensions().first() {
        clean.push('.');
        clean.push_str(e);
    }
    clean
}

/// Every kind Parley can recognise, in configuration order. `svg` is known but off by default:
/// it can carry script, so it is only ever served as a download.
pub const KINDS: &[FileKind] = &[
    kind("pdf", "application/pdf", false),
    kind("png", "image/png", true),
    kind("jpeg", "image/jpeg", true),
    kind("gif", "image/gif", true),
    kind("webp", "image/webp", true),
    kind("txt", "text/plain", false),
    kind("csv", "text/csv", false),
    kind(
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        false,
    ),
    kind(
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        false,
    ),
    kind(
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        false,
    ),
    kind("doc", "application/msword", false),
    kind("xls", "application/vnd.ms-excel", false),
    kind("ppt", "application/vnd.ms-powerpoint", false),
    kind("svg", "image/svg+xml", false),
];

const fn kind(name: &'static str, mime: &'static str, preview: bool) -> FileKind {
    FileKind {
        name,
        mime,
        preview,
    }
}

/// The kinds a node takes when its configuration says nothing: all but `svg`.
pub fn default_kinds() -> Vec<&'static str> {
    KINDS
        .iter()
        .map(|k| k.name)
        .filter(|n| *n != "svg")
        .collect()
}

pub fn kind_by_name(name: &str) -> Option<&'static FileKind> {
    KINDS.iter().find(|k| k.name == name)
}

pub fn kind_by_mime(mime: &str) -> Option<&'static FileKind> {
    KINDS.iter().find(|k| k.mime == mime)
}

/// Whether `s` is a SHA-256 as references spell it.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    if !is_sha256_hex(s) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Checks a file name: one line, no path, nothing invisible or bidi-reordering.
pub fn check_name(name: &str) -> Result<(), DomainError> {
    check_text("name", name, NAME_CHARS, true)?;
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(DomainError::invalid(
            "name",
            "must be a file name, without / or \\",
        ));
    }
    Ok(())
}

impl AttachmentRef {
    /// The rules a reference meets wherever it was written (here or by a partner).
    pub fn validate(&self) -> Result<(), DomainError> {
        if !is_sha256_hex(&self.sha256) {
            return Err(DomainError::invalid(
                "sha256",
                "must be 64 lowercase hexadecimal digits",
            ));
        }
        if self.size == 0 || self.size > MAX_REF_BYTES {
            return Err(DomainError::invalid(
                "size",
                format!("must be 1 to {MAX_REF_BYTES} bytes"),
            ));
        }
        check_name(&self.name)?;
        if kind_by_mime(&self.mime).is_none() {
            return Err(DomainError::invalid(
                "type",
                format!("{:?} is not a file type Parley knows", self.mime),
            ));
        }
        Ok(())
    }

    /// The number of chunks the file is stored and sent in.
    pub fn chunks(&self) -> u32 {
        chunk_count(self.size)
    }
}

pub fn chunk_count(size: u64) -> u32 {
    size.div_ceil(CHUNK_BYTES as u64) as u32
}

/// The length chunk `idx` of a file of `size` bytes must have.
pub fn chunk_len(size: u64, idx: u32) -> usize {
    let start = idx as u64 * CHUNK_BYTES as u64;
    size.saturating_sub(start).min(CHUNK_BYTES as u64) as usize
}

/// Checks the attachments of one new message.
pub fn check_list(list: &[AttachmentRef]) -> Result<(), DomainError> {
    if list.len() > PER_MESSAGE {
        return Err(DomainError::invalid(
            "attachments",
            format!("a message carries at most {PER_MESSAGE} files"),
        ));
    }
    for a in list {
        a.validate()?;
    }
    Ok(())
}

/// Why a file's content is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("an empty file cannot be attached")]
    Empty,
    #[error(
        "the file's content is {found}, which this node does not take; it takes {allowed} (told by the content, not the name)"
    )]
    Kind { found: String, allowed: String },
}

/// Recognises a file by its first bytes (`head`, at least the first 8 KiB when the file is
/// longer) and, for text, by whether the whole file is UTF-8 (`is_text`, decided by the caller
/// over all its bytes). `name` only tells CSV from plain text, both being text.
pub fn sniff(
    head: &[u8],
    is_text: bool,
    name: &str,
    allowed: &[&str],
) -> Result<&'static FileKind, Refused> {
    if head.is_empty() {
        return Err(Refused::Empty);
    }
    let mut inferred = infer::get(head).map(|t| t.mime_type());
    // `infer` calls anything with `%PDF` in its first KiB a PDF; a PDF starts with it.
    if inferred == Some("application/pdf") && !head.starts_with(b"%PDF-") {
        inferred = Some(if is_text && looks_like_markup(head) {
            "text/html"
        } else {
            "data that is not a PDF but names itself one"
        });
    }
    // Office files are zips whose first entry says what they hold; `infer` reads only some
    // entry orders, so a zip that lists `[Content_Types].xml` is looked at here.
    if inferred == Some("application/zip") && contains(head, b"[Content_Types].xml") {
        inferred = if contains(head, b"word/") {
            Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
        } else if contains(head, b"xl/") {
            Some("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        } else if contains(head, b"ppt/") {
            Some("application/vnd.openxmlformats-officedocument.presentationml.presentation")
        } else {
            inferred
        };
    }
    // Text that is markup would be HTML or XML once saved under another name: never "text".
    if is_text && inferred.is_none() && looks_like_markup(head) && !looks_like_svg(head) {
        inferred = Some("text/html");
    }
    let found = if is_text && matches!(inferred, None | Some("text/xml")) && looks_like_svg(head) {
        Ok("svg")
    } else {
        match inferred {
            // `infer` tells Office zip and OLE files apart from other archives itself.
            Some(m) => kind_by_mime(m).map(|k| k.name).ok_or_else(|| m.to_string()),
            None if is_text => Ok(if name.to_ascii_lowercase().ends_with(".csv") {
                "csv"
            } else {
                "txt"
            }),
            None => Err("binary data of no recognised kind".to_string()),
        }
    };
    let allowed_list = || allowed.join(", ");
    match found {
        Ok(n) if allowed.contains(&n) => kind_by_name(n).ok_or_else(|| Refused::Kind {
            found: n.into(),
            allowed: allowed_list(),
        }),
        Ok(n) => Err(Refused::Kind {
            found: kind_by_name(n).map_or(n, |k| k.mime).to_string(),
            allowed: allowed_list(),
        }),
        Err(found) => Err(Refused::Kind {
            found,
            allowed: allowed_list(),
        }),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether text holds HTML or XML markup (in its first 8 KiB, any case, after a BOM).
fn looks_like_markup(head: &[u8]) -> bool {
    let n = head.len().min(8192);
    let s = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    [
        "<!doctype",
        "<html",
        "<head",
        "<body",
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "<?xml",
        "<svg",
        "<meta",
        "<form",
        "<img",
        "<style",
        "<link",
        "<base",
        "<hta:",
    ]
    .iter()
    .any(|t| s.contains(t))
}

/// An SVG is XML text whose root is `<svg`; `infer` calls XML with a declaration `text/xml`,
/// which is refused unless it is recognised here first. Only the start is looked at.
fn looks_like_svg(head: &[u8]) -> bool {
    let n = head.len().min(4096);
    let s = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    // The first element, past a declaration, comments and a doctype, is the root.
    let mut rest = s.trim_start_matches('\u{feff}');
    while let Some(i) = rest.find('<') {
        let tail = &rest[i..];
        if tail.starts_with("<?") || tail.starts_with("<!") {
            match tail.find('>') {
                Some(end) => rest = &tail[end + 1..],
                None => return false,
            }
            continue;
        }
        return tail.starts_with("<svg");
    }
    false
}

/// Checks UTF-8 across chunk boundaries: feed every piece, then [`TextCheck::finish`].
#[derive(Debug, Default)]
pub struct TextCheck {
    carry: Vec<u8>,
    bad: bool,
}

impl TextCheck {
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.bad {
            return;
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(bytes);
        match std::str::from_utf8(&buf) {
            Ok(s) => self.bad = has_binary(s),
            Err(e) if e.error_len().is_none() => {
                // A character cut by the chunk boundary: keep its start for the next piece.
                let (ok, rest) = buf.split_at(e.valid_up_to());
                self.bad = has_binary(std::str::from_utf8(ok).unwrap_or("\0"));
                self.carry = rest.to_vec();
            }
            Err(_) => self.bad = true,
        }
    }

    /// Nothing seen so far rules text out (a character cut at the end may still complete).
    pub fn ok_so_far(&self) -> bool {
        !self.bad
    }

    pub fn finish(self) -> bool {
        !self.bad && self.carry.is_empty()
    }
}

/// Text has no NUL and no control characters but line breaks, tabs and form feeds.
fn has_binary(s: &str) -> bool {
    s.chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\u{c}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<&'static str> {
        default_kinds()
    }

    #[test]
    fn kinds_are_told_by_content_not_name() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png, false, "x.pdf", &allowed()).unwrap().name, "png");
        let pdf = b"%PDF-1.7\n";
        assert_eq!(sniff(pdf, false, "x.png", &allowed()).unwrap().name, "pdf");
        // An ELF header is 64 bytes; `infer` needs that much to call it one.
        let elf = [b"\x7fELF\x02\x01\x01\0".as_slice(), &[0u8; 64]].concat();
        let e = sniff(&elf, false, "invoice.pdf", &allowed()).unwrap_err();
        assert!(e.to_string().contains("executable"), "{e}");
        let exe = b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff";
        assert!(sniff(exe, false, "photo.jpg", &allowed()).is_err());
        assert_eq!(sniff(b"", true, "x.txt", &allowed()), Err(Refused::Empty));
        assert_eq!(
            sniff(b"a,b\n1,2\n", true, "x.CSV", &allowed())
                .unwrap()
                .name,
            "csv"
        );
        assert_eq!(sniff(b"hello", true, "x", &allowed()).unwrap().name, "txt");
        let html = b"<!DOCTYPE html><html><script>alert(1)</script>";
        assert!(sniff(html, true, "x.txt", &allowed()).is_err());
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>";
        assert!(sniff(svg, true, "x.txt", &allowed()).is_err());
        let mut with_svg = allowed();
        with_svg.push("svg");
        assert_eq!(sniff(svg, true, "x.txt", &with_svg).unwrap().name, "svg");
        assert!(sniff(b"\0\x01\x02binary", false, "x.txt", &allowed()).is_err());
    }

    #[test]
    fn markup_and_misplaced_magic_are_not_taken_for_text_or_pdf() {
        let a = allowed();
        for (what, bytes) in [
            (
                "HTML before %PDF",
                b"<html><script>alert(1)</script>\n%PDF-1.4\n".to_vec(),
            ),
            (
                "padding before %PDF",
                [b" ".repeat(500).as_slice(), b"%PDF-1.4\n"].concat(),
            ),
            (
                "HTML after a line of text",
                b"hi\n<!DOCTYPE html><script>x()</script>".to_vec(),
            ),
            (
                "HTML behind a BOM",
                b"\xef\xbb\xbf<html><script>x()</script>".to_vec(),
            ),
            (
                "an HTA",
                b"Invoice\n<HTA:APPLICATION/><script>x()</script>".to_vec(),
            ),
            (
                "HTML holding an SVG",
                b"<html><body><svg onload=x()></svg>".to_vec(),
            ),
        ] {
            let text = std::str::from_utf8(&bytes).is_ok();
            assert!(
                sniff(&bytes, text, "x.txt", &a).is_err(),
                "{what} was taken"
            );
            let mut with_svg = a.clone();
            with_svg.push("svg");
            assert!(
                sniff(&bytes, text, "x.txt", &with_svg).is_err(),
                "{what} was taken"
            );
        }
        let svg = b"<?xml version='1.0'?><!-- c --><svg xmlns='http://www.w3.org/2000/svg'/>";
        let mut with_svg = a.clone();
        with_svg.push("svg");
        assert_eq!(sniff(svg, true, "x", &with_svg).unwrap().name, "svg");
        // An Office zip whose entries come in an order `infer` does not read.
        let entry = |name: &str| {
            [
                b"PK\x03\x04".as_slice(),
                &[20, 0, 0, 0, 8, 0],
                &[0u8; 20],
                name.as_bytes(),
                b"data",
            ]
            .concat()
        };
        let docx = [
            entry("[Content_Types].xml"),
            entry("_rels/.rels"),
            entry("word/document.xml"),
        ]
        .concat();
        assert_eq!(sniff(&docx, false, "a.docx", &a).unwrap().name, "docx");
        let xlsx = [
            entry("[Content_Types].xml"),
            entry("_rels/.rels"),
            entry("docProps/app.xml"),
            entry("xl/workbook.xml"),
        ]
        .concat();
        assert_eq!(sniff(&xlsx, false, "a.xlsx", &a).unwrap().name, "xlsx");
        assert!(
            sniff(&entry("readme.txt"), false, "a.zip", &a).is_err(),
            "a plain zip is refused"
        );
    }

    #[test]
    fn a_saved_name_ends_as_its_kind() {
        let txt = kind_by_name("txt").unwrap();
        let pdf = kind_by_name("pdf").unwrap();
        let jpeg = kind_by_name("jpeg").unwrap();
        assert_eq!(safe_file_name("invoice.hta", txt), "invoice.hta.txt");
        assert_eq!(safe_file_name("run.bat", txt), "run.bat.txt");
        assert_eq!(safe_file_name("notes.TXT", txt), "notes.TXT");
        assert_eq!(
            safe_file_name("invoice.pdf.exe", pdf),
            "invoice.pdf.exe.pdf"
        );
        assert_eq!(safe_file_name("photo.JPG", jpeg), "photo.JPG");
        assert_eq!(
            safe_file_name("Report: Q3 <final>?.pdf", pdf),
            "Report_ Q3 _final__.pdf"
        );
        assert_eq!(safe_file_name("\u{200b}\u{200b}.pdf", pdf), "__.pdf");
        assert_eq!(safe_file_name("a\u{2028}b.pdf", pdf), "a_b.pdf");
        assert_eq!(safe_file_name("nul.txt", txt), "_nul.txt");
        assert_eq!(safe_file_name("COM1.pdf", pdf), "_COM1.pdf");
        assert_eq!(safe_file_name("...", pdf), "attachment.pdf");
        assert!(safe_file_name(&"x".repeat(1000), pdf).chars().count() <= NAME_CHARS);
    }

    #[test]
    fn text_is_checked_across_chunk_boundaries() {
        let s = "Grüße, 世界\n".repeat(10);
        let b = s.as_bytes();
        for cut in 0..b.len() {
            let mut t = TextCheck::default();
            t.feed(&b[..cut]);
            t.feed(&b[cut..]);
            assert!(t.finish(), "cut at {cut}");
        }
        let mut t = TextCheck::default();
        t.feed(b"ok\xff");
        assert!(!t.finish());
        let mut t = TextCheck::default();
        t.feed(b"cut \xe4\xb8");
        assert!(!t.finish());
    }

    #[test]
    fn references_are_checked() {
        let good = AttachmentRef {
            sha256: "a".repeat(64),
            size: 10,
            name: "photo.jpg".into(),
            mime: "image/jpeg".into(),
        };
        good.validate().unwrap();
        for bad in [
            AttachmentRef {
                sha256: "A".repeat(64),
                ..good.clone()
            },
            AttachmentRef {
                size: 0,
                ..good.clone()
            },
            AttachmentRef {
                size: MAX_REF_BYTES + 1,
                ..good.clone()
            },
            AttachmentRef {
                name: "../etc/passwd".into(),
                ..good.clone()
            },
            AttachmentRef {
                name: "a\nb".into(),
                ..good.clone()
            },
            AttachmentRef {
                name: "evil\u{202e}gpj.exe".into(),
                ..good.clone()
            },
            AttachmentRef {
                mime: "text/html".into(),
                ..good.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK_BYTES as u64), 1);
        assert_eq!(chunk_count(CHUNK_BYTES as u64 + 1), 2);
        assert_eq!(chunk_len(CHUNK_BYTES as u64 + 1, 1), 1);
        assert_eq!(chunk_len(10, 3), 0);
    }
}
