//! The only module that touches poem: the REST API under `/api/v1` (documented by
//! poem-openapi, spec at `/api/openapi.json`, docs at `/api/docs`), `/healthz`, and the web
//! UI at `/`.

mod admin;
mod attachments;
mod auth;
mod backup;
mod bulk;
mod conversations;
pub mod error;
mod events;
mod export;
mod inbox_params;
mod metrics;
mod models;
mod notifications;
mod peers;
mod session;
mod sync;
mod team;
pub mod timeouts;
mod topics;
pub mod web;
mod webhooks;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::middleware::Tracing;
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Route, get, handler};
use poem_openapi::{OpenApiService, Tags as OaTags};

use crate::replicator::Replicator;
use crate::service::Service;

/// Request bodies above this are refused with 413 before they are read.
pub const MAX_BODY: usize = 1024 * 1024;
/// Where files are uploaded: the one path whose bodies may be larger (the file limit).
const UPLOAD_PATH: &str = "/api/v1/attachments";
/// Room for a multipart envelope around a file of the largest size.
const UPLOAD_ENVELOPE: u64 = 64 * 1024;
/// The slowest upload, in bytes per second, that is given the time its size needs.
const UPLOAD_MIN_RATE: u64 = 32 * 1024;

#[derive(OaTags)]
enum Tags {
    /// Conversations: messages and tasks with a partner
    Conversations,
    /// The node, its partners, users and tokens
    Admin,
    /// Paired nodes and sync
    Peers,
    /// Browser sign-in for the web UI
    Session,
    /// Orders, items, returns, … that conversations are about
    Topics,
    /// Endpoints that get Standard Webhooks deliveries (admin)
    Webhooks,
}

type Apis = (
    conversations::ConversationsApi,
    admin::AdminApi,
    peers::PeersApi,
    session::SessionApi,
    topics::TopicsApi,
    events::EventsApi,
    webhooks::WebhooksApi,
    notifications::NotificationsApi,
    team::TeamApi,
    team::PeopleApi,
    bulk::BulkApi,
    export::ExportApi,
    attachments::AttachmentsApi,
    backup::BackupApi,
);

fn openapi(svc: &Arc<Service>, rep: &Arc<Replicator>) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            conversations::ConversationsApi { svc: svc.clone() },
            admin::AdminApi { svc: svc.clone() },
            peers::PeersApi {
                svc: svc.clone(),
                rep: rep.clone(),
            },
            session::SessionApi { svc: svc.clone() },
            topics::TopicsApi { svc: svc.clone() },
            events::EventsApi { svc: svc.clone() },
            webhooks::WebhooksApi { svc: svc.clone() },
            notifications::NotificationsApi { svc: svc.clone() },
            team::TeamApi { svc: svc.clone() },
            team::PeopleApi { svc: svc.clone() },
            bulk::BulkApi { svc: svc.clone() },
            export::ExportApi { svc: svc.clone() },
            attachments::AttachmentsApi { svc: svc.clone() },
            backup::BackupApi { svc: svc.clone() },
        ),
        "Parley",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/v1")
}

/// The OpenAPI document, for tooling.
pub fn spec_json(svc: &Arc<Service>, rep: &Arc<Replicator>) -> String {
    document(&openapi(svc, rep).spec())
}

/// The generated document, corrected where it would not say what the API does: an optional
/// field of a body also takes `null` (poem-openapi reads `null` as absent), so it is marked
/// `nullable`; and dates are `format: date` (`YYYY-MM-DD`), the standard name for what the
/// API parses.
fn document(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_string();
    };
    let schemas = doc
        .get_mut("components")
        .and_then(|c| c.get_mut("schemas"))
        .and_then(|s| s.as_object_mut());
    if let Some(schemas) = schemas {
        for schema in schemas.values_mut() {
            let required: Vec<String> = schema
                .get("required")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let Some(props) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) else {
                continue;
            };
            for (name, prop) in props.iter_mut() {
                if required.contains(name) {
                    continue;
                }
                if let Some(r) = prop.get("$ref").cloned() {
                    // Siblings of `$ref` are ignored in OpenAPI 3.0: wrap it.
                    *prop = serde_json::json!({"allOf": [{"$ref": r}], "nullable": true});
                } else if let Some(o) = prop.as_object_mut() {
                    o.insert("nullable".into(), true.into());
                }
            }
        }
    }
    // A file is served as the type its content was recognised as: list them all.
    if let Some(content) = doc
        .pointer_mut("/paths/~1attachments~1{sha256}/get/responses/200/content")
        .and_then(|c| c.as_object_mut())
    {
        content.clear();
        for k in crate::domain::attachment::KINDS {
            content.insert(
                k.mime.to_string(),
                serde_json::json!({"schema": {"type": "string", "format": "binary"}}),
            );
        }
    }
    let text = doc.to_string();
    text.replace("\"format\":\"naive-date\"", "\"format\":\"date\"")
}

