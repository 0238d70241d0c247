//! `parley peer …`: pairing and peer management. With the node stopped these open the data
//! directory directly; while it runs (its database is locked) they call its HTTP API with the
//! token it left in the data directory, so pairing never needs a restart. The running node is
//! found at, in order: `--listen`, the listen file it wrote in its data directory (written by
//! the node holding the directory's lock, so it beats an exported variable), `PARLEY_LISTEN`,
//! the config file's `listen`, the default address.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::{CLI_TOKEN_FILE, Global, PeerCmd, RoleArg, config_with, open_offline};
use crate::config::{Config, ListenFrom};
use crate::domain::Role;
use crate::service::{InvitePreview, InviteTarget};
use crate::store::StoreError;

fn target(
    org: Option<String>,
    name: Option<String>,
    role: Option<RoleArg>,
    own_site: bool,
) -> anyhow::Result<InviteTarget> {
    Ok(match (own_site, org) {
        (true, _) => InviteTarget::OwnSite,
        (false, Some(org_id)) => InviteTarget::Partner {
            org_id,
            org_name: name,
            role: role.map(Role::from),
        },
        (false, None) => {
            bail!("say whom the invite is for: --org ID [--name NAME --role ROLE], or --own-site")
        }
    })
}

/// "this invite pairs you as X with Y", printed before pairing.
fn describe(p: &InvitePreview) -> String {
    if p.own_site {
        format!(
            "this invite pairs this node as another site of {} ({}) with its node {}",
            p.inviter_org, p.inviter_name, p.inviter_node
        )
    } else {
        format!(
            "this invite pairs this node as {} ({}, {}) with {} ({}, {})",
            p.for_org, p.for_name, p.for_role, p.inviter_org, p.inviter_name, p.inviter_role
        )
    }
}

/// Printed after a recovery pairing: what it trusts the partner with, and for how long.
const RECOVER_NOTE: &str = "recovery pairing: until the first full exchange with this node, it may give back your org's own past messages and changes to the conversations you share with it, and they are taken as yours; after that the normal rules apply again";

fn invite_hint() -> &'static str {
    "on the other node run: parley peer add CODE"
}

pub async fn run(g: &Global, listen: Option<String>, cmd: PeerCmd) -> anyhow::Result<()> {
    let public_url = match &cmd {
        PeerCmd::Invite { public_url, .. } | PeerCmd::Add { public_url, .. } => public_url.clone(),
        _ => None,
    };
    let cfg = config_with(g, None, None, public_url, Default::default())?;
    match open_offline(&cfg).await {
        Ok(svc) => {
            svc.set_public_url(cfg.advertised_url());
            if cfg.tls_listen.is_some() {
                // Invites made while the node is stopped carry its certificate too.
                let c = crate::tls::load_or_create(
                    &cfg.data_dir,
                    cfg.tls_cert.as_deref(),
                    cfg.tls_key.as_deref(),
                )?;
                svc.set_tls_fingerprint(Some(c.fingerprint));
            }
            match cmd {
                PeerCmd::Invite {
                    org,
                    name,
                    role,
                    own_site,
                    ..
                } => {
                    let t = target(org, name, role, own_site)?;
                    let (code, expires) = svc
                        .create_invite(&crate::service::Principal::operator(), t)
                        .await?;
                    eprintln!("invite valid until {expires}; {}", invite_hint());
                    println!("{code}");
                }
                PeerCmd::Add { code, recover, .. } => {
                    let (_, preview) = svc
                        .inspect_invite(&crate::service::Principal::operator(), &code)
                        .await?;
                    eprintln!("{}", describe(&preview));
                    let p = svc
                        .pair(&crate::service::Principal::operator(), &code, recover)
                        .await?;
                    println!(
                        "paired with {} ({}, node {})",
                        p.org_id, p.org_name, p.node_id
                    );
                    if recover {
                        eprintln!("{}", RECOVER_NOTE);
                    }
                }
                PeerCmd::List => {
                    for p in svc.peers().await? {
                        let last = p
                            .last_sync_at
                            .map(|t| t.to_rfc3339())
                            .unwrap_or_else(|| "never".into());
                        println!(
                            "{}\t{}\t{}\tstopped\tlast sync {last}",
                            p.node_id,
                            p.org_id,
                            p.url.unwrap_or_default()
                        );
                    }
                }
                PeerCmd::Remove { node_id } => {
                    svc.remove_peer(&crate::service::Principal::operator(), node_id)
                        .await?;
                    println!("removed peer {node_id}");
                }
            }
            Ok(())
        }
        Err(e)
            if e.downcast_ref::<StoreError>()
                .is_some_and(|s| matches!(s, StoreError::Locked(_))) =>
        {
            let (base, from) = locate(listen, std::env::var("PARLEY_LISTEN").ok(), &cfg)?;
            remote(&cfg, &base, &from, cmd).await
        }
        Err(e) => Err(e),
    }
}

