//! Authentication of API requests: `Authorization: Bearer TOKEN`.

use std::sync::Arc;

use poem::Request;
use poem_openapi::{SecurityScheme, auth::Bearer};

use super::error::ApiError;
use crate::service::{Principal, Service};

/// An API token from `parley token create` or `POST /api/v1/tokens`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<Principal> {
    let svc = req.data::<Arc<Service>>()?;
    svc.authenticate(&bearer.token).await.ok()
}

impl BearerAuth {
    pub fn require_admin(&self) -> Result<&Principal, ApiError> {
        if self.0.admin {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "this needs an admin user; ask an admin, or add one with `parley user add NAME --admin`",
            ))
        }
    }
}