#[handler]
fn spec_endpoint(spec: poem::web::Data<&SpecText>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(spec.0.0.as_str().to_string())
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// The OpenAPI document as served, built once.
#[derive(Clone)]
struct SpecText(Arc<String>);

/// How long a request body may take to arrive, from the end of its head.
#[derive(Clone, Copy)]
struct BodyTimeout(std::time::Duration);

/// Every HTTP route of the node; `body_timeout` bounds the time a request body may take.
pub fn routes(
    svc: Arc<Service>,
    rep: Arc<Replicator>,
    body_timeout: std::time::Duration,
) -> impl Endpoint {
    let api = openapi(&svc, &rep);
    let spec = SpecText(Arc::new(document(&api.spec())));
    let methods = Arc::new(MethodTable::of(&spec.0));
    let docs = api.swagger_ui();
    Route::new()
        .at("/api/v1/sync", get(sync::sync))
        .nest("/api/v1", api)
        .at("/api/openapi.json", get(spec_endpoint).data(spec))
        .nest("/api/docs", docs)
        .at("/healthz", get(healthz))
        .at(metrics::PATH, metrics::guarded_endpoint())
        .nest("/", web::Spa)
        .around(metrics::note_operation)
        .around(session::cookie_auth)
        .around(limit_body)
        .catch_all_error(error::json_errors)
        .around(move |next, req| {
            let methods = methods.clone();
            async move { methods.allow(next, req).await }
        })
        .around(metrics::count_requests)
        .with(Tracing)
        .data(svc)
        .data(rep)
        .data(BodyTimeout(body_timeout))
}

/// The separate `/metrics` listener's routes (`[metrics] listen`): that path only, no token.
pub fn metrics_routes(svc: Arc<Service>, rep: Arc<Replicator>) -> impl Endpoint {
    metrics::open_routes(svc, rep)
}

/// Refuses bodies over [`MAX_BODY`]: by their `Content-Length` (413) or, for a body sent
/// without one, by cutting it off at the limit, which then fails to parse (400). A body that
/// has not all arrived within the body timeout fails to read (400), and the connection, its
/// body unread, is closed.
async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<poem::Response> {
    // An upload of a file may be as large as the node's file limit (plus a multipart
    // envelope); the upload counts its bytes itself as they arrive.
    let limit = if req.method() == poem::http::Method::POST && req.uri().path() == UPLOAD_PATH {
        req.data::<Arc<Service>>()
            .map(|s| s.attachment_rules().max_bytes + UPLOAD_ENVELOPE)
            .unwrap_or(MAX_BODY as u64)
    } else {
        MAX_BODY as u64
    };
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        let detail = if limit == MAX_BODY as u64 {
            "request body too large".to_string()
        } else {
            crate::service::too_large_detail(limit - UPLOAD_ENVELOPE)
        };
        return Err(poem::Error::from_string(
            detail,
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    let has_body = declared.is_some_and(|n| n > 0)
        || req
            .headers()
            .contains_key(poem::http::header::TRANSFER_ENCODING);
    if has_body {
        let mut timeout = req
            .data::<BodyTimeout>()
            .map(|t| t.0)
            .unwrap_or(crate::config::Timeouts::default().body);
        if limit > MAX_BODY as u64 {
            // A file may come over a slow field link: beyond the body timeout it gets the time
            // its size takes at 32 KiB/s. A stalled upload still ends at the idle timeout.
            let size = declared.unwrap_or(limit);
            timeout += std::time::Duration::from_secs(size / UPLOAD_MIN_RATE);
        }
        let body = req.take_body();
        req.set_body(timeouts::timed_body(body, limit + 1, timeout));
    }
    next.call(req).await.map(IntoResponse::into_response)
}

/// The methods of each documented path, from the OpenAPI document itself, so that a 405
/// answer can say in `Allow` what the path does take (RFC 9110) without a second list.
struct MethodTable(Vec<(Vec<String>, String)>);

impl MethodTable {
    fn of(spec: &str) -> MethodTable {
        let doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
        let mut rows = Vec::new();
        if let Some(paths) = doc["paths"].as_object() {
            for (path, ops) in paths {
                let segments = format!("/api/v1{path}")
                    .split('/')
                    .map(str::to_string)
                    .collect();
                let mut methods: Vec<String> = ops
                    .as_object()
                    .map(|o| o.keys().map(|m| m.to_uppercase()).collect())
                    .unwrap_or_default();
                methods.sort();
                rows.push((segments, methods.join(", ")));
            }
        }
        MethodTable(rows)
    }

    fn lookup(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = path.split('/').collect();
        self.0
            .iter()
            .find(|(segs, _)| {
                segs.len() == parts.len()
                    && segs
                        .iter()
                        .zip(&parts)
                        .all(|(s, p)| s == p || (s.starts_with('{') && !p.is_empty()))
            })
            .map(|(_, m)| m.as_str())
    }

    async fn allow<E: Endpoint>(&self, next: E, req: Request) -> poem::Result<poem::Response> {
        let path = req.uri().path().to_string();
        let mut resp = next.call(req).await?.into_response();
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(m) = self.lookup(&path)
            && let Ok(v) = poem::http::HeaderValue::from_str(m)
        {
            resp.headers_mut().insert(poem::http::header::ALLOW, v);
        }
        Ok(resp)
    }
}
