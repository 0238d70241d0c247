//! Configuration: built-in defaults, then an optional TOML file, then `PARLEY_*` environment
//! variables and command-line flags (clap merges those two; a flag wins). Validated once here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
}

/// The effective, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address partners dial (`http://host:port`); default: the listen address unless it
    /// is 0.0.0.0 or [::].
    pub public_url: Option<String>,
    pub doc_cache: usize,
    pub log: String,
    /// The file that was read, if any.
    pub file: Option<PathBuf>,
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
                reason: "use http://HOST:PORT, the address other nodes can reach this one at"
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
        Ok(Config {
            data_dir,
            listen,
            public_url,
            doc_cache,
            log,
            file: path,
        })
    }

    /// What to advertise to peers: `public_url`, else the listen address if it is a concrete IP.
    pub fn advertised_url(&self) -> Option<String> {
        self.public_url.clone().or_else(|| {
            (!self.listen.ip().is_unspecified()).then(|| format!("http://{}", self.listen))
        })
    }

    /// Where a CLI on this machine reaches the running node.
    pub fn local_url(&self) -> String {
        let mut a = self.listen;
        if a.ip().is_unspecified() {
            a.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{a}")
    }

    /// The effective configuration as TOML, for `parley print-config`.
    pub fn to_toml(&self) -> String {
        let from = match &self.file {
            Some(f) => format!("# read from {}\n", f.display()),
            None => "# no config file read; defaults, environment and flags only\n".into(),
        };
        format!(
            "{from}data_dir = {:?}\nlisten = \"{}\"\n{}doc_cache = {}\nlog = {:?}\n",
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
    }
}
