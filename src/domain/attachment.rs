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
    let inferred = infer::get(head).map(|t| t.mime_type());
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

/// An SVG is XML text whose root is `<svg`; `infer` calls XML with a declaration `text/xml`,
/// which is refused unless it is recognised here first. Only the start is looked at.
fn looks_like_svg(head: &[u8]) -> bool {
    let n = head.len().min(4096);
    let s = String::from_utf8_lossy(&head[..n]).to_ascii_lowercase();
    s.contains("<svg")
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
