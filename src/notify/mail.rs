//! The mail sender: folds queued rows into mails, then sends them over SMTP.
//!
//! Folding: a user's rows wait until no new row has come for `settle` (a burst of changes,
//! or a first sync of thousands of conversations, keeps arriving; at most `MAX_HOLD`), then
//! become one mail per conversation, or one summary when they touch more than
//! `summary_after` conversations or arrived late by sync. The mail is stored with its
//! `Message-ID` in the same transaction that removes the rows; it leaves the outbox only
//! after the SMTP server accepted it, so a crash in between sends it again, identifiably.

use crate::metrics::Channel;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use super::compose::{self, Context, ConvInfo};
use super::config::{EmailConfig, Security, Smtp};
use crate::domain::Conversation;
use crate::domain::notify::Mode;
use crate::service::Service;
use crate::store::mail_queue;
use crate::store::outbox::{self, MailItem, OutMail};
use crate::store::{StoreError, accounts, docs};

/// A user's rows are mailed at the latest this long after the first, even if more keep
/// coming: a sync that never pauses still gets told.
const MAX_HOLD_MS: i64 = 5 * 60 * 1000;
/// The quiet a user's late rows wait for before they are mailed.
const LATE_QUIET_MS: i64 = 30 * 1000;
/// Rows read per round; the rest wait for the next one (memory stays bounded).
const ROWS_PER_ROUND: usize = 20_000;
/// Mails sent per round before their removal is committed.
const MAILS_PER_ROUND: usize = 50;
/// A mail not accepted after this many tries is given up (about three days with the delays
/// below), and said so in the log.
const RETRY_DELAYS_SECS: &[i64] = &[
    30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200, 43200, 43200, 43200, 43200,
];

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error(
        "no SMTP server is configured: set smtp_host in the [email] table (or PARLEY_SMTP_HOST)"
    )]
    NotConfigured,
    #[error("{0} is not a usable address: {1}")]
    Address(String, String),
    #[error("the mail could not be built: {0}")]
    Build(String),
    #[error("{0}")]
    Tls(String),
    #[error("the SMTP server did not answer within {0:?}; is {1} the right host and port?")]
    Timeout(Duration, String),
    #[error("the SMTP server refused the mail for good: {0}")]
    Permanent(String),
    #[error("the SMTP server could not take the mail now: {0}")]
    Transient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn transport(
    smtp: &Smtp,
    timeout: Duration,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let builder = match smtp.security {
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        #[cfg(feature = "tls")]
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| MailError::Tls(e.to_string()))?,
        #[cfg(feature = "tls")]
        Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| MailError::Tls(e.to_string()))?,
        #[cfg(not(feature = "tls"))]
        _ => {
            return Err(MailError::Tls(
                "STARTTLS and TLS need a build with the `tls` feature".into(),
            ));
        }
    };
    let mut b = builder.port(smtp.port).timeout(Some(timeout));
    if let (Some(u), Some(p)) = (&smtp.user, &smtp.password) {
        b = b.credentials(Credentials::new(u.clone(), p.clone()));
    }
    Ok(b.build())
}

/// Whether the mail library can send to `addr` (an address the domain rules took may still
/// be one it cannot encode, such as some international domains): checked when a user sets
/// it, so a mail is never given up later for the address alone.
pub fn check_address(addr: &str) -> Result<(), String> {
    addr.parse::<lettre::Address>().map(|_| ()).map_err(|e| {
        format!("{addr} cannot be mailed to ({e}); give an address such as ann@example.com")
    })
}

fn mailbox(name: Option<String>, addr: &str) -> Result<Mailbox, MailError> {
    let a = addr.parse().map_err(|e: lettre::address::AddressError| {
        MailError::Address(addr.into(), e.to_string())
    })?;
    Ok(Mailbox::new(name, a))
}

/// The message as sent: both parts, the thread headers and `List-Unsubscribe`.
pub fn build(m: &OutMail, from: &str, org_name: &str) -> Result<Message, MailError> {
    let mut b = Message::builder()
        .from(mailbox(Some(format!("Parley ({org_name})")), from)?)
        .to(mailbox(None, &m.to)?)
        .subject(m.subject.clone())
        .message_id(Some(m.message_id.clone()))
        .date(std::time::SystemTime::from(m.created_at));
    if let Some(t) = &m.in_reply_to {
        b = b.in_reply_to(t.clone()).references(t.clone());
    }
    let mut msg = b
        .multipart(MultiPart::alternative_plain_html(
            m.text.clone(),
            m.html.clone(),
        ))
        .map_err(|e| MailError::Build(e.to_string()))?;
    if let Some(u) = &m.unsubscribe {
        let name = HeaderName::new_from_ascii("List-Unsubscribe".into())
            .map_err(|e| MailError::Build(e.to_string()))?;
        msg.headers_mut()
            .insert_raw(HeaderValue::new(name, format!("<{u}>")));
    }
    Ok(msg)
}