/// The running node's base URL and where it was found, for `--listen` (`flag`) and
/// `PARLEY_LISTEN` (`env`). The listen file is written by the node that holds this data
/// directory's lock, so it is the truth about where that node listens: it comes right after
/// the flag, before an exported `PARLEY_LISTEN` that may be left over from another node
/// (which would then receive this node's token). Order: flag, listen file, `PARLEY_LISTEN`,
/// the config file, the default; an address with port 0 says nothing and is skipped.
pub(crate) fn locate(
    flag: Option<String>,
    env: Option<String>,
    cfg: &Config,
) -> anyhow::Result<(String, String)> {
    let file = cfg.data_dir.join(crate::server::LISTEN_FILE);
    let from_file = match std::fs::read_to_string(&file) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!(
            "cannot read {}: {e}; give the node's address with --listen",
            file.display()
        ),
    };
    let from_config = match (cfg.listen_from, &cfg.file) {
        (ListenFrom::File, Some(path)) => format!("listen in {}", path.display()),
        _ => "the default address".to_string(),
    };
    let candidates = [
        (flag, "--listen".to_string()),
        (from_file, format!("the listen file {}", file.display())),
        (env, "PARLEY_LISTEN".to_string()),
        (Some(cfg.listen.to_string()), from_config),
    ];
    for (value, from) in candidates {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let base = base_url(value.trim()).with_context(|| format!("{value:?} (from {from})"))?;
        if let Some(base) = base {
            return Ok((base, from));
        }
    }
    bail!("the running node's address is not known (port 0); give it with --listen")
}

