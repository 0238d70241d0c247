//! `/node`, `/partners`, `/users` and `/tokens`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use super::models::Role;
use crate::service::{NewToken, Service, ServiceError};
use crate::service::{Partner as PartnerRec, TokenRecord, User as UserRec, UserKind};

pub struct AdminApi {
    pub svc: Arc<Service>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Node {
    pub node_id: Uuid,
    pub org_id: String,
    pub org_name: String,
    pub role: Role,
    pub version: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Partner {
    /// The partner org's id, e.g. `bolt-supplies`: 1-64 of a-z, 0-9, `-`, `_`, `.`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub id: String,
    #[oai(validator(max_length = 200))]
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PartnerOut {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl From<PartnerRec> for PartnerOut {
    fn from(p: PartnerRec) -> Self {
        PartnerOut {
            id: p.id.to_string(),
            name: p.name,
            role: p.role.into(),
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewUser {
    /// 1-64 letters, digits, `-`, `_`, `.` or `@`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub name: String,
    /// 8 to 1024 characters.
    #[oai(validator(min_length = 8, max_length = 1024))]
    pub password: String,
    #[oai(default)]
    pub admin: bool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct UserOut {
    pub id: Uuid,
    pub name: String,
    pub admin: bool,
    /// `person` (signs in with a password) or `integration` (API tokens only).
    pub kind: String,
    pub created_at: DateTime<Utc>,
}

impl From<UserRec> for UserOut {
    fn from(u: UserRec) -> Self {
        let kind = match u.kind {
            UserKind::Person => "person",
            UserKind::Integration => "integration",
        };
        UserOut {
            id: u.id,
            name: u.name,
            admin: u.admin,
            kind: kind.into(),
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct NewTokenBody {
    /// 1-64 letters, digits, `-`, `_`, `.` or `@`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub name: String,
    /// Act as this user; without it the token acts as an integration user named like the
    /// token (made if missing). A name that is a person's or an admin's is refused (409).
    pub user: Option<String>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct TokenOut {
    pub id: Uuid,
    pub name: String,
    pub user: String,
    pub created_at: DateTime<Utc>,
    /// Shown once, at creation.
    pub token: Option<String>,
}

impl TokenOut {
    fn of(t: TokenRecord, token: Option<String>) -> Self {
        TokenOut {
            id: t.id,
            name: t.name,
            user: t.user,
            created_at: t.created_at,
            token,
        }
    }
}

#[derive(ApiResponse)]
pub enum PartnerCreated {
    #[oai(status = 201)]
    Created(Json<PartnerOut>),
    /// The same partner was already there.
    #[oai(status = 200)]
    Existing(Json<PartnerOut>),
}

#[derive(ApiResponse)]
pub enum CreatedUser {
    #[oai(status = 201)]
    Created(Json<UserOut>),
}

#[derive(ApiResponse)]
pub enum CreatedToken {
    #[oai(status = 201)]
    Created(Json<TokenOut>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    #[oai(status = 204)]
    Deleted,
}

type R<T> = Result<T, ApiError>;

#[OpenApi(tag = "Tags::Admin")]
impl AdminApi {
    /// This node's identity
    #[oai(path = "/node", method = "get", operation_id = "node")]
    async fn node(&self, _auth: BearerAuth) -> R<Json<Node>> {
        let id = self
            .svc
            .identity()
            .await?
            .ok_or_else(ServiceError::no_identity)?;
        Ok(Json(Node {
            node_id: id.node_id,
            org_id: id.org_id.to_string(),
            org_name: id.org_name,
            role: id.role.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    /// Orgs this node trades with
    #[oai(path = "/partners", method = "get", operation_id = "listPartners")]
    async fn partners(&self, _auth: BearerAuth) -> R<Json<Vec<PartnerOut>>> {
        Ok(Json(
            self.svc
                .partners()
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }

    /// Add a partner org (admin)
    #[oai(path = "/partners", method = "post", operation_id = "addPartner")]
    async fn add_partner(&self, auth: BearerAuth, body: Json<Partner>) -> R<PartnerCreated> {
        let (p, created) = self
            .svc
            .add_partner(&auth.0, &body.0.id, &body.0.name, body.0.role.into())
            .await?;
        Ok(if created {
            PartnerCreated::Created(Json(p.into()))
        } else {
            PartnerCreated::Existing(Json(p.into()))
        })
    }

    /// Local users (admin)
    #[oai(path = "/users", method = "get", operation_id = "listUsers")]
    async fn users(&self, auth: BearerAuth) -> R<Json<Vec<UserOut>>> {
        Ok(Json(
            self.svc
                .users(&auth.0)
                .await?
                .into_iter()
                .map(Into::into)
                .collect(),
        ))
    }

    /// Add a local user (admin)
    #[oai(path = "/users", method = "post", operation_id = "addUser")]
    async fn add_user(&self, auth: BearerAuth, body: Json<NewUser>) -> R<CreatedUser> {
        let u = self
            .svc
            .add_user(&auth.0, &body.0.name, Some(body.0.password), body.0.admin)
            .await?;
        Ok(CreatedUser::Created(Json(u.into())))
    }

    /// API tokens (admin)
    #[oai(path = "/tokens", method = "get", operation_id = "listTokens")]
    async fn tokens(&self, auth: BearerAuth) -> R<Json<Vec<TokenOut>>> {
        Ok(Json(
            self.svc
                .tokens(&auth.0)
                .await?
                .into_iter()
                .map(|t| TokenOut::of(t, None))
                .collect(),
        ))
    }

    /// Create an API token (admin); the answer holds the token, shown once
    #[oai(path = "/tokens", method = "post", operation_id = "createToken")]
    async fn create_token(&self, auth: BearerAuth, body: Json<NewTokenBody>) -> R<CreatedToken> {
        let t = self
            .svc
            .create_token(
                &auth.0,
                NewToken {
                    name: body.0.name,
                    user: body.0.user,
                },
            )
            .await?;
        Ok(CreatedToken::Created(Json(TokenOut::of(
            t.record,
            Some(t.secret),
        ))))
    }

    /// Revoke an API token (admin)
    #[oai(path = "/tokens/:id", method = "delete", operation_id = "revokeToken")]
    async fn revoke_token(&self, auth: BearerAuth, id: Path<Uuid>) -> R<Deleted> {
        self.svc.revoke_token(&auth.0, id.0).await?;
        Ok(Deleted::Deleted)
    }
}
