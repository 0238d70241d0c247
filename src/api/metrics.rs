//! `GET /metrics`: the node's Prometheus metrics, on the main listener for an admin (API token
//! or session) and, when configured, on a listener of its own without a token. Also the
//! middleware that counts every request by operation.
//!
//! Invariant: the `operation` label is an operation id compiled into the API or one of the
//! fixed route names below, never a piece of the path, so a scan of random paths adds no
//! series (it all lands in `unmatched` or `web`).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use poem::http::{StatusCode, header};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route, get, handler};
use poem_openapi::OperationId;

use super::auth::SessionUser;
use super::error::ApiError;
use crate::metrics::{Format, method_label};
use crate::replicator::Replicator;
use crate::service::{Service, ServiceError};

pub const PATH: &str = "/metrics";

/// Where the inner middleware leaves the operation id it saw on the way out, for the outer
/// one, which sees the final status (after errors became responses).
#[derive(Clone, Default)]
struct OperationSlot(Arc<Mutex<Option<&'static str>>>);

/// The name of a request that no documented operation answered.
fn route_name(path: &str, status: StatusCode) -> &'static str {
    match path {
        PATH => "metrics",
        "/api/v1/sync" => "sync",
        "/healthz" => "healthz",
        "/api/openapi.json" => "openapi",
        _ if status == StatusCode::NOT_FOUND => "unmatched",
        p if p == "/api/docs" || p.starts_with("/api/docs/") => "docs",
        p if p.starts_with("/api/") => "unmatched",
        _ => "web",
    }
}

/// Outermost: times the request and counts it once its final status is known.
pub(super) async fn count_requests<E: Endpoint>(
    next: E,
    mut req: Request,
) -> poem::Result<Response> {
    let started = Instant::now();
    let slot = OperationSlot::default();
    req.extensions_mut().insert(slot.clone());
    let method = method_label(req.method().as_str());
    let path = req.uri().path().to_string();
    let metrics = req.data::<Arc<Service>>().map(|s| s.metrics().clone());
    let result = next.call(req).await.map(IntoResponse::into_response);
    if let Some(m) = metrics {
        let status = match &result {
            Ok(r) => r.status(),
            Err(e) => e.status(),
        };
        let seen = *slot.0.lock().unwrap_or_else(|p| p.into_inner());
        let operation = seen.unwrap_or_else(|| route_name(&path, status));
        m.http.observe(
            operation,
            method,
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    result
}

/// Innermost: notes the operation id poem-openapi put on the answer (or the error).
pub(super) async fn note_operation<E: Endpoint>(next: E, req: Request) -> poem::Result<Response> {
    let slot = req.extensions().get::<OperationSlot>().cloned();
    let result = next.call(req).await.map(IntoResponse::into_response);
    let op = match &result {
        Ok(r) => r.data::<OperationId>().copied(),
        Err(e) => e.data::<OperationId>().copied(),
    };
    if let (Some(slot), Some(op)) = (slot, op) {
        *slot.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(op.0);
    }
    result
}

/// The scrape: every family, plus what is read now (store counts, peers).
async fn scrape(svc: &Service, rep: &Replicator, req: &Request) -> Result<Response, ApiError> {
    let format = Format::from_accept(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    let mut snap = svc.metrics_snapshot().await?;
    snap.peers = rep.peer_gauges().await;
    let body = svc.metrics().render(snap, format).map_err(|_| {
        ApiError::from(ServiceError::Unavailable(
            "the metrics could not be encoded; try again, and report it if it persists".into(),
        ))
    })?;
    Ok(Response::builder()
        .content_type(format.content_type())
        .header(header::CACHE_CONTROL, "no-store")
        .body(body))
}

/// An admin, by session (set by `session::cookie_auth`) or by `Authorization: Bearer`.
async fn require_admin(svc: &Service, req: &Request) -> Result<(), ApiError> {
    let principal = match req.extensions().get::<SessionUser>() {
        Some(SessionUser(p)) => p.clone(),
        None => {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| {
                    let (scheme, token) = v.split_once(' ')?;
                    scheme
                        .eq_ignore_ascii_case("bearer")
                        .then_some(token.trim())
                })
                .ok_or(ServiceError::Unauthenticated)?;
            svc.authenticate(token).await?
        }
    };
    Ok(principal.require_admin()?)
}

#[handler]
async fn guarded(
    req: &Request,
    svc: poem::web::Data<&Arc<Service>>,
    rep: poem::web::Data<&Arc<Replicator>>,
) -> Response {
    let answer = match require_admin(&svc, req).await {
        Ok(()) => scrape(&svc, &rep, req).await,
        Err(e) => Err(e),
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

#[handler]
async fn open(
    req: &Request,
    svc: poem::web::Data<&Arc<Service>>,
    rep: poem::web::Data<&Arc<Replicator>>,
) -> Response {
    scrape(&svc, &rep, req)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// `GET /metrics` for the main listener (admins only).
pub(super) fn guarded_endpoint() -> impl Endpoint {
    get(guarded)
}

/// The separate listener: `/metrics` and nothing else, without a token. Whoever can reach
/// it can read the metrics, so it is meant for 127.0.0.1 or a private network.
pub fn open_routes(svc: Arc<Service>, rep: Arc<Replicator>) -> impl Endpoint {
    Route::new()
        .at(PATH, get(open))
        .catch_all_error(super::error::json_errors)
        .data(svc)
        .data(rep)
}
