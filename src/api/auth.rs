//! Authentication of API requests: `Authorization: Bearer TOKEN`, or a browser session cookie
//! (see `session::cookie_auth`, which vouches for the request before it gets here).

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use crate::service::{Principal, Service};

/// An API token from `parley token create` or `POST /api/v1/tokens`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

/// The user of a current session cookie, set on the request by `session::cookie_auth`.
#[derive(Debug, Clone)]
pub struct SessionUser(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<Principal> {
    if let Some(SessionUser(p)) = req.extensions().get::<SessionUser>() {
        return Some(p.clone());
    }
    let svc = req.data::<Arc<Service>>()?;
    svc.authenticate(&bearer.token).await.ok()
}
