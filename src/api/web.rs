//! The web UI: files from `web/`, compiled into the binary, served at `/` with a fallback to
//! `index.html` for the UI's own paths (`/new`, `/c/ID`, `/topics/item/SKU-1`, …).
//!
//! Every page gets a Content-Security-Policy that allows only this node as a source, so
//! nothing is loaded from elsewhere and the UI works with no connection.

use poem::endpoint::EmbeddedFileEndpoint;
use poem::http::{Method, StatusCode, header};
use poem::{Endpoint, IntoResponse, Request, Response};
use rust_embed::RustEmbed;

#[derive(RustEmbed)]
#[folder = "web/"]
pub struct Assets;

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Serves an embedded file if one has the path, else `index.html` (the UI routes in the page).
pub struct Spa;

impl Endpoint for Spa {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().trim_start_matches('/').to_string();
        if path.starts_with("api/") || path == "api" {
            return Err(poem::Error::from_string(
                format!("no such API path: /{path}; the API is under /api/v1"),
                StatusCode::NOT_FOUND,
            ));
        }
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Err(poem::Error::from_status(StatusCode::METHOD_NOT_ALLOWED));
        }
        let is_file = !path.is_empty() && Assets::get(&path).is_some();
        let target = if is_file { path } else { "index.html".into() };
        let mut req = req;
        if req.method() == Method::HEAD {
            req.set_method(Method::GET);
        }
        let mut resp = EmbeddedFileEndpoint::<Assets>::new(&target)
            .call(req)
            .await?
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            CSP.parse().expect("static header"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            "nosniff".parse().expect("static header"),
        );
        h.insert(
            header::REFERRER_POLICY,
            "same-origin".parse().expect("static header"),
        );
        // Pages and scripts are small; always revalidating (ETag) keeps them current after an
        // upgrade.
        h.insert(
            header::CACHE_CONTROL,
            "no-cache".parse().expect("static header"),
        );
        Ok(resp)
    }
}