/// Sends one message; the server's answer, as it said it, on success.
pub async fn send(cfg: &EmailConfig, msg: Message) -> Result<String, MailError> {
    let smtp = cfg.smtp.as_ref().ok_or(MailError::NotConfigured)?;
    let t = transport(smtp, cfg.send_timeout)?;
    // lettre bounds only the connect; a server stalling mid-session would hang the send.
    match tokio::time::timeout(cfg.send_timeout, t.send(msg)).await {
        Err(_) => Err(MailError::Timeout(
            cfg.send_timeout,
            format!("{}:{}", smtp.host, smtp.port),
        )),
        Ok(Err(e)) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
        Ok(Err(e)) => Err(MailError::Transient(e.to_string())),
        Ok(Ok(r)) => Ok(format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        )),
    }
}

/// `parley email test ADDRESS`: one mail, and the server's answer.
pub async fn send_test(cfg: &EmailConfig, to: &str, org_name: &str) -> Result<String, MailError> {
    let now = Utc::now();
    let id = Uuid::now_v7();
    let m = OutMail {
        id,
        user: String::new(),
        to: to.into(),
        message_id: format!("<test.{}@parley>", id.simple()),
        in_reply_to: None,
        subject: "Parley test mail".into(),
        text: format!(
            "This mail was sent by `parley email test` at {now}. Mail from Parley at {org_name} reaches this address.\n"
        ),
        html: format!(
            "<p>This mail was sent by <code>parley email test</code> at {now}. Mail from Parley at {} reaches this address.</p>",
            org_name.replace('<', "&lt;")
        ),
        unsubscribe: None,
        created_at: now,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
    };
    send(cfg, build(&m, &cfg.from, org_name)?).await
}

pub async fn run(svc: Arc<Service>, cfg: EmailConfig) {
    let mut wake = svc.outbox_watch();
    let mut closing = svc.closing();
    loop {
        let pause = match round(&svc, &cfg).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the mail sender will try again shortly");
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = wake.changed() => {
                // Writes come in bursts: one look per tenth of a second is plenty.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = tokio::time::sleep(pause) => {}
            _ = super::closed(&mut closing) => return,
        }
    }
}

/// One round: fold what has settled, send what is due. Answers how long until the next
/// round has something to do.
async fn round(svc: &Arc<Service>, cfg: &EmailConfig) -> Result<Duration, MailError> {
    // Wall time for the settle wait; the service clock (which tests may hold still) for
    // what the mail says.
    let now = Utc::now();
    let mut next = Duration::from_secs(30);
    if let Some(d) = fold(svc, cfg, now).await? {
        next = next.min(d);
    }
    if let Some(d) = send_due(svc, cfg).await? {
        next = next.min(d);
    }
    Ok(next.max(Duration::from_millis(50)))
}

pub(super) struct Loaded {
    node_id: Uuid,
    org: String,
    org_name: String,
    pub(super) email: Option<String>,
    prefs: crate::domain::notify::Prefs,
    convs: HashMap<Uuid, (Conversation, String)>,
    /// Of those, the ones assigned to this user now: an assignment told only if it holds.
    assigned: std::collections::HashSet<Uuid>,
}

impl Loaded {
    /// The rows per conversation, in the order first queued, with each conversation as a mail
    /// shows it: only rows `keep` takes and that still hold ([`still_true`]).
    pub(super) fn group<'a>(
        &'a self,
        rows: &'a [(u128, MailItem)],
        keep: impl Fn(&MailItem) -> bool,
    ) -> Vec<(ConvInfo<'a>, Vec<&'a MailItem>)> {
        let mut order: Vec<Uuid> = Vec::new();
        let mut groups: HashMap<Uuid, Vec<&MailItem>> = HashMap::new();
        for (_, it) in rows {
            match self.convs.get(&it.conversation) {
                Some((c, _))
                    if keep(it)
                        && still_true(it, c)
                        && (it.kind != crate::domain::notify::NotifyKind::TaskAssigned
                            || self.assigned.contains(&it.conversation)) => {}
                _ => continue,
            }
            let g = groups.entry(it.conversation).or_default();
            if g.is_empty() {
                order.push(it.conversation);
            }
            g.push(it);
        }
        order
            .iter()
            .filter_map(|id| {
                let (c, name) = self.convs.get(id)?;
                Some((
                    ConvInfo {
                        conv: c,
                        partner_name: name,
                    },
                    groups.remove(id)?,
                ))
            })
            .collect()
    }

    pub(super) fn context<'a>(&'a self, ui: Option<&'a str>, now: DateTime<Utc>) -> Context<'a> {
        Context {
            node_id: self.node_id,
            our_org: &self.org,
            our_org_name: &self.org_name,
            ui_url: ui,
            now,
        }
    }
}

