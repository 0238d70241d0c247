//! Configuration: built-in defaults, then an optional TOML file, then `PARLEY_*` environment
//! variables and command-line flags (clap merges those two; a flag wins). Validated once here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub const DEFAULT_DATA_DIR: &str = "parley-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";
pub const CONFIG_FILE: &str = "parley.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{field} = {value:?} is not valid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// The TOML file's shape; every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub doc_cache: Option<usize>,
    pub log: Option<String>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_loopback_peers: Option<bool>,
    pub header_timeout_secs: Option<u64>,
    pub body_timeout_secs: Option<u64>,
    pub idle_timeout_secs: Option<u64>,
    pub signin_window_secs: Option<u64>,
    pub peer_quota_mb_per_day: Option<u64>,
    pub disk_reserve_mb: Option<u64>,
    pub email: Option<crate::notify::config::EmailFile>,
    pub webhooks: Option<crate::notify::config::WebhooksFile>,
    pub attachments: Option<AttachmentsFile>,
    pub backup: Option<crate::service::backup::BackupFile>,
    pub metrics: Option<crate::metrics::config::MetricsFile>,
    pub sync: Option<SyncFile>,
}

/// `[sync]`: how many peer links a restart storm may start at once.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncFile {
    /// Most links doing a first sync at once (default 4); the others wait their turn.
    pub first_syncs: Option<usize>,
    /// Sync connections accepted per second (default 200, with bursts of twice as many);
    /// beyond it a peer is answered 503 and comes back later.
    pub accept_per_second: Option<u32>,
}

impl SyncFile {
    fn load(self) -> Result<crate::replicator::admission::Limits, ConfigError> {
        let mut l = crate::replicator::admission::Limits::default();
        if let Some(n) = self.first_syncs {
            if !(1..=1024).contains(&n) {
                return Err(ConfigError::Invalid {
                    field: "sync.first_syncs",
                    value: n.to_string(),
                    reason: "must be between 1 and 1024 links".into(),
                });
            }
            l.first_syncs = n;
        }
        if let Some(n) = self.accept_per_second {
            if !(1..=100_000).contains(&n) {
                return Err(ConfigError::Invalid {
                    field: "sync.accept_per_second",
                    value: n.to_string(),
                    reason: "must be between 1 and 100000 connections per second".into(),
                });
            }
            l.accept_per_second = n;
            l.accept_burst = n.saturating_mul(2);
        }
        Ok(l)
    }
}

/// `[attachments]`: which files this node takes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentsFile {
    /// Largest file, in MiB (default 25).
    pub max_mb: Option<u64>,
    /// Kinds taken, by name (default: all of pdf png jpeg gif webp txt csv docx xlsx pptx doc
    /// xls ppt; `svg` may be added).
    pub types: Option<Vec<String>>,
}

impl AttachmentsFile {
    fn load(self) -> Result<crate::store::AttachmentRules, ConfigError> {
        let mut rules = crate::store::AttachmentRules::default();
        if let Some(mb) = self.max_mb {
            if !(1..=1024).contains(&mb) {
                return Err(ConfigError::Invalid {
                    field: "attachments.max_mb",
                    value: mb.to_string(),
                    reason: "must be between 1 and 1024 MiB".into(),
                });
            }
            rules.max_bytes = mb * 1024 * 1024;
        }
        if let Some(types) = self.types {
            let mut kinds = Vec::new();
            for t in &types {
                let k = crate::domain::attachment::kind_by_name(t).ok_or_else(|| {
                    ConfigError::Invalid {
                        field: "attachments.types",
                        value: t.clone(),
                        reason: format!(
                            "is not a kind Parley knows; use some of {}",
                            crate::domain::attachment::KINDS
                                .iter()
                                .map(|k| k.name)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                })?;
                kinds.push(k.name);
            }
            if kinds.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "attachments.types",
                    value: "[]".into(),
                    reason: "name at least one kind of file".into(),
                });
            }
            rules.kinds = kinds;
        }
        Ok(rules)
    }
}

