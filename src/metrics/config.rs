//! `[metrics]` in the config file: where to serve `/metrics` without a token, for a
//! Prometheus on this machine. Off unless set.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// e.g. `127.0.0.1:9464`.
    pub listen: Option<String>,
}

/// Parses the separate listener's address (`--metrics-listen`, `PARLEY_METRICS_LISTEN` or
/// `[metrics] listen`), refusing the node's own `listen` address.
pub fn listen_addr(
    value: Option<String>,
    listen: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(s) = value else {
        return Ok(None);
    };
    let addr: SocketAddr = s.trim().parse().map_err(|_| ConfigError::Invalid {
        field: "metrics.listen",
        value: s.clone(),
        reason: "use IP:PORT, e.g. 127.0.0.1:9464".into(),
    })?;
    if addr == listen && addr.port() != 0 {
        return Err(ConfigError::Invalid {
            field: "metrics.listen",
            value: s,
            reason: "is the node's own listen address; pick another port, e.g. 127.0.0.1:9464"
                .into(),
        });
    }
    Ok(Some(addr))
}

/// The `[metrics]` section as `parley print-config` shows it.
pub fn to_toml(listen: Option<SocketAddr>) -> String {
    match listen {
        Some(a) => format!("\n[metrics]\nlisten = \"{a}\"\n"),
        None => {
            "\n[metrics]\n# listen = \"127.0.0.1:9464\" (off: /metrics only with an admin token)\n"
                .into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_and_clashing_addresses_are_refused() {
        let listen: SocketAddr = "127.0.0.1:7878".parse().unwrap();
        assert_eq!(listen_addr(None, listen).unwrap(), None);
        assert_eq!(
            listen_addr(Some("127.0.0.1:9464".into()), listen).unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        let e = listen_addr(Some("localhost".into()), listen).unwrap_err();
        assert!(e.to_string().contains("metrics.listen"), "{e}");
        let e = listen_addr(Some("127.0.0.1:7878".into()), listen).unwrap_err();
        assert!(e.to_string().contains("own listen address"), "{e}");
    }

    #[test]
    fn the_file_sets_it_and_print_config_shows_it() {
        use crate::config::{Config, Overrides};
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(&f, "[metrics]\nlisten = \"127.0.0.1:9464\"\n").unwrap();
        let c = Config::load(Overrides {
            config: Some(f.clone()),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert!(
            c.to_toml()
                .contains("[metrics]\nlisten = \"127.0.0.1:9464\"")
        );
        // The flag wins over the file; a stray key is refused.
        let c = Config::load(Overrides {
            config: Some(f.clone()),
            data_dir: Some(dir.path().to_path_buf()),
            metrics_listen: Some("127.0.0.1:9999".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9999".parse().unwrap()));
        std::fs::write(
            &f,
            "[metrics]\nlisten = \"127.0.0.1:9464\"\ntoken = \"x\"\n",
        )
        .unwrap();
        let e = Config::load(Overrides {
            config: Some(f),
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("token"), "{e}");
        let off = Config::load(Overrides {
            data_dir: Some(dir.path().join("none")),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(off.metrics_listen, None);
    }
}
