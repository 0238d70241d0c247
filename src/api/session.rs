//! Browser sign-in: `POST /session` sets the `parley_session` cookie (HttpOnly,
//! SameSite=Strict) and returns a CSRF token; `DELETE /session` signs out.
//!
//! [`cookie_auth`] lets the API accept the cookie wherever it accepts a bearer token: a request
//! with a current session cookie and no `Authorization` header is treated as that user, and if
//! it changes anything (any method but GET, HEAD, OPTIONS) it must carry the session's token in
//! `X-CSRF-Token`. SameSite=Strict already keeps other sites' requests from carrying the
//! cookie; the token is the second lock.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::http::{HeaderValue, Method, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tags;
use super::auth::SessionUser;
use super::error::ApiError;
use super::models::Role;
use crate::service::{SESSION_TTL, Service, ServiceError};

pub const COOKIE: &str = "parley_session";
/// The device mark a successful sign-in leaves, so that this browser keeps room to sign in
/// while others guess at the same name (see `service::sessions`). Kept past sign-out.
pub const DEVICE_COOKIE: &str = "parley_device";
/// A year: the mark is worth keeping, and it is only valid until the node restarts.
const DEVICE_MAX_AGE: i64 = 365 * 24 * 3600;
pub const CSRF_HEADER: &str = "x-csrf-token";