/// How long a connection may take over each part of a request (file-only settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From a connection's start, or the first byte of a later request, to the end of the
    /// request head.
    pub header: Duration,
    /// From the end of the head to the end of the body.
    pub body: Duration,
    /// No byte either way for this long closes the connection (idle keep-alive included). Live
    /// event streams send a keep-alive every 15 s and peer links ping every 5 s, so this is
    /// at least 20 s.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            header: Duration::from_secs(10),
            body: Duration::from_secs(60),
            idle: Duration::from_secs(60),
        }
    }
}

/// Values from flags or environment (already merged by clap); `None` where neither was given.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub doc_cache: Option<usize>,
    pub log: Option<String>,
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub allow_loopback_peers: Option<bool>,
    /// `--metrics-listen` (`serve` only).
    pub metrics_listen: Option<String>,
}

/// The effective, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Which files this node takes (`[attachments]`).
    pub attachments: crate::store::AttachmentRules,
    /// Periodic backups (`[backup]`), off unless a directory is set.
    pub backup: Option<crate::service::backup::BackupSchedule>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address partners dial (`http://host:port`); default: the listen address unless it
    /// is 0.0.0.0 or `[::]`.
    pub public_url: Option<String>,
    pub doc_cache: usize,
    pub log: String,
    /// Where to serve peers over TLS (feature `tls`), beside the plain `listen` address.
    pub tls_listen: Option<SocketAddr>,
    /// The certificate and key to serve it with; default: one made in `<data dir>/tls/`.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Whether peers may have loopback addresses (127.0.0.0/8, ::1, `localhost`). Off by
    /// default: an invite or pairing request naming one would make this node dial itself or a
    /// local service. For nodes that all run on one machine (and for tests).
    pub allow_loopback_peers: bool,
    pub timeouts: Timeouts,
    /// How long a failed sign-in counts against its user name and address.
    pub signin_window: Duration,
    /// Bytes of changes accepted from one peer per UTC day (`store::quota`).
    pub peer_quota_bytes_per_day: u64,
    /// Bytes writes leave free on the data directory's disk; `None`: 64 MiB, or 5 % of a
    /// smaller disk (`store::disk`).
    pub disk_reserve: Option<u64>,
    pub email: crate::notify::config::EmailConfig,
    pub webhooks: crate::notify::config::WebhookConfig,
    /// Where `/metrics` is also served without a token (`[metrics] listen`); off if `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// Admission of peer links in a restart storm (`[sync]`).
    pub sync: crate::replicator::admission::Limits,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where `listen` came from, for a CLI that looks for the running node.
    pub listen_from: ListenFrom,
}

/// Which layer of the configuration set `listen`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenFrom {
    /// A flag or `PARLEY_LISTEN` (clap merges those two).
    Override,
    File,
    Default,
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

/// A duration setting in whole seconds, between `min` and a day.
fn secs(
    field: &'static str,
    v: Option<u64>,
    default: Duration,
    min: u64,
) -> Result<Duration, ConfigError> {
    let Some(n) = v else { return Ok(default) };
    if !(min..=86_400).contains(&n) {
        return Err(ConfigError::Invalid {
            field,
            value: n.to_string(),
            reason: format!("must be between {min} and 86400 seconds"),
        });
    }
    Ok(Duration::from_secs(n))
}

