//! Identity, users, API tokens and partners.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

use super::*;
use crate::domain::{OrgId, Role, check_text, limits, validate_user_name};
use crate::store::Identity;
use crate::store::accounts::{self, Partner, TokenRecord, User, UserKind};

/// A freshly created token: the secret is shown once and stored only as a hash.
#[derive(Debug, Clone)]
pub struct TokenSecret {
    pub record: TokenRecord,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: String,
    /// Act as this existing user; without it the token acts as the integration user of its
    /// name, made if missing (a name that is a person's or an admin's is refused).
    pub user: Option<String>,
}

fn token_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// 244 random bits from two v4 UUIDs (the OS random source), hex-encoded with a prefix that
/// makes leaked tokens easy to spot.
fn new_secret() -> String {
    format!("pt_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

fn check_password(pw: &str) -> Result<()> {
    if pw.chars().count() < 8 || pw.len() > 1024 {
        return Err(DomainError::invalid("password", "must be 8 to 1024 characters").into());
    }
    Ok(())
}

impl Service {
    pub async fn identity(&self) -> Result<Option<Identity>> {
        Ok(self.store.read(accounts::read_identity).await?)
    }

    /// Sets this node's identity on first start. Running it again with the same org is a
    /// no-op; a different org is refused (conversations already name this one).
    pub async fn init_identity(
        &self,
        org_id: &str,
        org_name: &str,
        role: Role,
    ) -> Result<Identity> {
        let org = OrgId::parse(org_id)?;
        check_text("org name", org_name, limits::ORG_NAME_CHARS, true)?;
        let name = org_name.trim().to_string();
        let now = self.now();
        self.store
            .write(move |ctx| -> Result<_> {
                if let Ok(existing) = ctx.identity() {
                    if existing.org_id == org && existing.role == role {
                        return Ok(existing.clone());
                    }
                    return Err(DomainError::Conflict(format!(
                        "this data directory already belongs to {} ({}); use another --data-dir for another org",
                        existing.org_id, existing.role
                    ))
                    .into());
                }
                let id = Identity { node_id: Uuid::now_v7(), org_id: org, org_name: name, role, created_at: now, actor: None };
                ctx.set_identity(id.clone())?;
                Ok(id)
            })
            .await
    }

    pub async fn add_user(
        &self,
        p: &Principal,
        name: &str,
        password: Option<String>,
        admin: bool,
    ) -> Result<User> {
        p.require_admin()?;
        validate_user_name(name)?;
        let hash = match password {
            None => None,
            Some(pw) => {
                check_password(&pw)?;
                Some(blocking(move || hash_password(&pw)).await??)
            }
        };
        let user = User {
            notify: Default::default(),
            display_name: None,
            id: Uuid::now_v7(),
            name: name.to_string(),
            kind: if hash.is_some() {
                UserKind::Person
            } else {
                UserKind::Integration
            },
            password_hash: hash,
            admin,
            created_at: self.now(),
        };
        self.store
            .write(move |ctx| -> Result<_> {
                if accounts::get_user_w(ctx.read_tx(), &user.name)?.is_some() {
                    return Err(DomainError::Conflict(format!(
                        "user {} already exists",
                        user.name
                    ))
                    .into());
                }
                accounts::put_user(ctx.tx(), &user)?;
                Ok(user)
            })
            .await
    }

    pub async fn users(&self, p: &Principal) -> Result<Vec<User>> {
        p.require_admin()?;
        Ok(self.store.read(accounts::list_users).await?)
    }

    /// Checks a user's password; `None` for an unknown user or a wrong password alike.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<Principal>> {
        let n = name.to_string();
        let user = self
            .store
            .read(move |tx| accounts::get_user(tx, &n))
            .await?;
        let pw = password.to_string();
        let ok_user = blocking(move || {
            // Hash even for unknown users so timing does not tell which part was wrong.
            let stored = user.as_ref().and_then(|u| u.password_hash.clone());
            let ok = PasswordHash::new(stored.as_deref().unwrap_or(dummy_hash()))
                .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
                .unwrap_or(false);
            user.filter(|u| ok && u.password_hash.is_some())
        })
        .await?;
        Ok(ok_user.map(|u| Principal {
            user: u.name,
            admin: u.admin,
        }))
    }

    pub async fn create_token(&self, p: &Principal, t: NewToken) -> Result<TokenSecret> {
        p.require_admin()?;
        validate_user_name(&t.name)?;
        let secret = new_secret();
        let hash = token_hash(&secret);
        let now = self.now();
        let record = self
            .store
            .write(move |ctx| -> Result<_> {
                let user = match &t.user {
                    Some(u) => {
                        accounts::get_user_w(ctx.read_tx(), u)?
                            .ok_or_else(|| {
                                ServiceError::NotFound(format!(
                                    "user {u} not found; add it with `parley user add {u}`"
                                ))
                            })?
                            .name
                    }
                    None => {
                        // A token of its own name acts as an integration user: never as a
                        // person or an admin who happens to have that name.
                        let existing = accounts::get_user_w(ctx.read_tx(), &t.name)?;
                        if let Some(u) = &existing
                            && (u.kind != UserKind::Integration || u.admin)
                        {
                            let who = if u.kind == UserKind::Person { "a person" } else { "an admin integration" };
                            return Err(DomainError::Conflict(format!(
                                "{} is {who} on this node, so a token named so would act as them; give the token another name, or pass user {} to act as them on purpose",
                                u.name, u.name
                            ))
                            .into());
                        }
                        if existing.is_none() {
                            let u = User {
                                notify: Default::default(),
                                display_name: None,
                                id: Uuid::now_v7(),
                                name: t.name.clone(),
                                password_hash: None,
                                admin: false,
                                kind: UserKind::Integration,
                                created_at: now,
                            };
                            accounts::put_user(ctx.tx(), &u)?;
                        }
                        t.name.clone()
                    }
                };
                let rec = TokenRecord {
                    id: Uuid::now_v7(),
                    name: t.name,
                    user,
                    created_at: now,
                };
                accounts::put_token(ctx.tx(), &hash, &rec)?;
                Ok(rec)
            })
            .await?;
        Ok(TokenSecret { record, secret })
    }

    pub async fn tokens(&self, p: &Principal) -> Result<Vec<TokenRecord>> {
        p.require_admin()?;
        Ok(self.store.read(accounts::list_tokens).await?)
    }

    /// Revokes a token; live channels opened with it end at once.
    pub async fn revoke_token(&self, p: &Principal, id: Uuid) -> Result<()> {
        p.require_admin()?;
        self.store
            .write(move |ctx| -> Result<_> {
                let key = accounts::find_token(ctx.read_tx(), id)?
                    .ok_or_else(|| ServiceError::NotFound(format!("token {id} not found")))?;
                Ok(accounts::remove_token(ctx.tx(), &key)?)
            })
            .await?;
        self.credentials_changed();
        Ok(())
    }

    /// Resolves a bearer token to the user it acts as.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        if !secret.starts_with("pt_") || secret.len() > 200 {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = token_hash(secret);
        let found = self
            .store
            .read(move |tx| -> Result<_> {
                let Some(t) = accounts::token_by_hash(tx, &hash)? else {
                    return Ok(None);
                };
                Ok(accounts::get_user(tx, &t.user)?)
            })
            .await?;
        found
            .map(|u| Principal {
                user: u.name,
                admin: u.admin,
            })
            .ok_or(ServiceError::Unauthenticated)
    }

    pub async fn add_partner(
        &self,
        p: &Principal,
        id: &str,
        name: &str,
        role: Role,
    ) -> Result<(Partner, bool)> {
        p.require_admin()?;
        let org = OrgId::parse(id)?;
        check_text("name", name, limits::ORG_NAME_CHARS, true)?;
        let p = Partner {
            id: org,
            name: name.trim().to_string(),
            role,
            created_at: self.now(),
        };
        self.store
            .write(move |ctx| -> Result<_> {
                let me = ctx.identity()?;
                if me.org_id == p.id {
                    return Err(DomainError::Unprocessable(format!(
                        "{} is this node's own org, not a partner",
                        p.id
                    ))
                    .into());
                }
                if let Some(existing) = accounts::get_partner_w(ctx.read_tx(), &p.id)? {
                    if existing.role == p.role && existing.name == p.name {
                        return Ok((existing, false));
                    }
                    return Err(DomainError::Conflict(format!(
                        "partner {} already exists as {} ({})",
                        existing.id, existing.name, existing.role
                    ))
                    .into());
                }
                accounts::put_partner(ctx.tx(), &p)?;
                Ok((p, true))
            })
            .await
    }

    pub async fn partners(&self) -> Result<Vec<Partner>> {
        Ok(self.store.read(accounts::list_partners).await?)
    }
}

