//! The `[email]` and `[webhooks]` tables of the configuration file, with their `PARLEY_*`
//! environment variables. Parsed here so `config.rs` only hands the tables over.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveTime;
use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailFile {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    pub smtp_security: Option<String>,
    pub smtp_user: Option<String>,
    /// A file holding the SMTP password (or `PARLEY_SMTP_PASSWORD`); never the password itself,
    /// so the configuration file can be shown and shared.
    pub smtp_password_file: Option<PathBuf>,
    pub from: Option<String>,
    /// The web UI's address as users reach it, for links in mail. Default: `public_url`.
    pub ui_url: Option<String>,
    /// Local time of the daily digest, `HH:MM`.
    pub digest_time: Option<String>,
    /// Working days before the due date that the due-soon reminder goes out.
    pub due_soon_working_days: Option<u32>,
    /// How long the sender waits for a burst of changes to end before mailing it.
    pub settle_ms: Option<u64>,
    /// A user told of more conversations than this at once gets one summary instead.
    pub summary_after: Option<usize>,
    /// Domains users may have their mail sent to (e.g. the org's own); empty: any.
    pub allowed_domains: Option<Vec<String>>,
    pub send_timeout_secs: Option<u64>,
    /// Seconds between two sweeps for reminders and the digest.
    pub sweep_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Tls,
}

impl Security {
    pub fn as_str(self) -> &'static str {
        match self {
            Security::None => "none",
            Security::StartTls => "starttls",
            Security::Tls => "tls",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Where the password came from, for `print-config` (which never prints it).
    pub password_from: Option<String>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// `None`: no SMTP server configured; nothing is mailed, and the sender drops what is
    /// queued, so a server configured later is not flooded with the past.
    pub smtp: Option<Smtp>,
    pub from: String,
    pub ui_url: Option<String>,
    pub digest_time: NaiveTime,
    pub due_soon_working_days: u32,
    pub settle: Duration,
    pub summary_after: usize,
    pub send_timeout: Duration,
    /// Lower-case domains an address may be at; empty: any.
    pub allowed_domains: Vec<String>,
    /// How often reminders and the digest are looked for.
    pub sweep: Duration,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp: None,
            from: "parley@localhost".into(),
            ui_url: None,
            digest_time: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            due_soon_working_days: 1,
            settle: Duration::from_millis(300),
            summary_after: 5,
            send_timeout: Duration::from_secs(30),
            allowed_domains: Vec::new(),
            sweep: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksFile {
    /// Address classes deliveries may go to: `private`, `external`, `loopback`.
    pub allow: Option<Vec<String>>,
    /// Seconds between attempts; the last one says how long after the previous the final
    /// attempt comes.
    pub retry_secs: Option<Vec<u64>>,
    pub disable_after_secs: Option<u64>,
    pub timeout_secs: Option<u64>,
    pub max_pending: Option<u64>,
    pub rotate_overlap_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    pub allow_private: bool,
    pub allow_external: bool,
    pub allow_loopback: bool,
    pub retry: Vec<Duration>,
    pub disable_after: Duration,
    pub timeout: Duration,
    pub max_pending: u64,
    pub rotate_overlap: Duration,
}

/// Standard Webhooks' schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h,
/// 24 h — about three days.
pub const RETRY_SECS: &[u64] = &[0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            allow_private: true,
            allow_external: true,
            allow_loopback: false,
            retry: RETRY_SECS.iter().map(|s| Duration::from_secs(*s)).collect(),
            disable_after: Duration::from_secs(5 * 86400),
            timeout: Duration::from_secs(15),
            max_pending: 100_000,
            rotate_overlap: Duration::from_secs(86400),
        }
    }
}

