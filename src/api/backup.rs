//! `POST /admin/backup`: a checked backup of the running node, as a download.

use std::sync::Arc;

use poem::Body;
use poem_openapi::payload::Binary;
use poem_openapi::{ApiResponse, OpenApi};

use super::Tags;
use super::auth::BearerAuth;
use super::error::ApiError;
use crate::service::Service;

pub struct BackupApi {
    pub svc: Arc<Service>,
}

#[derive(ApiResponse)]
pub enum BackupAnswer {
    /// The backup file, checked before it is sent; restore it with `parley restore FILE`.
    #[oai(status = 200, content_type = "application/octet-stream")]
    Ok(
        Binary<Body>,
        #[oai(header = "Content-Disposition")] String,
        #[oai(header = "Content-Length")] u64,
        /// Conversations in the backup.
        #[oai(header = "X-Parley-Conversations")]
        u64,
    ),
}

#[OpenApi(tag = "Tags::Admin")]
impl BackupApi {
    /// A backup of this node (admin): documents, users, tokens, partners, peers, topics,
    /// notes, files and the outbox, from one consistent snapshot taken while writes go on.
    /// Sent only once written whole and checked.
    #[oai(path = "/admin/backup", method = "post", operation_id = "backup")]
    async fn backup(&self, auth: BearerAuth) -> Result<BackupAnswer, ApiError> {
        let (file, m) = self.svc.backup_for_download(&auth.0).await?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let name = format!(
            "parley-{}-{}.backup",
            m.org_id,
            m.made_at.format("%Y%m%dT%H%M%SZ")
        );
        let body = Body::from_async_read(tokio::fs::File::from_std(file));
        Ok(BackupAnswer::Ok(
            Binary(body),
            format!("attachment; filename=\"{name}\""),
            len,
            m.conversations,
        ))
    }
}