pub struct SessionApi {
    pub svc: Arc<Service>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Login {
    /// Required: a local user's name.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub name: Option<String>,
    /// Required.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub password: Option<String>,
}

/// The signed-in user, this node's org, and the token to send in `X-CSRF-Token`.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionOut {
    pub user: String,
    pub admin: bool,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct SessionStatus {
    pub signed_in: bool,
    pub session: Option<SessionOut>,
}

#[derive(ApiResponse)]
pub enum LoggedIn {
    /// Signed in; the cookie is set.
    #[oai(status = 200)]
    Ok(Json<SessionOut>, #[oai(header = "Set-Cookie")] String),
}

/// [`LoggedIn`] plus a second `Set-Cookie` for the device mark (a derived response can set a
/// header only once, so this one is appended here).
pub struct LoginAnswer {
    inner: LoggedIn,
    device: String,
}

impl IntoResponse for LoginAnswer {
    fn into_response(self) -> Response {
        let mut resp = self.inner.into_response();
        if let Ok(v) = HeaderValue::from_str(&self.device) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        resp
    }
}

impl poem_openapi::ApiResponse for LoginAnswer {
    fn meta() -> poem_openapi::registry::MetaResponses {
        LoggedIn::meta()
    }
    fn register(registry: &mut poem_openapi::registry::Registry) {
        LoggedIn::register(registry)
    }
}

#[derive(ApiResponse)]
pub enum LoggedOut {
    /// Signed out; the cookie is cleared.
    #[oai(status = 204)]
    Done(#[oai(header = "Set-Cookie")] String),
}

/// The value of the session cookie, if the request has one.
pub fn session_cookie(req: &Request) -> Option<String> {
    cookie_value(req, COOKIE)
}

fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn is_https(req: &Request) -> bool {
    req.scheme() == &poem::http::uri::Scheme::HTTPS
        || req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn cookie(req: &Request, value: &str, max_age: i64) -> String {
    named_cookie(req, COOKIE, value, max_age)
}

fn named_cookie(req: &Request, name: &str, value: &str, max_age: i64) -> String {
    let secure = if is_https(req) { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl SessionApi {
    async fn out(
        &self,
        user: String,
        admin: bool,
        csrf: String,
        expires_at: DateTime<Utc>,
    ) -> Result<SessionOut, ApiError> {
        let id = self
            .svc
            .identity()
            .await?
            .ok_or_else(ServiceError::no_identity)?;
        Ok(SessionOut {
            user,
            admin,
            csrf_token: csrf,
            expires_at,
            org_id: id.org_id.to_string(),
            org_name: id.org_name,
            role: id.role.into(),
        })
    }
}

#[OpenApi(tag = "Tags::Session")]
impl SessionApi {
    /// Sign in with a local user's password (for the web UI)
    ///
    /// Failed sign-ins are counted per user name and per address; beyond the limit an attempt
    /// is refused at once with 429 and `Retry-After` (seconds). A browser that signed in
    /// before keeps its own room (the `parley_device` cookie).
    #[oai(path = "/session", method = "post", operation_id = "login")]
    async fn login(&self, req: &Request, body: Json<Login>) -> Result<LoginAnswer, ApiError> {
        let name = body.0.name.unwrap_or_default();
        let password = body.0.password.unwrap_or_default();
        if name.is_empty() || password.is_empty() {
            return Err(ApiError::bad_request("name and password are required"));
        }
        let ip = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let device = cookie_value(req, DEVICE_COOKIE);
        let s = self
            .svc
            .login(&name, &password, ip, device.as_deref())
            .await?;
        let out = self
            .out(
                s.principal.user,
                s.principal.admin,
                s.record.csrf,
                s.record.expires_at,
            )
            .await?;
        let set = cookie(req, &s.id, SESSION_TTL.num_seconds());
        Ok(LoginAnswer {
            inner: LoggedIn::Ok(Json(out), set),
            device: named_cookie(req, DEVICE_COOKIE, &s.device, DEVICE_MAX_AGE),
        })
    }

    /// Who is signed in with this browser's cookie (never fails: `signed_in` says)
    #[oai(path = "/session", method = "get", operation_id = "session")]
    async fn status(&self, req: &Request) -> Result<Json<SessionStatus>, ApiError> {
        let found = match session_cookie(req) {
            Some(id) => self.svc.session(&id).await?,
            None => None,
        };
        let session = match found {
            Some((p, rec)) => Some(self.out(p.user, p.admin, rec.csrf, rec.expires_at).await?),
            None => None,
        };
        Ok(Json(SessionStatus {
            signed_in: session.is_some(),
            session,
        }))
    }

    /// Sign out
    #[oai(path = "/session", method = "delete", operation_id = "logout")]
    async fn logout(&self, req: &Request) -> Result<LoggedOut, ApiError> {
        if let Some(id) = session_cookie(req) {
            self.svc.logout(&id).await?;
        }
        Ok(LoggedOut::Done(cookie(req, "", 0)))
    }
}

/// Accepts the session cookie in place of a bearer token on `/api/` paths; see the module doc.
pub async fn cookie_auth<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let path = req.uri().path();
    let login = req.method() == Method::POST && path == "/api/v1/session";
    // `/metrics` takes an admin's session too (it is read-only: no CSRF token needed).
    let applies = (path.starts_with("/api/") || path == super::metrics::PATH)
        && !login
        && !req.headers().contains_key(header::AUTHORIZATION);
    let id = if applies { session_cookie(&req) } else { None };
    if let (Some(id), Some(svc)) = (id, req.data::<Arc<Service>>().cloned()) {
        let found = svc
            .session(&id)
            .await
            .map_err(|e| poem::Error::from_response(ApiError::from(e).into_response()))?;
        if let Some((principal, rec)) = found {
            let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .map(|v| v.as_bytes())
                .unwrap_or_default();
            if !safe && !same(sent, rec.csrf.as_bytes()) {
                return Err(poem::Error::from_response(
                    ApiError::forbidden("missing or wrong X-CSRF-Token: send the csrf_token from sign-in with every change; reload the page if it is old")
                        .into_response(),
                ));
            }
            req.extensions_mut().insert(SessionUser(principal));
            req.headers_mut().insert(
                header::AUTHORIZATION,
                HeaderValue::from_static("Bearer session-cookie"),
            );
        }
    }
    next.call(req).await.map(IntoResponse::into_response)
}
