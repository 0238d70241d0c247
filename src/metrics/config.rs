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
        None => "\n[metrics]\n# listen = \"127.0.0.1:9464\" (off: /metrics only with an admin token)\n"
            .into(),
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
}