fn hash_password(pw: &str) -> Result<String> {
    let salt = SaltString::encode_b64(Uuid::new_v4().as_bytes())
        .map_err(|e| ServiceError::Store(StoreError::Record("password".into(), e.to_string())))?;
    Argon2::default()
        .hash_password(pw.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Store(StoreError::Record("password".into(), e.to_string())))
}

/// A real hash to verify against when the user is unknown, created once.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not-a-real-password").unwrap_or_default())
}

/// The name of the token a running node leaves for CLI commands on the same machine.
pub const LOCAL_CLI: &str = "local-cli";

impl Service {
    /// Replaces the local CLI token: an admin integration user `local-cli` and one token for it.
    /// The node writes it to a file only its owner can read, so that `parley peer …` works
    /// against the running node.
    pub async fn local_cli_token(&self) -> Result<String> {
        let secret = new_secret();
        let hash = token_hash(&secret);
        let now = self.now();
        self.store
            .write(move |ctx| -> Result<_> {
                let user = User {
                    notify: Default::default(),
                    display_name: None,
                    id: Uuid::now_v7(),
                    name: LOCAL_CLI.into(),
                    password_hash: None,
                    admin: true,
                    kind: UserKind::Integration,
                    created_at: now,
                };
                let existing = accounts::get_user_w(ctx.read_tx(), LOCAL_CLI)?;
                if existing.as_ref().is_some_and(|u| u.kind != UserKind::Integration) {
                    return Err(DomainError::Conflict(format!("a person named {LOCAL_CLI} exists; rename them to let the CLI reach the node")).into());
                }
                let old: Vec<Uuid> = {
                    let tx = ctx.read_tx();
                    let t = tx.open_table(crate::store::tables::TOKENS).map_err(StoreError::from)?;
                    let mut v = Vec::new();
                    for item in redb::ReadableTable::iter(&t).map_err(StoreError::from)? {
                        let (_, val) = item.map_err(StoreError::from)?;
                        if let Ok(rec) = serde_json::from_slice::<TokenRecord>(val.value())
                            && rec.name == LOCAL_CLI
                        {
                            v.push(rec.id);
                        }
                    }
                    v
                };
                let mut keys = Vec::new();
                for id in old {
                    if let Some(k) = accounts::find_token(ctx.read_tx(), id)? {
                        keys.push(k);
                    }
                }
                let tx = ctx.tx();
                if existing.is_none() {
                    accounts::put_user(tx, &user)?;
                }
                for k in keys {
                    accounts::remove_token(tx, &k)?;
                }
                let rec = TokenRecord { id: Uuid::now_v7(), name: LOCAL_CLI.into(), user: LOCAL_CLI.into(), created_at: now };
                accounts::put_token(tx, &hash, &rec)?;
                Ok(())
            })
            .await?;
        // The old CLI tokens are gone.
        self.credentials_changed();
        Ok(secret)
    }
}