fn invalid(field: &'static str, value: impl Into<String>, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: value.into(),
        reason: reason.into(),
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl EmailConfig {
    /// The file's `[email]` table, overridden by `PARLEY_SMTP_HOST`, `PARLEY_SMTP_PORT`,
    /// `PARLEY_SMTP_SECURITY`, `PARLEY_SMTP_USER`, `PARLEY_SMTP_PASSWORD` (or
    /// `PARLEY_SMTP_PASSWORD_FILE`) and `PARLEY_EMAIL_FROM`.
    pub fn load(f: EmailFile, public_url: Option<&str>) -> Result<EmailConfig, ConfigError> {
        let d = EmailConfig::default();
        let host = env("PARLEY_SMTP_HOST").or(f.smtp_host);
        let port =
            match env("PARLEY_SMTP_PORT") {
                Some(p) => Some(p.parse::<u16>().map_err(|_| {
                    invalid("smtp_port", p.clone(), "must be a port number, e.g. 587")
                })?),
                None => f.smtp_port,
            };
        let security = match env("PARLEY_SMTP_SECURITY").or(f.smtp_security).as_deref() {
            None => None,
            Some("none") => Some(Security::None),
            Some("starttls") => Some(Security::StartTls),
            Some("tls") => Some(Security::Tls),
            Some(o) => {
                return Err(invalid(
                    "smtp_security",
                    o,
                    "use none, starttls (port 587) or tls (port 465)",
                ));
            }
        };
        if security.is_some_and(|s| s != Security::None) && !cfg!(feature = "tls") {
            return Err(invalid(
                "smtp_security",
                security.map(|s| s.as_str()).unwrap_or_default(),
                "needs a build with the `tls` feature (cargo build --features tls); use none for a server on this machine or the LAN",
            ));
        }
        let user = env("PARLEY_SMTP_USER").or(f.smtp_user);
        let pw_file = env("PARLEY_SMTP_PASSWORD_FILE")
            .map(PathBuf::from)
            .or(f.smtp_password_file);
        let (password, password_from) = match (env("PARLEY_SMTP_PASSWORD"), pw_file) {
            (Some(p), _) => (Some(p), Some("PARLEY_SMTP_PASSWORD".to_string())),
            (None, Some(path)) => {
                let p = std::fs::read_to_string(&path).map_err(|e| {
                    invalid(
                        "smtp_password_file",
                        path.display().to_string(),
                        &format!("cannot be read ({e}); it should hold the SMTP password"),
                    )
                })?;
                (
                    Some(p.trim_end_matches(['\r', '\n']).to_string()),
                    Some(path.display().to_string()),
                )
            }
            (None, None) => (None, None),
        };
        if password.is_some() && user.is_none() {
            return Err(invalid(
                "smtp_user",
                "",
                "is needed with an SMTP password: set smtp_user (PARLEY_SMTP_USER)",
            ));
        }
        let smtp = match host {
            None => None,
            Some(h) if h.trim().is_empty() || h.contains(['/', ' ']) => {
                return Err(invalid(
                    "smtp_host",
                    h,
                    "use a host name or address, e.g. mail.example.com",
                ));
            }
            Some(host) => {
                let security = security.unwrap_or(Security::None);
                let port = port.unwrap_or(match security {
                    Security::None => 25,
                    Security::StartTls => 587,
                    Security::Tls => 465,
                });
                Some(Smtp {
                    host,
                    port,
                    security,
                    user,
                    password,
                    password_from,
                })
            }
        };
        let from = env("PARLEY_EMAIL_FROM").or(f.from).unwrap_or(d.from);
        crate::domain::notify::check_email(&from)
            .map_err(|e| invalid("email.from", from.clone(), &e.to_string()))?;
        let ui_url = f.ui_url.or_else(|| public_url.map(str::to_string));
        if let Some(u) = &ui_url
            && crate::http_client::split_url(u).is_err()
        {
            return Err(invalid(
                "email.ui_url",
                u.clone(),
                "use http(s)://HOST[:PORT], the address users open the web UI at",
            ));
        }
        let digest_time = match f.digest_time {
            None => d.digest_time,
            Some(t) => NaiveTime::parse_from_str(&t, "%H:%M")
                .map_err(|_| invalid("email.digest_time", t, "use HH:MM, e.g. 08:00"))?,
        };
        let due_soon_working_days = f.due_soon_working_days.unwrap_or(1);
        if due_soon_working_days > 30 {
            return Err(invalid(
                "email.due_soon_working_days",
                due_soon_working_days.to_string(),
                "must be between 0 and 30",
            ));
        }
        let settle = Duration::from_millis(f.settle_ms.unwrap_or(d.settle.as_millis() as u64));
        if settle > Duration::from_secs(600) {
            return Err(invalid(
                "email.settle_ms",
                settle.as_millis().to_string(),
                "must be at most 600000",
            ));
        }
        let summary_after = f.summary_after.unwrap_or(d.summary_after).max(1);
        let mut allowed_domains = Vec::new();
        for dom in f.allowed_domains.unwrap_or_default() {
            let t = dom.trim().trim_start_matches('@').to_lowercase();
            if crate::domain::notify::check_email(&format!("x@{t}")).is_err() {
                return Err(invalid(
                    "email.allowed_domains",
                    dom,
                    "give domains such as \"bolt.example\"",
                ));
            }
            allowed_domains.push(t);
        }
        let send_timeout = Duration::from_secs(f.send_timeout_secs.unwrap_or(30).clamp(1, 600));
        Ok(EmailConfig {
            smtp,
            from,
            ui_url,
            digest_time,
            due_soon_working_days,
            settle,
            summary_after,
            send_timeout,
            allowed_domains,
            sweep: Duration::from_secs(f.sweep_secs.unwrap_or(30).clamp(1, 86400)),
        })
    }

    /// The `[email]` table for `print-config`: the password's source, never the password.
    pub fn to_toml(&self) -> String {
        let mut s = String::from("\n[email]\n");
        if let Some(m) = &self.smtp {
            s += &format!(
                "smtp_host = {:?}\nsmtp_port = {}\nsmtp_security = \"{}\"\n",
                m.host,
                m.port,
                m.security.as_str()
            );
            if let Some(u) = &m.user {
                s += &format!("smtp_user = {u:?}\n");
            }
            if let Some(p) = &m.password_from {
                s += &format!("# the SMTP password is set, from {p}\n");
            }
        } else {
            s += "# no smtp_host: nothing is mailed\n";
        }
        s += &format!("from = {:?}\n", self.from);
        if let Some(u) = &self.ui_url {
            s += &format!("ui_url = {u:?}\n");
        }
        s += &format!(
            "digest_time = \"{}\"\ndue_soon_working_days = {}\nsettle_ms = {}\nsummary_after = {}\nsend_timeout_secs = {}\n",
            self.digest_time.format("%H:%M"),
            self.due_soon_working_days,
            self.settle.as_millis(),
            self.summary_after,
            self.send_timeout.as_secs()
        );
        if !self.allowed_domains.is_empty() {
            s += &format!("allowed_domains = {:?}\n", self.allowed_domains);
        }
        s += &format!("sweep_secs = {}\n", self.sweep.as_secs());
        s
    }

    /// Whether mail may go to `addr` under `allowed_domains` (an address at a subdomain of an
    /// allowed domain counts as at it).
    pub fn domain_allowed(&self, addr: &str) -> bool {
        if self.allowed_domains.is_empty() {
            return true;
        }
        let dom = addr
            .rsplit_once('@')
            .map(|(_, d)| d.to_lowercase())
            .unwrap_or_default();
        self.allowed_domains
            .iter()
            .any(|a| dom == *a || dom.ends_with(&format!(".{a}")))
    }
}

impl WebhookConfig {
    pub fn load(f: WebhooksFile) -> Result<WebhookConfig, ConfigError> {
        let d = WebhookConfig::default();
        let mut c = d.clone();
        if let Some(allow) = f.allow {
            c.allow_private = false;
            c.allow_external = false;
            c.allow_loopback = false;
            for a in &allow {
                match a.as_str() {
                    "private" => c.allow_private = true,
                    "external" => c.allow_external = true,
                    "loopback" => c.allow_loopback = true,
                    o => {
                        return Err(invalid(
                            "webhooks.allow",
                            o,
                            "use any of \"private\", \"external\", \"loopback\"",
                        ));
                    }
                }
            }
        }
        if let Some(r) = f.retry_secs {
            if r.is_empty() || r.len() > 50 || r.iter().any(|s| *s > 7 * 86400) {
                return Err(invalid(
                    "webhooks.retry_secs",
                    format!("{r:?}"),
                    "give 1 to 50 delays of at most 604800 seconds each",
                ));
            }
            c.retry = r.into_iter().map(Duration::from_secs).collect();
        }
        if let Some(s) = f.disable_after_secs {
            c.disable_after = Duration::from_secs(s.max(1));
        }
        if let Some(s) = f.timeout_secs {
            c.timeout = Duration::from_secs(s.clamp(1, 120));
        }
        if let Some(n) = f.max_pending {
            c.max_pending = n.max(1);
        }
        if let Some(s) = f.rotate_overlap_secs {
            c.rotate_overlap = Duration::from_secs(s);
        }
        Ok(c)
    }

    pub fn to_toml(&self) -> String {
        let allow: Vec<&str> = [
            (self.allow_private, "\"private\""),
            (self.allow_external, "\"external\""),
            (self.allow_loopback, "\"loopback\""),
        ]
        .into_iter()
        .filter_map(|(on, s)| on.then_some(s))
        .collect();
        format!(
            "\n[webhooks]\nallow = [{}]\nretry_secs = {:?}\ndisable_after_secs = {}\ntimeout_secs = {}\nmax_pending = {}\nrotate_overlap_secs = {}\n",
            allow.join(", "),
            self.retry.iter().map(|d| d.as_secs()).collect::<Vec<_>>(),
            self.disable_after.as_secs(),
            self.timeout.as_secs(),
            self.max_pending,
            self.rotate_overlap.as_secs()
        )
    }
}
