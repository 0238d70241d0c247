//! `POST /attachments` (upload a file) and `GET /attachments/{sha256}` (download it).
//!
//! A file response can never run script in the node's origin, whatever the file holds: it is
//! served as the type this node recognised from its content (never as HTML or as what the
//! uploader claimed), with `X-Content-Type-Options: nosniff` and
//! `Content-Security-Policy: default-src 'none'; sandbox`, and as a download
//! (`Content-Disposition: attachment`) unless it is a raster image. SVG, which can carry
//! script, is never shown inline.

use std::sync::Arc;

use futures_util::stream;
use poem::web::Multipart;
use poem::{Body, Request, RequestBody};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{Binary, Json, ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};
use tokio_util::io::StreamReader;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::service::{FileToServe, Service};

pub struct AttachmentsApi {
    pub svc: Arc<Service>,
}

/// A `multipart/form-data` body with the file in a part named `file`; read as it streams.
pub struct FormUpload(Multipart);

impl Payload for FormUpload {
    const CONTENT_TYPE: &'static str = "multipart/form-data";

    fn check_content_type(content_type: &str) -> bool {
        // Media types are case-insensitive (RFC 9110 §8.3.1).
        content_type
            .get(..19)
            .is_some_and(|t| t.eq_ignore_ascii_case("multipart/form-data"))
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut file = MetaSchema::new("string");
        file.format = Some("binary");
        let mut s = MetaSchema::new("object");
        s.required = vec!["file"];
        s.properties = vec![("file", MetaSchemaRef::Inline(Box::new(file)))];
        MetaSchemaRef::Inline(Box::new(s))
    }
}

impl ParsePayload for FormUpload {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(FormUpload(Multipart::from_request(request, body).await?))
    }
}

#[derive(ApiRequest)]
pub enum UploadBody {
    /// The file in a part named `file`; its file name is the part's.
    Form(FormUpload),
    /// The file itself as the body; its name in `X-Filename` (percent-encoded UTF-8).
    Raw(Binary<Body>),
}

/// A stored file, to name in a create or reply (`attachments: [sha256]`).
#[derive(Debug, Object)]
pub struct Uploaded {
    pub sha256: String,
    pub size: u64,
    pub name: String,
    /// The media type the content was recognised as.
    #[oai(rename = "type")]
    pub mime: String,
}

#[derive(ApiResponse)]
pub enum UploadAnswer {
    /// Stored (or already here: each file is stored once).
    #[oai(status = 201)]
    Created(Json<Uploaded>),
}

#[derive(ApiResponse)]
pub enum FileAnswer {
    /// The file. `Content-Type` is what its content was recognised as.
    #[oai(status = 200)]
    Ok(
        Binary<Body>,
        #[oai(header = "Content-Type")] String,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "X-Content-Type-Options")] String,
        #[oai(header = "Content-Security-Policy")] String,
        #[oai(header = "Cache-Control")] String,
        #[oai(header = "ETag")] String,
        #[oai(header = "Content-Length")] u64,
    ),
}

/// Percent-decodes a header value (`encodeURIComponent` in the browser).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266): the quoted form keeps only
/// plain ASCII, the starred one has the exact name.
fn disposition(f: &FileToServe) -> String {
    let kind = if f.inline { "inline" } else { "attachment" };
    let ascii: String = f
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut star = String::new();
    for b in f.name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            star.push(b as char);
        } else {
            star.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{star}")
}

type R<T> = Result<T, ApiError>;

#[OpenApi(tag = "Tags::Conversations")]
impl AttachmentsApi {
    /// Upload a file to attach to a message
    ///
    /// The file's kind is told by its content, not its name: PDF, PNG, JPEG, GIF, WebP, plain
    /// text, CSV and Office documents by default (`attachments.types`), at most 25 MB
    /// (`attachments.max_mb`), counted as it arrives. A file already here is stored once.
    #[oai(
        path = "/attachments",
        method = "post",
        operation_id = "uploadAttachment"
    )]
    async fn upload(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: UploadBody,
        /// The file name, percent-encoded UTF-8 (raw bodies).
        #[oai(name = "X-Filename")]
        name: Header<Option<String>>,
    ) -> R<UploadAnswer> {
        let declared = req
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        let u = match body {
            UploadBody::Raw(b) => {
                let name = name.0.as_deref().and_then(percent_decode);
                let reader = StreamReader::new(b.0.into_bytes_stream());
                self.svc
                    .upload_sized(&auth.0, name, declared, reader)
                    .await?
            }
            UploadBody::Form(FormUpload(mut form)) => loop {
                let field = form.next_field().await.map_err(|e| {
                    ApiError::bad_request(format!(
                        "the multipart body is malformed or cut short ({e}); send it again"
                    ))
                })?;
                let Some(field) = field else {
                    return Err(ApiError::bad_request(
                        "the multipart body has no part named \"file\"; send the file as the part \"file\"",
                    ));
                };
                if field.name() != Some("file") {
                    continue;
                }
                let name = field.file_name().map(str::to_string);
                break self
                    .svc
                    .upload_sized(&auth.0, name, declared, field.into_async_read())
                    .await?;
            },
        };
        Ok(UploadAnswer::Created(Json(Uploaded {
            sha256: u.sha256,
            size: u.size,
            name: u.name,
            mime: u.mime.to_string(),
        })))
    }

    /// Download a file
    ///
    /// Raster images are served inline (for previews), everything else as a download; every
    /// file with `nosniff` and a `default-src 'none'` policy. `name` sets the offered file name.
    #[oai(
        path = "/attachments/:sha256",
        method = "get",
        operation_id = "downloadAttachment"
    )]
    async fn download(
        &self,
        _auth: BearerAuth,
        sha256: Path<String>,
        #[oai(validator(max_length = 255))] name: Query<Option<String>>,
    ) -> R<FileAnswer> {
        let f = self.svc.file(&sha256.0, name.0).await?;
        let (svc, hash) = (self.svc.clone(), f.sha256);
        // One chunk per read: the file is never held whole in memory.
        let chunks = stream::unfold(0u32, move |idx| {
            let svc = svc.clone();
            async move {
                match svc.file_chunk(hash, idx).await {
                    Ok(Some(c)) => Some((Ok(bytes::Bytes::from(c)), idx + 1)),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::error!(error = %e, "a file could not be read to the end");
                        Some((Err(std::io::Error::other(e.to_string())), u32::MAX))
                    }
                }
            }
        });
        let body = Body::from_bytes_stream(chunks);
        Ok(FileAnswer::Ok(
            Binary(body),
            f.mime.clone(),
            disposition(&f),
            "nosniff".into(),
            "default-src 'none'; sandbox".into(),
            "private, max-age=31536000, immutable".into(),
            format!("\"{}\"", hex::encode(f.sha256)),
            f.size,
        ))
    }
}