impl Config {
    /// Resolves the configuration. The file is `--config` if given, else `parley.toml` in the
    /// data directory if it exists.
    pub fn load(o: Overrides) -> Result<Config, ConfigError> {
        let (file, path) = match &o.config {
            Some(p) => (read_file(p)?, Some(p.clone())),
            None => {
                let dir = o
                    .data_dir
                    .clone()
                    .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
                let p = dir.join(CONFIG_FILE);
                if p.exists() {
                    (read_file(&p)?, Some(p))
                } else {
                    (FileConfig::default(), None)
                }
            }
        };
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let listen_from = match (&o.listen, &file.listen) {
            (Some(_), _) => ListenFrom::Override,
            (None, Some(_)) => ListenFrom::File,
            (None, None) => ListenFrom::Default,
        };
        let listen_s = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen_s.parse().map_err(|_| ConfigError::Invalid {
            field: "listen",
            value: listen_s.clone(),
            reason: "use IP:PORT, e.g. 127.0.0.1:7878 or 0.0.0.0:7878".into(),
        })?;
        let public_url = o.public_url.or(file.public_url);
        if let Some(u) = &public_url
            && crate::http_client::split_url(u).is_err()
        {
            return Err(ConfigError::Invalid {
                field: "public_url",
                value: u.clone(),
                reason: "use http://HOST:PORT (or https://HOST:PORT with --tls-listen), the address other nodes can reach this one at"
                    .into(),
            });
        }
        let doc_cache = o
            .doc_cache
            .or(file.doc_cache)
            .unwrap_or(crate::store::StoreOptions::default().doc_cache);
        if !(1..=1_000_000).contains(&doc_cache) {
            return Err(ConfigError::Invalid {
                field: "doc_cache",
                value: doc_cache.to_string(),
                reason: "must be between 1 and 1000000 documents".into(),
            });
        }
        let log = o.log.or(file.log).unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log).is_err() {
            return Err(ConfigError::Invalid {
                field: "log",
                value: log,
                reason: "use a level such as info or debug".into(),
            });
        }
        if data_dir.as_os_str().is_empty() {
            return Err(ConfigError::Invalid {
                field: "data_dir",
                value: String::new(),
                reason: "must not be empty".into(),
            });
        }
        let tls_listen: Option<SocketAddr> = match o.tls_listen.or(file.tls_listen) {
            None => None,
            Some(s) => Some(s.parse().map_err(|_| ConfigError::Invalid {
                field: "tls_listen",
                value: s.clone(),
                reason: "use IP:PORT, e.g. 0.0.0.0:7879".into(),
            })?),
        };
        let tls_cert = o.tls_cert.or(file.tls_cert);
        let tls_key = o.tls_key.or(file.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(ConfigError::Invalid {
                field: if tls_cert.is_some() { "tls_key" } else { "tls_cert" },
                value: String::new(),
                reason: "give both tls_cert and tls_key, or neither (a certificate is then made in the data directory)".into(),
            });
        }
        if tls_cert.is_some() && tls_listen.is_none() {
            return Err(ConfigError::Invalid {
                field: "tls_cert",
                value: String::new(),
                reason: "is used only with tls_listen, the address to serve peers over TLS".into(),
            });
        }
        if tls_listen.is_some() && !cfg!(feature = "tls") {
            return Err(ConfigError::Invalid {
                field: "tls_listen",
                value: tls_listen.map(|a| a.to_string()).unwrap_or_default(),
                reason: crate::tls::TlsError::NotBuilt("serve peers over TLS").to_string(),
            });
        }
        if tls_listen.is_some_and(|t| t == listen && t.port() != 0) {
            return Err(ConfigError::Invalid {
                field: "tls_listen",
                value: listen.to_string(),
                reason: "must differ from listen, which keeps serving plain HTTP".into(),
            });
        }
        let d = Timeouts::default();
        let timeouts = Timeouts {
            header: secs("header_timeout_secs", file.header_timeout_secs, d.header, 1)?,
            body: secs("body_timeout_secs", file.body_timeout_secs, d.body, 1)?,
            idle: secs("idle_timeout_secs", file.idle_timeout_secs, d.idle, 20)?,
        };
        let signin_window = secs(
            "signin_window_secs",
            file.signin_window_secs,
            crate::service::SIGNIN_WINDOW,
            1,
        )?;
        let peer_quota_bytes_per_day = match file.peer_quota_mb_per_day {
            None => crate::store::quota::DEFAULT_PEER_BYTES_PER_DAY,
            Some(mb) if (1..=1_000_000).contains(&mb) => mb * 1024 * 1024,
            Some(mb) => {
                return Err(ConfigError::Invalid {
                    field: "peer_quota_mb_per_day",
                    value: mb.to_string(),
                    reason: "must be between 1 and 1000000 MiB".into(),
                });
            }
        };
        let disk_reserve = match file.disk_reserve_mb {
            None => None,
            Some(mb) if mb <= 1_048_576 => Some(mb << 20),
            Some(mb) => {
                return Err(ConfigError::Invalid {
                    field: "disk_reserve_mb",
                    value: mb.to_string(),
                    reason: "must be between 0 and 1048576 MiB".into(),
                });
            }
        };
        let email = crate::notify::config::EmailConfig::load(
            file.email.unwrap_or_default(),
            public_url.as_deref(),
        )?;
        let webhooks =
            crate::notify::config::WebhookConfig::load(file.webhooks.unwrap_or_default())?;
        let attachments = file.attachments.unwrap_or_default().load()?;
        let backup = file.backup.unwrap_or_default().load()?;
        let sync = file.sync.unwrap_or_default().load()?;
        let metrics_listen = crate::metrics::config::listen_addr(
            o.metrics_listen.or(file.metrics.and_then(|m| m.listen)),
            listen,
        )?;
        Ok(Config {
            sync,
            metrics_listen,
            attachments,
            backup,
            email,
            webhooks,
            timeouts,
            signin_window,
            peer_quota_bytes_per_day,
            disk_reserve,
            data_dir,
            listen,
            public_url,
            doc_cache,
            log,
            tls_listen,
            tls_cert,
            tls_key,
            allow_loopback_peers: o
                .allow_loopback_peers
                .or(file.allow_loopback_peers)
                .unwrap_or(false),
            file: path,
            listen_from,
        })
    }

    /// What to advertise to peers: `public_url`, else the TLS address or the listen address
    /// if it is a concrete IP.
    pub fn advertised_url(&self) -> Option<String> {
        if let Some(u) = &self.public_url {
            return Some(u.clone());
        }
        match self.tls_listen {
            Some(t) => (!t.ip().is_unspecified()).then(|| format!("https://{t}")),
            None => (!self.listen.ip().is_unspecified()).then(|| format!("http://{}", self.listen)),
        }
    }

    /// The effective configuration as TOML, for `parley print-config`.
    pub fn to_toml(&self) -> String {
        let from = match &self.file {
            Some(f) => format!("# read from {}\n", f.display()),
            None => "# no config file read; defaults, environment and flags only\n".into(),
        };
        let tls = [
            self.tls_listen.map(|a| format!("tls_listen = \"{a}\"\n")),
            self.tls_cert
                .as_ref()
                .map(|p| format!("tls_cert = {:?}\n", p.display().to_string())),
            self.tls_key
                .as_ref()
                .map(|p| format!("tls_key = {:?}\n", p.display().to_string())),
            self.allow_loopback_peers
                .then(|| "allow_loopback_peers = true\n".to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<String>();
        let t = &self.timeouts;
        let limits = format!(
            "header_timeout_secs = {}\nbody_timeout_secs = {}\nidle_timeout_secs = {}\nsignin_window_secs = {}\npeer_quota_mb_per_day = {}\n",
            t.header.as_secs(),
            t.body.as_secs(),
            t.idle.as_secs(),
            self.signin_window.as_secs(),
            self.peer_quota_bytes_per_day / (1024 * 1024)
        );
        let limits = match self.disk_reserve {
            Some(b) => format!("{limits}disk_reserve_mb = {}\n", b >> 20),
            None => limits,
        };
        let kinds: Vec<String> = self
            .attachments
            .kinds
            .iter()
            .map(|k| format!("{k:?}"))
            .collect();
        let notify = self.email.to_toml()
            + &self.webhooks.to_toml()
            + &format!(
                "\n[attachments]\nmax_mb = {}\ntypes = [{}]\n",
                self.attachments.max_bytes >> 20,
                kinds.join(", ")
            )
            + &crate::service::backup::schedule_toml(self.backup.as_ref())
            + &crate::metrics::config::to_toml(self.metrics_listen)
            + &format!(
                "\n[sync]\nfirst_syncs = {}\naccept_per_second = {}\n",
                self.sync.first_syncs, self.sync.accept_per_second
            );
        format!(
            "{from}data_dir = {:?}\nlisten = \"{}\"\n{}doc_cache = {}\nlog = {:?}\n{tls}{limits}{notify}",
            self.data_dir.display().to_string(),
            self.listen,
            self.public_url
                .as_ref()
                .map(|u| format!("public_url = {u:?}\n"))
                .unwrap_or_default(),
            self.doc_cache,
            self.log
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_admission_is_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let load = |toml: &str| {
            let f = dir.path().join("s.toml");
            std::fs::write(&f, toml).unwrap();
            Config::load(Overrides {
                config: Some(f),
                ..Default::default()
            })
        };
        let d = load("").unwrap().sync;
        assert_eq!((d.first_syncs, d.accept_per_second), (4, 200));
        let c = load("[sync]\nfirst_syncs = 2\naccept_per_second = 50\n").unwrap();
        assert_eq!(
            (
                c.sync.first_syncs,
                c.sync.accept_per_second,
                c.sync.accept_burst
            ),
            (2, 50, 100)
        );
        let printed = c.to_toml();
        assert!(
            printed.contains("[sync]\nfirst_syncs = 2\naccept_per_second = 50"),
            "{printed}"
        );
        for bad in [
            "[sync]\nfirst_syncs = 0\n",
            "[sync]\naccept_per_second = 0\n",
            "[sync]\nfirst_syncs = -1\n",
            "[sync]\nturns = 3\n",
        ] {
            let e = load(bad).unwrap_err().to_string();
            assert!(
                e.contains("sync") || e.contains("turns") || e.contains("first_syncs"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn disk_reserve_is_read_in_mib_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let load = |toml: &str| {
            let f = dir.path().join("r.toml");
            std::fs::write(&f, toml).unwrap();
            Config::load(Overrides {
                config: Some(f),
                ..Default::default()
            })
        };
        assert_eq!(load("").unwrap().disk_reserve, None);
        assert_eq!(load("disk_reserve_mb = 0\n").unwrap().disk_reserve, Some(0));
        let c = load("disk_reserve_mb = 100\n").unwrap();
        assert_eq!(c.disk_reserve, Some(100 << 20));
        assert!(c.to_toml().contains("disk_reserve_mb = 100"));
        let e = load("disk_reserve_mb = 99999999\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("disk_reserve_mb"), "{e}");
        assert!(load("disk_reserve_mb = -1\n").is_err());
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "listen = \"0.0.0.0:9000\"\ndoc_cache = 7\n").unwrap();
        let c = Config::load(Overrides {
            config: Some(f.clone()),
            doc_cache: Some(9),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(c.doc_cache, 9, "a flag beats the file");
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        // The printed config reads back to the same values.
        let printed = dir.path().join("out.toml");
        std::fs::write(&printed, c.to_toml()).unwrap();
        let again = Config::load(Overrides {
            config: Some(printed.clone()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!((again.listen, again.doc_cache), (c.listen, c.doc_cache));
        assert_eq!(
            (
                again.timeouts,
                again.signin_window,
                again.peer_quota_bytes_per_day
            ),
            (c.timeouts, c.signin_window, c.peer_quota_bytes_per_day)
        );
    }

    #[test]
    fn bad_config_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "listn = \"x\"\n").unwrap();
        let e = Config::load(Overrides {
            config: Some(f),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("listn"), "{e}");
        let e = Config::load(Overrides {
            listen: Some("nope".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("IP:PORT"), "{e}");
        std::fs::write(dir.path().join("t.toml"), "idle_timeout_secs = 5\n").unwrap();
        let e = Config::load(Overrides {
            config: Some(dir.path().join("t.toml")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("idle_timeout_secs"), "{e}");
        for (line, ok) in [
            ("peer_quota_mb_per_day = 0\n", false),
            ("peer_quota_mb_per_day = 64\n", true),
        ] {
            std::fs::write(dir.path().join("q.toml"), line).unwrap();
            let r = Config::load(Overrides {
                config: Some(dir.path().join("q.toml")),
                ..Default::default()
            });
            match r {
                Ok(c) => assert!(ok && c.peer_quota_bytes_per_day == 64 << 20),
                Err(e) => assert!(
                    !ok && e.to_string().contains("peer_quota_mb_per_day"),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn tls_settings_are_checked() {
        let e = Config::load(Overrides {
            tls_listen: Some("127.0.0.1:7879".into()),
            tls_cert: Some("c.pem".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("both tls_cert and tls_key"), "{e}");
        let e = Config::load(Overrides {
            tls_listen: Some("nope".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("tls_listen"), "{e}");
        let r = Config::load(Overrides {
            tls_listen: Some("127.0.0.1:7879".into()),
            ..Default::default()
        });
        if cfg!(feature = "tls") {
            let c = r.unwrap();
            assert_eq!(
                c.advertised_url().as_deref(),
                Some("https://127.0.0.1:7879")
            );
        } else {
            let e = r.unwrap_err();
            assert!(e.to_string().contains("--features tls"), "{e}");
        }
    }
}
