//! Mail as a mail client wants it: one subject per conversation (subject and reference ID),
//! plain text and HTML, a link into the web UI, a `Message-ID` of its own, and
//! `In-Reply-To`/`References` naming the conversation so every mail about it threads
//! together. Pure: the sender gathers what is needed and stores what this returns.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use crate::domain::activity::{Activity, What};
use crate::domain::notify::NotifyKind;
use crate::domain::{Conversation, Kind};
use crate::store::outbox::{MailItem, OutMail};

/// What a mail about our node needs to say who is who and where to click.
pub struct Context<'a> {
    pub node_id: Uuid,
    pub our_org: &'a str,
    pub our_org_name: &'a str,
    /// The web UI's address, without a trailing slash; `None`: mail has no links.
    pub ui_url: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// One conversation as a mail about it shows it.
pub struct ConvInfo<'a> {
    pub conv: &'a Conversation,
    pub partner_name: &'a str,
}

impl Context<'_> {
    /// The id every mail about a conversation refers to: a mail client threads on it.
    pub fn thread_id(&self, conv: Uuid) -> String {
        format!(
            "<conversation.{}@{}.parley>",
            conv.simple(),
            self.node_id.simple()
        )
    }
    fn message_id(&self, mail: Uuid) -> String {
        format!("<{}@{}.parley>", mail.simple(), self.node_id.simple())
    }
    fn link(&self, conv: Uuid) -> Option<String> {
        self.ui_url.map(|u| format!("{u}/c/{conv}"))
    }
    fn prefs_link(&self) -> Option<String> {
        self.ui_url.map(|u| format!("{u}/settings"))
    }
    fn inbox_link(&self) -> Option<String> {
        self.ui_url.map(|u| format!("{u}/"))
    }
}

/// The subject a conversation's mails share: its subject, with the reference ID when set.
pub fn thread_subject(c: &Conversation) -> String {
    match &c.reference_id {
        Some(r) => format!("{} [{r}]", c.subject),
        None => c.subject.clone(),
    }
}

fn who(a: &Activity, ctx: &Context<'_>, partner_name: &str) -> String {
    let org = if a.by.org.as_str() == ctx.our_org {
        ctx.our_org_name
    } else {
        partner_name
    };
    format!("{} ({org})", a.by.user)
}

fn kind_word(k: Kind) -> &'static str {
    match k {
        Kind::Message => "message",
        Kind::Task => "task",
    }
}

fn progress_word(p: Option<crate::domain::Progress>) -> &'static str {
    use crate::domain::Progress::*;
    match p {
        None => "none",
        Some(Open) => "open",
        Some(InProgress) => "in progress",
        Some(Completed) => "completed",
        Some(Cancelled) => "cancelled",
    }
}

fn date_word(d: Option<NaiveDate>) -> String {
    d.map(|d| d.format("%a %-d %b %Y").to_string())
        .unwrap_or_else(|| "none".into())
}

