//! `/topics`: the records behind list and detail views (orders, items, returns, …), one at a
//! time or imported from CSV.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::{Request, RequestBody};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, ParsePayload, Payload, PlainText};
use poem_openapi::registry::MetaSchemaRef;
use poem_openapi::types::Type;
use poem_openapi::{ApiRequest, ApiResponse, Object, OpenApi};

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::models::TopicKind;
use crate::domain::topics::{TopicInput, TopicRecord};
use crate::service::Service;

pub struct TopicsApi {
    pub svc: Arc<Service>,
}

/// A record as sent: `kind`, `ref` and `title` are required.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TopicBody {
    pub kind: Option<TopicKind>,
    #[oai(rename = "ref", validator(max_length = 100))]
    pub reference: Option<String>,
    #[oai(validator(max_length = 200))]
    pub title: Option<String>,
    /// An `http://`, `https://` or `mailto:` address.
    #[oai(validator(max_length = 2000))]
    pub url: Option<String>,
    /// Up to 20 more fields, e.g. `{"status": "shipped"}`.
    #[oai(default, validator(max_properties = 20))]
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TopicOut {
    pub kind: TopicKind,
    #[oai(rename = "ref")]
    pub reference: String,
    pub title: String,
    pub url: Option<String>,
    pub fields: BTreeMap<String, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<TopicRecord> for TopicOut {
    fn from(r: TopicRecord) -> Self {
        TopicOut {
            kind: r.kind.into(),
            reference: r.reference,
            title: r.title,
            url: r.url,
            fields: r.fields,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TopicPageOut {
    pub items: Vec<TopicOut>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ImportOut {
    pub created: u64,
    pub updated: u64,
}

#[derive(ApiResponse)]
pub enum Saved {
    #[oai(status = 201)]
    Created(Json<TopicOut>),
    /// An existing record was replaced.
    #[oai(status = 200)]
    Updated(Json<TopicOut>),
}

/// CSV text (`text/csv`).
pub struct Csv(pub String);

impl Payload for Csv {
    const CONTENT_TYPE: &'static str = "text/csv";
    fn check_content_type(content_type: &str) -> bool {
        content_type
            .split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/csv"))
    }
    fn schema_ref() -> MetaSchemaRef {
        String::schema_ref()
    }
}

impl ParsePayload for Csv {
    const IS_REQUIRED: bool = true;
    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        use poem::FromRequest;
        Ok(Csv(String::from_request(request, body).await?))
    }
}

/// The file's text, as `text/csv` or `text/plain`.
#[derive(ApiRequest)]
pub enum ImportBody {
    Csv(Csv),
    Plain(PlainText<String>),
}

type R<T> = Result<T, ApiError>;

fn required<T>(field: &str, v: Option<T>) -> R<T> {
    v.ok_or_else(|| ApiError::bad_request(format!("{field}: is required")))
}

#[OpenApi(tag = "Tags::Topics")]
impl TopicsApi {
    /// Records of one kind, in ref order
    #[oai(path = "/topics", method = "get", operation_id = "listTopics")]
    async fn list(
        &self,
        _auth: BearerAuth,
        kind: Query<TopicKind>,
        /// Only refs starting with this.
        #[oai(default)]
        prefix: Query<String>,
        /// `next` of the previous page.
        after: Query<Option<String>>,
        /// 1-200, default 50.
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        limit: Query<u32>,
    ) -> R<Json<TopicPageOut>> {
        let page = self
            .svc
            .topics(kind.0.into(), prefix.0, after.0, limit.0 as usize)
            .await?;
        Ok(Json(TopicPageOut {
            items: page.items.into_iter().map(Into::into).collect(),
            next: page.next,
        }))
    }

    /// One record
    #[oai(path = "/topics/:kind/:ref", method = "get", operation_id = "getTopic")]
    async fn get(
        &self,
        _auth: BearerAuth,
        kind: Path<TopicKind>,
        #[oai(name = "ref")] reference: Path<String>,
    ) -> R<Json<TopicOut>> {
        Ok(Json(
            self.svc.topic(kind.0.into(), &reference.0).await?.into(),
        ))
    }

    /// Add or replace a record
    #[oai(path = "/topics", method = "post", operation_id = "putTopic")]
    async fn put(&self, _auth: BearerAuth, body: Json<TopicBody>) -> R<Saved> {
        let b = body.0;
        let input = TopicInput {
            kind: required("kind", b.kind)?.into(),
            reference: required("ref", b.reference)?,
            title: required("title", b.title)?,
            url: b.url.filter(|u| !u.is_empty()),
            fields: b.fields,
        };
        let (r, created) = self.svc.put_topic(input).await?;
        Ok(if created {
            Saved::Created(Json(r.into()))
        } else {
            Saved::Updated(Json(r.into()))
        })
    }

    /// Import records from CSV: a header naming kind, ref, title (url and any other columns
    /// optional), then one record per line. All or nothing: a bad row is reported by its line
    /// number and nothing is imported.
    #[oai(
        path = "/topics/import",
        method = "post",
        operation_id = "importTopics"
    )]
    async fn import(&self, _auth: BearerAuth, body: ImportBody) -> R<Json<ImportOut>> {
        let text = match body {
            ImportBody::Csv(c) => c.0,
            ImportBody::Plain(p) => p.0,
        };
        let r = self.svc.import_topics(&text).await?;
        Ok(Json(ImportOut {
            created: r.created as u64,
            updated: r.updated as u64,
        }))
    }
}

fn default_limit() -> u32 {
    50
}
