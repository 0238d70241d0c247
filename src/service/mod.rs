//! Use-cases called by the API, the CLI and (later) the replicator: authorisation, the
//! conversation rules applied inside store writes, and blocking work kept off the executor.

mod accounts;
mod attachments;
pub mod backup;
mod brake;
mod bulk;
mod command;
pub mod compact;
mod conversations;
mod export;
mod inbox;
mod invites;
mod metrics;
mod notifications;
mod pair;
mod peer_auth;
mod peers;
mod sessions;
mod team;
mod topics;
mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::DomainError;
use crate::domain::commands::CommandError;
use crate::domain::doc::DocError;
use crate::store::{Store, StoreError};

pub use crate::store::accounts::{Partner, TokenRecord, User, UserKind};
pub use crate::store::audience::Concern;
pub use crate::store::peers::Peer;
pub use accounts::{NewToken, TokenSecret};
pub use attachments::{
    FileState, FileToServe, UNATTACHED_KEEP, Uploaded, sweep_unattached, too_large_detail,
};
pub use brake::{LoginThrottle, SIGNIN_WINDOW};
pub use bulk::{BulkAction, BulkItem, BulkOutcome, BulkTarget, MAX_IDS, MAX_MATCHING};
pub use conversations::{CreateInput, Detail};
pub use export::{EXPORT_PAGE, ExportPages, ExportRow};
pub use inbox::{InboxFilter, InboxView};
pub use invites::{InviteCode, InvitePreview, InviteTarget};
pub use notifications::{NotifySettings, NotifyUpdate};
pub use peer_auth::{Direction, Hello, ct_eq, nonce as peer_nonce, transcript};
pub use peers::{PairAnswer, PairRequest, PeerEvent};
pub use sessions::{Credential, NewSession, SESSION_TTL};
pub use team::Colleague;
pub use topics::{ImportReport, TopicPage, import_detail};
pub use webhooks::{Delivery, Disabled, MAX_LOG, Rotated, Webhook, WebhookChange};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    NotFound(String),
    #[error(
        "sign in first: send `Authorization: Bearer TOKEN` (create a token with `parley token create`)"
    )]
    Unauthenticated,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another node could not be reached or refused (503).
    #[error("{0}")]
    Unavailable(String),
    /// A browser sign-in failed; which part was wrong is not said.
    #[error("wrong user name or password")]
    LoginFailed,
    /// Too many failed sign-ins for this user name or address: refused without checking.
    #[error(
        "too many failed sign-ins for this user name or from this address; try again in {retry_after_secs} s"
    )]
    SignInSlowed { retry_after_secs: u64 },
    /// A file over this node's size limit (413); nothing of it was kept.
    #[error("{0}")]
    FileTooLarge(String),
    /// The disk has no room for the file (507); nothing of it was kept.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A file of a kind this node does not take (415); nothing of it was kept.
    #[error("{0}")]
    FileRefused(String),
    /// An import had bad rows; nothing of it was stored.
    #[error("{}", topics::import_detail(.0))]
    Import(Vec<crate::domain::topics::LineError>),
}

/// What a storage failure means to a caller, so that the API can answer it without knowing
/// the store's own error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// The node has no identity yet (`parley init`).
    NoIdentity,
    /// Busy or raced: the same request may succeed when tried again.
    Retry,
    /// The disk is full: nothing was saved; the request succeeds once space is freed.
    DiskFull,
    /// A stored conversation is damaged (`parley check` says more).
    Damaged,
    /// Anything else: the node's log has the details.
    Internal,
}

impl ServiceError {
    /// The node has no identity yet: every use-case needing one answers this.
    pub fn no_identity() -> Self {
        ServiceError::Store(StoreError::NoIdentity)
    }

    /// For a storage failure, what it means to the caller; `None` for every other error.
    pub fn store_fault(&self) -> Option<StoreFault> {
        let ServiceError::Store(s) = self else {
            return None;
        };
        Some(match s {
            StoreError::NoIdentity => StoreFault::NoIdentity,
            StoreError::DiskFull { .. } => StoreFault::DiskFull,
            s if s.is_transient() => StoreFault::Retry,
            StoreError::Corrupt(..) => StoreFault::Damaged,
            _ => StoreFault::Internal,
        })
    }
}

impl From<CommandError> for ServiceError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => ServiceError::Domain(d),
            CommandError::Doc(d) => {
                ServiceError::Store(StoreError::Record("document".into(), d.to_string()))
            }
        }
    }
}

pub(crate) fn corrupt(id: Uuid, e: DocError) -> ServiceError {
    ServiceError::Store(StoreError::Corrupt(id, e.to_string()))
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// Who is making a request: a local user (a person or an integration's token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub admin: bool,
}

impl Principal {
    /// The operator at the node's own machine: the CLI working on the data directory (which
    /// only its owner can open) and the node's first start.
    pub fn operator() -> Principal {
        Principal {
            user: "admin".into(),
            admin: true,
        }
    }

    /// The one authorization check of the admin use-cases, at the top of each.
    pub fn require_admin(&self) -> Result<()> {
        if self.admin {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                "this needs an admin user; ask an admin, or add one with `parley user add NAME --admin`".into(),
            )
            .into())
        }
    }
}