/// One line (and for messages, the text) of what happened.
fn describe(item: &MailItem, info: &ConvInfo<'_>, ctx: &Context<'_>) -> (String, Option<String>) {
    let c = info.conv;
    match (&item.activity, item.kind) {
        (None, NotifyKind::Overdue) => (
            format!(
                "This task was due on {} and is overdue.",
                date_word(c.due_date)
            ),
            None,
        ),
        (None, NotifyKind::TaskAssigned) => (
            format!("A colleague assigned this {} to you.", kind_word(c.kind)),
            None,
        ),
        (None, _) => (
            format!("This task is due on {}.", date_word(c.due_date)),
            None,
        ),
        (Some(a), _) => {
            let w = who(a, ctx, info.partner_name);
            match &a.what {
                What::Created => (
                    format!("{w} started a {}:", kind_word(c.kind)),
                    c.messages.first().map(body_with_files),
                ),
                What::Message { id } => (
                    format!("{w} wrote:"),
                    c.messages.iter().find(|m| m.id == *id).map(body_with_files),
                ),
                What::Resolved => (format!("{w} resolved it."), None),
                What::Reopened => (format!("{w} reopened it."), None),
                What::Progress { from, to } => (
                    format!(
                        "{w} changed the progress from {} to {}.",
                        progress_word(*from),
                        progress_word(*to)
                    ),
                    None,
                ),
                What::DueDate { from, to } => (
                    format!(
                        "{w} changed the due date from {} to {}.",
                        date_word(*from),
                        date_word(*to)
                    ),
                    None,
                ),
                What::Updated { field } => (format!("{w} changed the {field}."), None),
            }
        }
    }
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A message's text for a mail, with the names of its files (the files themselves stay on the
/// node: a mail is no channel for them).
fn body_with_files(m: &crate::domain::Message) -> String {
    if m.attachments.is_empty() {
        return m.body.clone();
    }
    let names: Vec<String> = m
        .attachments
        .iter()
        .map(|a| format!("{} ({} KB)", a.name, a.size.div_ceil(1024)))
        .collect();
    let files = format!("[Files: {}]", names.join(", "));
    if m.body.is_empty() {
        files
    } else {
        format!("{}\n\n{files}", m.body)
    }
}

/// Quoted text for the plain part: every line of a body behind "> ".
fn quote(body: &str) -> String {
    body.lines()
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn footer(ctx: &Context<'_>) -> (String, String) {
    let text = match ctx.prefs_link() {
        Some(l) => format!(
            "\n-- \nParley at {}. Choose what you are mailed: {l}\n",
            ctx.our_org_name
        ),
        None => format!(
            "\n-- \nParley at {}. Choose what you are mailed on the Settings page.\n",
            ctx.our_org_name
        ),
    };
    let html = match ctx.prefs_link() {
        Some(l) => format!(
            "<hr><p style=\"color:#555;font-size:small\">Parley at {}. <a href=\"{}\">Choose what you are mailed</a>.</p>",
            esc(ctx.our_org_name),
            esc(&l)
        ),
        None => format!(
            "<hr><p style=\"color:#555;font-size:small\">Parley at {}. Choose what you are mailed on the Settings page.</p>",
            esc(ctx.our_org_name)
        ),
    };
    (text, html)
}

fn wrap_html(inner: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"></head><body style=\"font-family:sans-serif\">{inner}</body></html>"
    )
}

fn new_mail(
    ctx: &Context<'_>,
    user: &str,
    to: &str,
    subject: String,
    text: String,
    html: String,
    thread: Option<Uuid>,
) -> OutMail {
    let id = Uuid::now_v7();
    OutMail {
        id,
        user: user.into(),
        to: to.into(),
        message_id: ctx.message_id(id),
        in_reply_to: thread.map(|c| ctx.thread_id(c)),
        subject,
        text,
        html,
        unsubscribe: ctx.prefs_link(),
        created_at: ctx.now,
        attempts: 0,
        // Retries run on wall time, whatever clock the content was written by.
        next_attempt_at: Utc::now(),
        last_error: None,
    }
}

/// One mail about one conversation: everything queued for this user about it.
pub fn conversation_mail(
    ctx: &Context<'_>,
    user: &str,
    to: &str,
    info: &ConvInfo<'_>,
    items: &[&MailItem],
) -> OutMail {
    let c = info.conv;
    let prefix = if items.iter().all(|i| i.kind == NotifyKind::Overdue) {
        "Overdue: "
    } else if items.iter().all(|i| i.kind == NotifyKind::DueSoon) {
        "Due soon: "
    } else {
        ""
    };
    let subject = format!("{prefix}{}", thread_subject(c));
    let mut text = format!(
        "{} with {} — {}\n\n",
        kind_word(c.kind),
        info.partner_name,
        thread_subject(c)
    );
    let mut html = format!(
        "<p style=\"color:#555\">{} with {} — <strong>{}</strong></p>",
        kind_word(c.kind),
        esc(info.partner_name),
        esc(&thread_subject(c))
    );
    for it in items {
        let (line, body) = describe(it, info, ctx);
        text += &line;
        text.push('\n');
        html += &format!("<p>{}</p>", esc(&line));
        if let Some(b) = body {
            text += &quote(&b);
            text.push_str("\n\n");
            html += &format!(
                "<blockquote style=\"white-space:pre-wrap;border-left:3px solid #ccc;margin:0 0 1em;padding-left:.8em\">{}</blockquote>",
                esc(&b)
            );
        }
    }
    if let Some(l) = ctx.link(c.id) {
        text += &format!("\nOpen it in Parley: {l}\n");
        html += &format!("<p><a href=\"{}\">Open it in Parley</a></p>", esc(&l));
    }
    let (ft, fh) = footer(ctx);
    text += &ft;
    html += &fh;
    new_mail(ctx, user, to, subject, text, wrap_html(&html), Some(c.id))
}

/// A line of a summary or digest: what happened in one conversation, counted.
fn summary_line(info: &ConvInfo<'_>, items: &[&MailItem]) -> String {
    let mut created = false;
    let (mut msgs, mut other) = (0, 0);
    for i in items {
        match i.activity.as_ref().map(|a| &a.what) {
            Some(What::Created) => created = true,
            Some(What::Message { .. }) => msgs += 1,
            _ => other += 1,
        }
    }
    let mut parts = Vec::new();
    if created {
        parts.push("new".to_string());
    }
    if msgs > 0 {
        parts.push(format!(
            "{msgs} new message{}",
            if msgs == 1 { "" } else { "s" }
        ));
    }
    if other > 0 {
        parts.push(format!(
            "{other} other change{}",
            if other == 1 { "" } else { "s" }
        ));
    }
    format!(
        "{} — {} ({})",
        thread_subject(info.conv),
        info.partner_name,
        parts.join(", ")
    )
}

/// At most this many conversations are listed in one summary; the rest are counted.
pub const SUMMARY_LINES: usize = 100;

/// One mail for many conversations at once (a first sync, a partner back after days): a
/// line per conversation instead of a mail each.
pub fn summary_mail(
    ctx: &Context<'_>,
    user: &str,
    to: &str,
    groups: &[(ConvInfo<'_>, Vec<&MailItem>)],
    heading: &str,
) -> OutMail {
    let n = groups.len();
    let subject = format!(
        "{heading}: {n} conversation{}",
        if n == 1 { "" } else { "s" }
    );
    let mut text = format!("{subject}\n\n");
    let mut html = format!("<p><strong>{}</strong></p><ul>", esc(&subject));
    for (info, items) in groups.iter().take(SUMMARY_LINES) {
        let line = summary_line(info, items);
        let overdue = info.conv.overdue(ctx.now.date_naive());
        let flag = if overdue { "OVERDUE " } else { "" };
        text += &format!("- {flag}{line}");
        match ctx.link(info.conv.id) {
            Some(l) => {
                text += &format!("\n  {l}\n");
                html += &format!(
                    "<li>{}<a href=\"{}\">{}</a></li>",
                    if overdue {
                        "<strong>Overdue</strong> "
                    } else {
                        ""
                    },
                    esc(&l),
                    esc(&line)
                );
            }
            None => {
                text.push('\n');
                html += &format!("<li>{}</li>", esc(&line));
            }
        }
    }
    html += "</ul>";
    if n > SUMMARY_LINES {
        let more = format!("…and {} more.", n - SUMMARY_LINES);
        text += &format!("{more}\n");
        html += &format!("<p>{}</p>", esc(&more));
    }
    if let Some(l) = ctx.inbox_link() {
        text += &format!("\nOpen the Inbox: {l}\n");
        html += &format!("<p><a href=\"{}\">Open the Inbox</a></p>", esc(&l));
    }
    let (ft, fh) = footer(ctx);
    text += &ft;
    html += &fh;
    new_mail(ctx, user, to, subject, text, wrap_html(&html), None)
}

/// The daily digest: overdue tasks first, then tasks due soon, then everything else, each
/// with what changed.
pub fn digest_mail(
    ctx: &Context<'_>,
    user: &str,
    to: &str,
    mut groups: Vec<(ConvInfo<'_>, Vec<&MailItem>)>,
) -> OutMail {
    let today = ctx.now.date_naive();
    let rank = |g: &(ConvInfo<'_>, Vec<&MailItem>)| {
        let c = g.0.conv;
        if c.overdue(today) || g.1.iter().any(|i| i.kind == NotifyKind::Overdue) {
            0
        } else if g.1.iter().any(|i| i.kind == NotifyKind::DueSoon) {
            1
        } else {
            2
        }
    };
    groups.sort_by_key(|g| (rank(g), g.0.conv.due_date));
    summary_mail(ctx, user, to, &groups, "Your Parley digest")
}