/// The web UI's address for links: configured, else the address advertised to peers.
pub(super) fn ui_url(cfg: &EmailConfig, svc: &Service) -> Option<String> {
    cfg.ui_url
        .clone()
        .or_else(|| svc.public_url())
        .map(|u| u.trim_end_matches('/').to_string())
}

/// A reminder queued earlier is told only if it still holds: the task not finished since,
/// nor its due date removed. Other rows always hold: they tell what happened.
pub(super) fn still_true(it: &MailItem, c: &Conversation) -> bool {
    it.activity.is_some()
        || it.kind == crate::domain::notify::NotifyKind::TaskAssigned
        || (crate::domain::overdue_eligible(c.kind, c.state, c.progress) && c.due_date.is_some())
}

pub(super) fn load(
    tx: &redb::ReadTransaction,
    user: &str,
    ids: &[Uuid],
) -> Result<Option<Loaded>, StoreError> {
    let Some(ident) = accounts::read_identity(tx)? else {
        return Ok(None);
    };
    let u = accounts::get_user(tx, user)?;
    let partners: HashMap<String, String> = accounts::list_partners(tx)?
        .into_iter()
        .map(|p| (p.id.as_str().to_string(), p.name))
        .collect();
    let mut convs = HashMap::new();
    let mut assigned = std::collections::HashSet::new();
    for id in ids {
        if crate::store::team::assignee(tx, *id)?.as_deref() == Some(user) {
            assigned.insert(*id);
        }
        let Some(d) = docs::load_read(tx, id.as_u128())? else {
            continue;
        };
        let Ok(c) = crate::domain::doc::read(&d) else {
            // A damaged conversation is `parley check`'s business; it gets no mail.
            continue;
        };
        let other = c.participants.other(&ident.org_id).as_str().to_string();
        let name = partners.get(&other).cloned().unwrap_or(other);
        convs.insert(*id, (c, name));
    }
    Ok(Some(Loaded {
        node_id: ident.node_id,
        org: ident.org_id.as_str().to_string(),
        org_name: ident.org_name,
        email: u.as_ref().and_then(|u| u.notify.email.clone()),
        prefs: u.map(|u| u.notify.prefs).unwrap_or_default(),
        convs,
        assigned,
    }))
}

async fn fold(
    svc: &Arc<Service>,
    cfg: &EmailConfig,
    now: DateTime<Utc>,
) -> Result<Option<Duration>, MailError> {
    let users = svc.store().read(mail_queue::pending).await?;
    if users.is_empty() {
        return Ok(None);
    }
    let now_ms = now.timestamp_millis();
    let settle = cfg.settle.as_millis() as i64;
    let mut wait: Option<Duration> = None;
    for (user, first, last, late) in users {
        // Late news (a sync after a long time apart) keeps coming frame by frame, each more
        // than `settle` apart on a slow link: it waits for a longer quiet, so it becomes one
        // summary, not one per frame.
        let quiet = if late {
            settle.max(LATE_QUIET_MS)
        } else {
            settle
        };
        if cfg.smtp.is_some() && now_ms - last < quiet && now_ms - first < MAX_HOLD_MS {
            let left = Duration::from_millis((quiet - (now_ms - last)).max(0) as u64);
            wait = Some(wait.map_or(left, |w| w.min(left)));
            continue;
        }
        let u = user.clone();
        let rows = svc
            .store()
            .read(move |tx| mail_queue::rows(tx, &u, ROWS_PER_ROUND))
            .await?;
        if cfg.smtp.is_none() {
            // Nothing can be sent: what is queued now would only flood the first mail once a
            // server is configured.
            let keys: Vec<u128> = rows.iter().map(|(k, _)| *k).collect();
            svc.store()
                .write(move |ctx| mail_queue::fold(ctx.tx(), &user, &keys, &[]))
                .await?;
            continue;
        }
        fold_user(svc, cfg, user, rows).await?;
    }
    Ok(wait)
}

