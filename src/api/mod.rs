//! The only module that touches poem: the REST API under `/api/v1` (documented by
//! poem-openapi, spec at `/api/openapi.json`, docs at `/api/docs`), `/healthz`, and the web
//! UI at `/`.

mod admin;
mod auth;
mod conversations;
pub mod error;
mod events;
mod models;
mod peers;
mod session;
mod sync;
mod topics;
pub mod web;

use std::sync::Arc;

use poem::http::StatusCode;
use poem::middleware::Tracing;
use poem::{Body, Endpoint, EndpointExt, Request, Route, get, handler};
use poem_openapi::{OpenApiService, Tags as OaTags};
use tokio::io::AsyncReadExt;

use crate::replicator::Replicator;
use crate::service::Service;

/// Request bodies above this are refused with 413 before they are read.
pub const MAX_BODY: usize = 1024 * 1024;

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
}

type Apis = (
    conversations::ConversationsApi,
    admin::AdminApi,
    peers::PeersApi,
    session::SessionApi,
    topics::TopicsApi,
    events::EventsApi,
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
        ),
        "Parley",
        env!("CARGO_PKG_VERSION"),
    )
    .server("/api/v1")
}

/// The OpenAPI document, for tooling.
pub fn spec_json(svc: &Arc<Service>, rep: &Arc<Replicator>) -> String {
    openapi(svc, rep).spec()
}

#[handler]
fn healthz() -> &'static str {
    "ok"
}

/// Every HTTP route of the node.
pub fn routes(svc: Arc<Service>, rep: Arc<Replicator>) -> impl Endpoint {
    let api = openapi(&svc, &rep);
    let spec = api.spec_endpoint();
    let docs = api.swagger_ui();
    Route::new()
        .at("/api/v1/sync", get(sync::sync))
        .nest("/api/v1", api)
        .at("/api/openapi.json", spec)
        .nest("/api/docs", docs)
        .at("/healthz", get(healthz))
        .nest("/", web::Spa)
        .around(session::cookie_auth)
        .around(limit_body)
        .catch_all_error(error::json_errors)
        .with(Tracing)
        .data(svc)
        .data(rep)
}

/// Refuses bodies over [`MAX_BODY`]: by their `Content-Length` (413) or, for a body sent
/// without one, by cutting it off at the limit, which then fails to parse (400).
async fn limit_body<E: Endpoint>(next: E, mut req: Request) -> poem::Result<poem::Response> {
    let declared = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(poem::Error::from_string(
            "request body too large",
            StatusCode::PAYLOAD_TOO_LARGE,
        ));
    }
    if declared.is_none() {
        let body = req.take_body();
        req.set_body(Body::from_async_read(
            body.into_async_read().take(MAX_BODY as u64 + 1),
        ));
    }
    next.call(req).await.map(poem::IntoResponse::into_response)
}
