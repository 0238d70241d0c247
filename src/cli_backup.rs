//! `parley backup` and `parley restore`.
//!
//! A backup of a running node is made by the node itself (its database is locked, and under
//! systemd its state directory is not even readable by the operator): the CLI asks its API
//! with the token the node left in the data directory and writes what comes back. With the
//! node stopped, the CLI opens the data directory and writes the backup itself. Either way the
//! file is checked before it takes the name given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::{CLI_TOKEN_FILE, Global, config, open_offline};
use crate::store::StoreError;
use crate::store::backup::{self, Manifest, RestoreOptions};

fn summary(m: &Manifest, to: &Path) -> String {
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    format!(
        "backup of {} ({}, node {}) taken {}: {} conversations, {} files, {:.1} MB in {}",
        m.org_id,
        m.org_name,
        m.node_id,
        m.made_at.to_rfc3339(),
        m.conversations,
        m.files,
        bytes as f64 / 1e6,
        to.display()
    )
}

pub async fn backup(g: &Global, listen: Option<String>, to: PathBuf) -> anyhow::Result<()> {
    let cfg = config(g, None, None)?;
    crate::logging::init(&cfg.log, g.log_format);
    match open_offline(&cfg).await {
        Ok(svc) => {
            let m = svc
                .backup_to(&crate::service::Principal::operator(), to.clone())
                .await?;
            println!("{}", summary(&m, &to));
            Ok(())
        }
        Err(e)
            if e.downcast_ref::<StoreError>()
                .is_some_and(|s| matches!(s, StoreError::Locked(_))) =>
        {
            let (base, from) =
                crate::cli_peer::locate(listen, std::env::var("PARLEY_LISTEN").ok(), &cfg)?;
            let path = cfg.data_dir.join(CLI_TOKEN_FILE);
            let token = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "the node is running but its CLI token {} is not readable",
                    path.display()
                )
            })?;
            backup::check_target(&to, &cfg.data_dir)?;
            let m = download(&base, &from, token.trim(), &to).await?;
            println!("{}", summary(&m, &to));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Fetches a backup from the running node at `base` into `to`, through `<to>.partial`, and
/// checks it before renaming it into place.
async fn download(base: &str, from: &str, token: &str, to: &Path) -> anyhow::Result<Manifest> {
    let mut name = to.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    let partial = to.with_file_name(name);
    // The backup holds the node's identity key and hashed credentials: its owner only.
    let _ = std::fs::remove_file(&partial);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&partial)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let url = format!("{base}/api/v1/admin/backup");
    let got =
        crate::http_client::download_local("POST", &url, token, &mut f, Duration::from_secs(3600))
            .await;
    let result = async {
        let (status, text) = got.map_err(|e| match e {
            crate::http_client::HttpError::Connect(..) => anyhow::anyhow!(
                "the data directory is in use by a running node, but nothing answers at {base} \
                 (from {from}): {e}; give the node's address with --listen"
            ),
            e => anyhow::anyhow!("fetching the backup from the node at {base}: {e}"),
        })?;
        if !(200..300).contains(&status) {
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(String::from))
                .unwrap_or(text);
            bail!("the node refused the backup ({status}): {detail}");
        }
        f.sync_all()?;
        drop(f);
        let p = partial.clone();
        let m = tokio::task::spawn_blocking(move || backup::verify(&p))
            .await?
            .context("the backup that arrived does not check; nothing was kept")?;
        std::fs::rename(&partial, to).with_context(|| format!("cannot write {}", to.display()))?;
        Ok(m)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

pub async fn restore(g: &Global, file: PathBuf, expect_org: Option<String>) -> anyhow::Result<()> {
    let cfg = config(g, None, None)?;
    crate::logging::init(&cfg.log, g.log_format);
    let dir = cfg.data_dir.clone();
    let opts = RestoreOptions {
        expect_org,
        ..RestoreOptions::default()
    };
    let m = {
        let (file, dir) = (file.clone(), dir.clone());
        tokio::task::spawn_blocking(move || backup::restore(&file, &dir, &opts)).await??
    };
    // Opening the store rebuilds the derived indexes from the restored documents, so the
    // first `serve` starts at once. The restore itself is complete either way: a store that
    // cannot be opened now rebuilds them at its next start.
    match open_offline(&cfg).await {
        Ok(svc) => {
            let store = svc.store().clone();
            drop(svc);
            tokio::task::spawn_blocking(move || store.shutdown()).await?;
        }
        Err(e) => eprintln!(
            "the backup is restored, but its indexes could not be rebuilt now ({e:#}); \
             `parley serve` rebuilds them when it starts"
        ),
    }
    println!(
        "restored {} ({}, node {}) from the backup taken {}: {} conversations, {} files, into {}",
        m.org_id,
        m.org_name,
        m.node_id,
        m.made_at.to_rfc3339(),
        m.conversations,
        m.files,
        dir.display()
    );
    let count = |t: &str| m.tables.get(t).copied().unwrap_or(0);
    println!(
        "restored {} users, {} API tokens and {} peers as they were at the backup: revoke again any \
         token and remove again any peer that was revoked after it (open invites were dropped)",
        count("users"),
        count("tokens"),
        count("peers")
    );
    println!(
        "this node now writes as a new Automerge actor; on their first exchange, each partner's node \
         gives back what this node wrote after the backup. Start it with `parley serve`"
    );
    Ok(())
}
