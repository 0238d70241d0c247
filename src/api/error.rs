//! The one place where errors become HTTP statuses. Every error answer is JSON
//! `{"error": code, "detail": message}`; the detail says what to do next.

use poem::Response;
use poem::http::StatusCode;
use poem_openapi::{ApiResponse, Object, payload::Json};

use crate::domain::DomainError;
use crate::service::{ServiceError, StoreFault};

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// A short machine-readable code, e.g. `not_found`.
    pub error: String,
    /// What went wrong and what to do about it.
    pub detail: String,
}

#[derive(Debug, ApiResponse)]
pub enum ApiError {
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The body is over 1 MiB (an attachment: over the node's file size limit).
    #[oai(status = 413)]
    TooLarge(Json<ErrorBody>),
    /// The body's `Content-Type` is missing or not one the operation takes.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    #[oai(status = 422)]
    Unprocessable(Json<ErrorBody>),
    /// Too many failed sign-ins: wait the `Retry-After` seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    /// The node's disk has no room for the file, or is below its reserve for any write:
    /// nothing was saved.
    #[oai(status = 507)]
    InsufficientStorage(Json<ErrorBody>),
}

fn body(code: &str, detail: impl ToString) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: code.into(),
        detail: detail.to_string(),
    })
}

impl ApiError {
    pub fn bad_request(detail: impl ToString) -> Self {
        ApiError::BadRequest(body("bad_request", detail))
    }
    pub fn forbidden(detail: impl ToString) -> Self {
        ApiError::Forbidden(body("forbidden", detail))
    }

    /// The `{error, detail}` this error answers with, for a per-item result inside a 2xx
    /// (bulk actions report each conversation's failure with the single endpoint's code).
    pub fn into_body(self) -> ErrorBody {
        match self {
            ApiError::BadRequest(b)
            | ApiError::Unauthorized(b)
            | ApiError::Forbidden(b)
            | ApiError::NotFound(b)
            | ApiError::Conflict(b)
            | ApiError::TooLarge(b)
            | ApiError::UnsupportedMediaType(b)
            | ApiError::Unprocessable(b)
            | ApiError::TooManyRequests(b, _)
            | ApiError::Internal(b)
            | ApiError::Unavailable(b)
            | ApiError::InsufficientStorage(b) => b.0,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match &e {
            ServiceError::Domain(d) => match d {
                DomainError::Invalid { .. } => ApiError::BadRequest(body("invalid", &e)),
                DomainError::Unprocessable(_) => ApiError::Unprocessable(body("unprocessable", &e)),
                DomainError::Forbidden(_) => ApiError::Forbidden(body("forbidden", &e)),
                DomainError::Conflict(_) => ApiError::Conflict(body("conflict", &e)),
            },
            ServiceError::NotFound(_) => ApiError::NotFound(body("not_found", &e)),
            ServiceError::Unauthenticated => ApiError::Unauthorized(body("unauthorized", &e)),
            ServiceError::Unavailable(_) => ApiError::Unavailable(body("unavailable", &e)),
            ServiceError::LoginFailed => ApiError::Unauthorized(body("login_failed", &e)),
            ServiceError::SignInSlowed { retry_after_secs } => {
                ApiError::TooManyRequests(body("slowed_down", &e), *retry_after_secs)
            }
            ServiceError::Import(_) => ApiError::BadRequest(body("invalid_csv", &e)),
            ServiceError::FileTooLarge(_) => ApiError::TooLarge(body("too_large", &e)),
            ServiceError::InsufficientStorage(_) => {
                ApiError::InsufficientStorage(body("insufficient_storage", &e))
            }
            ServiceError::FileRefused(_) => {
                ApiError::UnsupportedMediaType(body("unsupported_file_type", &e))
            }
            ServiceError::Store(s) => match e.store_fault().unwrap_or(StoreFault::Internal) {
                StoreFault::NoIdentity => ApiError::Unavailable(body("no_identity", s)),
                StoreFault::Retry => ApiError::Unavailable(body("retry", s)),
                StoreFault::DiskFull => ApiError::InsufficientStorage(body("disk_full", s)),
                StoreFault::Damaged => {
                    tracing::error!(error = %s, "damaged conversation");
                    ApiError::Internal(body("damaged", s))
                }
                StoreFault::Internal => {
                    tracing::error!(error = %s, "storage error");
                    ApiError::Internal(body("storage", s))
                }
            },
        }
    }
}

fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "too_large",
        415 => "unsupported_media_type",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

/// Turns every error that did not come from [`ApiError`] (unparsable JSON, a failed
/// validator, an unknown path, a body over the size limit) into the same JSON shape.
pub async fn json_errors(err: poem::Error) -> Response {
    let resp = err.into_response();
    let is_json = resp
        .content_type()
        .is_some_and(|c| c.starts_with("application/json"));
    if is_json {
        return resp;
    }
    let status = resp.status();
    let text = resp.into_body().into_string().await.unwrap_or_default();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let detail = match status.as_u16() {
        413 if !detail.contains("limit") => {
            format!("{detail}: request bodies are limited to 1 MiB")
        }
        401 => "sign in first: send `Authorization: Bearer TOKEN` (create a token with `parley token create`)".into(),
        _ => detail,
    };
    let json = serde_json::json!({ "error": code_for(status), "detail": detail });
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8");
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The unread rest of the body is still on the wire: close the connection so no
        // client reuses it for its next request (which would then fail mid-write).
        resp = resp.header(poem::http::header::CONNECTION, "close");
    }
    resp.body(json.to_string())
}