/// Something changed in a conversation: sent to live views and the replicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    pub conversation: Uuid,
    pub seq: u64,
}

/// The source of "now"; tests set it to check date-dependent rules such as overdue.
#[derive(Clone, Default)]
pub enum Clock {
    #[default]
    System,
    Fixed(DateTime<Utc>),
    /// Set by the test that holds it: reminders and digests run on this time.
    Manual(Arc<std::sync::Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(t: DateTime<Utc>) -> Clock {
        Clock::Manual(Arc::new(std::sync::Mutex::new(t)))
    }
    /// Moves a manual clock; other clocks ignore it.
    pub fn set(&self, t: DateTime<Utc>) {
        if let Clock::Manual(m) = self
            && let Ok(mut g) = m.lock()
        {
            *g = t;
        }
    }
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Fixed(t) => *t,
            Clock::Manual(m) => m.lock().map(|g| *g).unwrap_or_else(|p| *p.into_inner()),
        }
    }
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }
}

pub struct Service {
    store: Arc<Store>,
    events: broadcast::Sender<ChangeEvent>,
    peer_events: broadcast::Sender<PeerEvent>,
    public_url: std::sync::RwLock<Option<String>>,
    tls_fingerprint: std::sync::RwLock<Option<String>>,
    allow_loopback_peers: std::sync::atomic::AtomicBool,
    peer_auth: peer_auth::PeerAuth,
    clock: Clock,
    logins: LoginThrottle,
    /// Set when the node starts to shut down, so endless responses (live events) end and
    /// the graceful shutdown does not wait for open browser tabs.
    closing: tokio::sync::watch::Sender<bool>,
    /// Bumped after a token is revoked or a session ends, so that live channels opened with a
    /// credential check it again at once (see `sessions::Credential`).
    credentials: tokio::sync::watch::Sender<u64>,
    /// Bumped after every commit that may have queued mail or webhook deliveries, so the
    /// senders in `notify` wake at once instead of polling.
    outbox: tokio::sync::watch::Sender<u64>,
    email_cfg: std::sync::RwLock<crate::notify::config::EmailConfig>,
    webhook_cfg: std::sync::RwLock<crate::notify::config::WebhookConfig>,
    /// Periodic backups (`[backup]`), started with the server.
    backup_schedule: std::sync::RwLock<Option<backup::BackupSchedule>>,
    /// This node's Prometheus registry (`service::metrics`).
    metrics: Arc<crate::metrics::Metrics>,
}

impl Service {
    pub fn new(store: Arc<Store>, clock: Clock) -> Arc<Service> {
        let (events, _) = broadcast::channel(1024);
        let (peer_events, _) = broadcast::channel(64);
        let metrics = Arc::new(crate::metrics::Metrics::new(store.metrics().clone()));
        Arc::new(Service {
            store,
            events,
            peer_events,
            public_url: Default::default(),
            tls_fingerprint: Default::default(),
            allow_loopback_peers: Default::default(),
            peer_auth: Default::default(),
            clock,
            logins: LoginThrottle::default(),
            closing: tokio::sync::watch::Sender::new(false),
            credentials: tokio::sync::watch::Sender::new(0),
            outbox: tokio::sync::watch::Sender::new(0),
            backup_schedule: Default::default(),
            email_cfg: Default::default(),
            webhook_cfg: Default::default(),
            metrics,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    /// Tells long-lived responses to finish: the node is stopping.
    pub fn begin_shutdown(&self) {
        self.closing.send_replace(true);
    }

    /// Becomes `true` when the node starts to shut down.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Tells live views and the replicator that a conversation changed.
    pub fn notify(&self, conversation: Uuid, seq: u64) {
        // No subscribers is fine: nobody is watching.
        let _ = self.events.send(ChangeEvent { conversation, seq });
        self.outbox_changed();
    }

    /// Wakes the senders: something may have been queued for them.
    pub fn outbox_changed(&self) {
        self.outbox.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// What the senders wait on; see [`Service::outbox_changed`].
    pub fn outbox_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.outbox.subscribe()
    }

    /// Mail and webhook settings, from the configuration.
    pub fn set_notify_config(
        &self,
        email: crate::notify::config::EmailConfig,
        hooks: crate::notify::config::WebhookConfig,
    ) {
        if let Ok(mut e) = self.email_cfg.write() {
            *e = email;
        }
        if let Ok(mut h) = self.webhook_cfg.write() {
            *h = hooks;
        }
    }

    pub fn email_config(&self) -> crate::notify::config::EmailConfig {
        self.email_cfg.read().map(|c| c.clone()).unwrap_or_default()
    }

    pub fn webhook_config(&self) -> crate::notify::config::WebhookConfig {
        self.webhook_cfg
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// The source of "now" for the senders, which need more than the millisecond `now`.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Now, to the millisecond: what documents keep, so a view built from this time equals
    /// the view read back from the document.
    pub fn now(&self) -> DateTime<Utc> {
        let t = self.clock.now();
        DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
    }
}

/// Runs CPU-heavy work (password hashing) on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ServiceError::Store(StoreError::Closed))
}