async fn fold_user(
    svc: &Arc<Service>,
    cfg: &EmailConfig,
    user: String,
    rows: Vec<(u128, MailItem)>,
) -> Result<(), MailError> {
    let mut ids: Vec<Uuid> = rows.iter().map(|(_, i)| i.conversation).collect();
    ids.sort();
    ids.dedup();
    let u = user.clone();
    let loaded = svc.store().read(move |tx| load(tx, &u, &ids)).await?;
    let keys: Vec<u128> = rows.iter().map(|(k, _)| *k).collect();
    let mails = match loaded {
        // Gone, without an address, or changed their mind since: the rows just go.
        Some(l) if l.email.is_some() => compose_for(cfg, svc, svc.clock().now(), &user, &l, &rows),
        _ => Vec::new(),
    };
    svc.store()
        .write(move |ctx| mail_queue::fold(ctx.tx(), &user, &keys, &mails))
        .await?;
    Ok(())
}

fn compose_for(
    cfg: &EmailConfig,
    svc: &Service,
    now: DateTime<Utc>,
    user: &str,
    l: &Loaded,
    rows: &[(u128, MailItem)],
) -> Vec<OutMail> {
    let Some(to) = l.email.as_deref() else {
        return Vec::new();
    };
    let ui = ui_url(cfg, svc);
    let ctx = l.context(ui.as_deref(), now);
    // Only what the user still wants now.
    let infos = l.group(rows, |it| l.prefs.mode(it.kind) == Mode::Immediate);
    let late = infos.iter().any(|(_, items)| items.iter().any(|i| i.late));
    if infos.is_empty() {
        return Vec::new();
    }
    if late || infos.len() > cfg.summary_after {
        let heading = if late {
            "While you were away"
        } else {
            "Changes in Parley"
        };
        return vec![compose::summary_mail(&ctx, user, to, &infos, heading)];
    }
    infos
        .iter()
        .map(|(info, items)| compose::conversation_mail(&ctx, user, to, info, items))
        .collect()
}

async fn send_due(svc: &Arc<Service>, cfg: &EmailConfig) -> Result<Option<Duration>, MailError> {
    let now = Utc::now();
    let (mails, later) = svc
        .store()
        .read(move |tx| outbox::due_mails(tx, now, MAILS_PER_ROUND))
        .await?;
    let mut next: Option<Duration> = later.map(|t| (t - now).to_std().unwrap_or_default());
    if mails.is_empty() {
        return Ok(next);
    }
    let org_name = svc
        .identity()
        .await
        .ok()
        .flatten()
        .map(|i| i.org_name)
        .unwrap_or_else(|| "Parley".into());
    let full = mails.len() >= MAILS_PER_ROUND;
    for mut m in mails {
        let r = match build(&m, &cfg.from, &org_name) {
            Ok(msg) => send(cfg, msg).await,
            Err(e) => Err(e),
        };
        // Each outcome is recorded at once: a crash later in the round re-sends only the
        // mail whose answer was not recorded yet.
        match &r {
            Ok(_) => svc.metrics().notify.sent(Channel::Email),
            Err(_) => svc.metrics().notify.failed(Channel::Email),
        }
        let (done, stop) = match r {
            Ok(answer) => {
                tracing::debug!(to = %m.to, message_id = %m.message_id, %answer, "mail accepted");
                (true, false)
            }
            Err(e @ (MailError::Permanent(_) | MailError::Address(..) | MailError::Build(_))) => {
                tracing::warn!(to = %m.to, message_id = %m.message_id, error = %e, "a notification mail was given up");
                (true, false)
            }
            Err(e) => {
                let delay = RETRY_DELAYS_SECS.get(m.attempts as usize).copied();
                m.attempts += 1;
                m.last_error = Some(e.to_string());
                match delay {
                    Some(s) => {
                        tracing::info!(to = %m.to, attempt = m.attempts, error = %e, "a notification mail will be tried again in {s} s");
                        m.next_attempt_at = Utc::now() + chrono::TimeDelta::seconds(s);
                        let d = Duration::from_secs(s as u64);
                        next = Some(next.map_or(d, |n| n.min(d)));
                        // The server is down or slow: the other mails wait for the next round
                        // instead of each waiting out its own time limit now.
                        (false, true)
                    }
                    None => {
                        tracing::warn!(to = %m.to, message_id = %m.message_id, error = %e, "a notification mail was given up after {} attempts", m.attempts);
                        (true, true)
                    }
                }
            }
        };
        svc.store()
            .write(move |ctx| -> Result<(), StoreError> {
                if done {
                    outbox::mail_sent(ctx.tx(), m.id)
                } else {
                    outbox::put_out_mail(ctx.tx(), &m)
                }
            })
            .await?;
        if stop {
            return Ok(next);
        }
    }
    if full {
        next = Some(Duration::ZERO);
    }
    Ok(next)
}