/// `IP:PORT` or an `http(s)://` URL, as a base URL; `None` for port 0 (not an address one
/// can dial). An unspecified IP (`0.0.0.0`, `::`) means every address of this machine, so
/// it is dialled as loopback.
fn base_url(v: &str) -> anyhow::Result<Option<String>> {
    if let Some((scheme, rest)) = v.split_once("://")
        && (scheme == "http" || scheme == "https")
    {
        let rest = rest.trim_end_matches('/');
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (authority, None),
        };
        if port == Some("0") {
            return Ok(None);
        }
        let host = match host {
            "0.0.0.0" => "127.0.0.1",
            "[::]" => "[::1]",
            h => h,
        };
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        return Ok(Some(format!("{scheme}://{host}{port}{path}")));
    }
    let mut a: std::net::SocketAddr = v
        .parse()
        .map_err(|_| anyhow::anyhow!("is not an address: use IP:PORT or http://HOST:PORT"))?;
    if a.port() == 0 {
        return Ok(None);
    }
    if a.ip().is_unspecified() {
        a.set_ip(if a.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Ok(Some(format!("http://{a}")))
}

/// The same commands against the running node's API at `base` (found at `from`).
async fn remote(cfg: &Config, base: &str, from: &str, cmd: PeerCmd) -> anyhow::Result<()> {
    let path = cfg.data_dir.join(CLI_TOKEN_FILE);
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the node is running but its CLI token {} is not readable",
            path.display()
        )
    })?;
    let auth = token.trim().to_string();
    let call = |method: &'static str, p: String, body: Option<Value>| {
        let (auth, base, from) = (auth.clone(), base.to_string(), from.to_string());
        async move {
            let (status, text) = crate::http_client::request(
                method,
                &format!("{base}/api/v1{p}"),
                Some(&auth),
                body.as_ref(),
                crate::http_client::Dest::Local,
            )
            .await
            .with_context(|| {
                format!(
                    "the data directory is in use by a running node, but nothing answers at {base} \
                     (from {from}); give the node's address with --listen"
                )
            })?;
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            if !(200..300).contains(&status) {
                bail!(
                    "{}",
                    v["detail"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| v.to_string())
                );
            }
            Ok::<Value, anyhow::Error>(v)
        }
    };
    match cmd {
        PeerCmd::Invite {
            org,
            name,
            role,
            own_site,
            ..
        } => {
            let body = match target(org, name, role, own_site)? {
                InviteTarget::OwnSite => json!({ "own_site": true }),
                InviteTarget::Partner {
                    org_id,
                    org_name,
                    role,
                } => json!({ "org_id": org_id, "org_name": org_name, "role": role }),
            };
            let v = call("POST", "/peers/invites".into(), Some(body)).await?;
            eprintln!(
                "invite valid until {}; {}",
                v["expires_at"].as_str().unwrap_or("?"),
                invite_hint()
            );
            println!("{}", v["code"].as_str().unwrap_or_default());
        }
        PeerCmd::Add { code, recover, .. } => {
            let pv = call(
                "POST",
                "/peers/invites/inspect".into(),
                Some(json!({ "code": code })),
            )
            .await?;
            if let Ok(preview) = serde_json::from_value::<InvitePreview>(pv.clone()) {
                eprintln!("{}", describe(&preview));
            }
            let p = call(
                "POST",
                "/peers".into(),
                Some(json!({ "code": code, "recover": recover })),
            )
            .await?;
            println!(
                "paired with {} ({}, node {})",
                p["org_id"].as_str().unwrap_or("?"),
                p["org_name"].as_str().unwrap_or("?"),
                p["node_id"].as_str().unwrap_or("?")
            );
            if recover {
                eprintln!("{RECOVER_NOTE}");
            }
        }
        PeerCmd::List => {
            let v = call("GET", "/peers".into(), None).await?;
            for p in v.as_array().into_iter().flatten() {
                let state = if p["connected"] == true {
                    "connected".to_string()
                } else if p["stopped"] == true {
                    format!(
                        "stopped dialing: {}",
                        p["last_error"].as_str().unwrap_or("?")
                    )
                } else {
                    "disconnected".to_string()
                };
                let last = p["last_sync_at"].as_str().unwrap_or("never");
                let pending = p["pending"]
                    .as_u64()
                    .map(|n| format!("\t{n} waiting"))
                    .unwrap_or_default();
                println!(
                    "{}\t{}\t{}\t{state}\tlast sync {last}{pending}",
                    p["node_id"].as_str().unwrap_or("?"),
                    p["org_id"].as_str().unwrap_or("?"),
                    p["url"].as_str().unwrap_or("")
                );
            }
        }
        PeerCmd::Remove { node_id } => {
            call("DELETE", format!("/peers/{node_id}"), None).await?;
            println!("removed peer {node_id}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path, toml: Option<&str>) -> Config {
        if let Some(t) = toml {
            std::fs::write(dir.join(crate::config::CONFIG_FILE), t).unwrap();
        }
        Config::load(crate::config::Overrides {
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        })
        .unwrap()
    }

    /// Flag, then the listen file, then PARLEY_LISTEN, then the config file, then the
    /// default; each answer says where it came from, and port 0 is skipped.
    #[test]
    fn the_running_node_is_looked_for_in_order() {
        let d = tempfile::tempdir().unwrap();
        let c = cfg(d.path(), None);
        let (url, from) = locate(None, None, &c).unwrap();
        assert_eq!(
            (url.as_str(), from.as_str()),
            ("http://127.0.0.1:7878", "the default address")
        );
        let c = cfg(d.path(), Some("listen = \"0.0.0.0:7001\"\n"));
        let (url, from) = locate(None, None, &c).unwrap();
        assert_eq!(url, "http://127.0.0.1:7001");
        assert!(from.contains("parley.toml"), "{from}");
        let (url, from) = locate(None, Some("127.0.0.1:7003".into()), &c).unwrap();
        assert_eq!(
            (url.as_str(), from.as_str()),
            ("http://127.0.0.1:7003", "PARLEY_LISTEN")
        );
        // The node's own file wins over a variable that may be left from another node.
        std::fs::write(d.path().join("listen"), "127.0.0.1:7002\n").unwrap();
        let (url, from) = locate(None, Some("127.0.0.1:7003".into()), &c).unwrap();
        assert_eq!(url, "http://127.0.0.1:7002");
        assert!(from.contains("listen file"), "{from}");
        let (url, from) = locate(
            Some("http://[::1]:7004/".into()),
            Some("127.0.0.1:7003".into()),
            &c,
        )
        .unwrap();
        assert_eq!(
            (url.as_str(), from.as_str()),
            ("http://[::1]:7004", "--listen")
        );
        // Port 0 is not an address: the next source answers.
        std::fs::write(d.path().join("listen"), "127.0.0.1:0\n").unwrap();
        let (url, from) = locate(Some("http://127.0.0.1:0".into()), None, &c).unwrap();
        assert_eq!(url, "http://127.0.0.1:7001");
        assert!(from.contains("parley.toml"), "{from}");
        // Every address of the machine is dialled as loopback.
        for (given, want) in [
            ("0.0.0.0:7005", "http://127.0.0.1:7005"),
            ("[::]:7005", "http://[::1]:7005"),
            ("http://0.0.0.0:7005/", "http://127.0.0.1:7005"),
            ("http://[::]:7005", "http://[::1]:7005"),
        ] {
            assert_eq!(locate(Some(given.into()), None, &c).unwrap().0, want);
        }
        let c0 = cfg(d.path(), Some("listen = \"127.0.0.1:0\"\n"));
        let e = locate(None, Some("0.0.0.0:0".into()), &c0).unwrap_err();
        assert!(format!("{e:#}").contains("--listen"), "{e:#}");
        let e = locate(Some("seven".into()), None, &c).unwrap_err();
        assert!(
            format!("{e:#}").contains("--listen") && format!("{e:#}").contains("IP:PORT"),
            "{e:#}"
        );
    }
}
