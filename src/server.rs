//! The one place that wires store, service and API together, and runs them until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::Server;
use std::net::SocketAddr;

use poem::listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, TcpListener};

use crate::config::Config;
use crate::service::{Clock, Service};
use crate::store::{Store, StoreOptions};

pub mod fdlimit;

/// Opens the data directory (blocking work, off the executor) and builds the service.
pub async fn open(config: &Config, clock: Clock) -> anyhow::Result<Arc<Service>> {
    let dir = config.data_dir.clone();
    let opts = StoreOptions {
        doc_cache: config.doc_cache,
        peer_quota_bytes_per_day: config.peer_quota_bytes_per_day,
        attachments: config.attachments.clone(),
        disk_reserve: config.disk_reserve,
        ..StoreOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, opts))
        .await
        .context("opening the store")?
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    let svc = Service::new(store, clock);
    svc.set_allow_loopback_peers(config.allow_loopback_peers);
    svc.set_signin_window(config.signin_window);
    svc.set_notify_config(config.email.clone(), config.webhooks.clone());
    svc.set_backup_schedule(config.backup.clone());
    Ok(svc)
}

/// The bound listeners: plain HTTP on `listen`, and with `tls_listen` HTTPS for peers.
pub struct Bound {
    acceptor: BoxAcceptor,
    timeouts: crate::config::Timeouts,
    http: SocketAddr,
    https: Option<SocketAddr>,
    fingerprint: Option<String>,
    data_dir: std::path::PathBuf,
    /// The separate `/metrics` listener (`[metrics] listen`), if configured.
    metrics: Option<(BoxAcceptor, SocketAddr)>,
    /// Admission of peer links (`[sync]`).
    sync: crate::replicator::admission::Limits,
}

impl Bound {
    /// The HTTPS address, when the node serves peers over TLS.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.https
    }

    /// Where `/metrics` is served without a token, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|m| m.1)
    }

    /// Fingerprint of the certificate served there.
    pub fn tls_fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }
}

/// Binds the configured addresses, and records the plain one in the listen file before
/// anyone is told the node listens.
pub async fn bind(config: &Config) -> anyhow::Result<Bound> {
    let plain = TcpListener::bind(config.listen)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}: is another program using it? Use --listen to pick another address", config.listen))?;
    let http = first_addr(&plain).context("the listener has no address")?;
    // Without the file the node still serves; only a CLI without --listen cannot find it.
    if let Err(e) = write_listen_file(&config.data_dir.join(LISTEN_FILE), http) {
        tracing::warn!(error = %format!("{e:#}"), "the CLI will not find this node by its data directory");
    }
    let metrics = match config.metrics_listen {
        None => None,
        Some(addr) => {
            let a = TcpListener::bind(addr).into_acceptor().await.with_context(|| {
                format!("cannot serve metrics on {addr}: is another program using it? Change [metrics] listen or --metrics-listen")
            })?;
            let bound = first_addr(&a).context("the metrics listener has no address")?;
            Some((a.boxed(), bound))
        }
    };
    let Some(tls_listen) = config.tls_listen else {
        return Ok(Bound {
            acceptor: plain.boxed(),
            timeouts: config.timeouts,
            http,
            https: None,
            fingerprint: None,
            data_dir: config.data_dir.clone(),
            metrics,
            sync: config.sync,
        });
    };
    let (dir, cert, key) = (
        config.data_dir.clone(),
        config.tls_cert.clone(),
        config.tls_key.clone(),
    );
    let node_cert = tokio::task::spawn_blocking(move || {
        crate::tls::load_or_create(&dir, cert.as_deref(), key.as_deref())
    })
    .await
    .context("loading the TLS certificate")??;
    let secure = tls_acceptor(tls_listen, &node_cert).await?;
    let https = first_addr(&secure).context("the TLS listener has no address")?;
    Ok(Bound {
        acceptor: plain.combine(secure).boxed(),
        timeouts: config.timeouts,
        http,
        https: Some(https),
        fingerprint: Some(node_cert.fingerprint),
        data_dir: config.data_dir.clone(),
        metrics,
        sync: config.sync,
    })
}

#[cfg(feature = "tls")]
async fn tls_acceptor(
    addr: SocketAddr,
    cert: &crate::tls::NodeCert,
) -> anyhow::Result<BoxAcceptor> {
    use poem::listener::{RustlsCertificate, RustlsConfig};
    let config = RustlsConfig::new().fallback(
        RustlsCertificate::new()
            .cert(cert.cert_pem.clone())
            .key(cert.key_pem.clone()),
    );
    let acceptor = TcpListener::bind(addr)
        .rustls(config)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot serve TLS on {addr}: is the address in use, or the certificate or key unreadable?"))?;
    Ok(acceptor.boxed())
}

#[cfg(not(feature = "tls"))]
async fn tls_acceptor(
    _addr: SocketAddr,
    _cert: &crate::tls::NodeCert,
) -> anyhow::Result<BoxAcceptor> {
    Err(crate::tls::TlsError::NotBuilt("serve peers over TLS").into())
}

fn first_addr(a: &impl Acceptor) -> Option<SocketAddr> {
    a.local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
}

/// Serves until `shutdown` completes, then lets requests in flight finish and drains the
/// store's writer, so every acknowledged write is on disk before this returns.
pub async fn run(
    svc: Arc<Service>,
    bound: Bound,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    fdlimit::raise();
    let store = svc.store().clone();
    svc.set_tls_fingerprint(bound.fingerprint.clone());
    if svc.public_url().is_none() {
        // Partners on this machine or network can dial the bound address; behind a proxy or on
        // 0.0.0.0, --public-url says what to advertise. A node serving TLS advertises that.
        let advertised = match bound.https {
            Some(a) => (!a.ip().is_unspecified()).then(|| format!("https://{a}")),
            None => (!bound.http.ip().is_unspecified()).then(|| format!("http://{}", bound.http)),
        };
        svc.set_public_url(advertised);
    }
    let rep = crate::replicator::Replicator::start(svc.clone(), bound.sync).await?;
    crate::notify::start(svc.clone());
    tokio::spawn(crate::service::sweep_unattached(svc.clone()));
    tokio::spawn(crate::service::compact::run_compactor(svc.clone()));
    if let Some(s) = svc.backup_schedule() {
        tokio::spawn(crate::service::backup::run_schedule(svc.clone(), s));
    }
    // Peer links and event streams are long-lived: end them as soon as shutdown starts, so the
    // graceful wait is for ordinary requests only.
    let (rep2, closing) = (rep.clone(), svc.clone());
    let shutdown = async move {
        shutdown.await;
        crate::systemd::stopping();
        closing.begin_shutdown();
        rep2.stop();
    };
    if let Some((acceptor, _)) = bound.metrics {
        // Ends with the node: when shutdown starts, as the main listener does.
        let mut closing = svc.closing();
        let app = crate::api::metrics_routes(svc.clone(), rep.clone());
        tokio::spawn(async move {
            let stop =
                async move { while closing.changed().await.is_ok() && !*closing.borrow() {} };
            let r = Server::new_with_acceptor(acceptor)
                .name("parley-metrics")
                .run_with_graceful_shutdown(app, stop, Some(Duration::from_secs(2)))
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "the metrics listener stopped");
            }
        });
    }
    let app = crate::api::routes(svc, rep.clone(), bound.timeouts.body);
    let listen_file = bound.data_dir.join(LISTEN_FILE);
    // Slow clients: heads are timed per connection, bodies per request, and a connection
    // with no traffic either way (idle keep-alive, a stalled upload) is closed.
    let acceptor = crate::api::timeouts::HeadTimeoutAcceptor {
        inner: bound.acceptor,
        timeout: bound.timeouts.header,
    };
    let status = match bound.https {
        Some(a) => format!("serving on http://{} and https://{a}", bound.http),
        None => format!("serving on http://{}", bound.http),
    };
    let serving = Server::new_with_acceptor(acceptor)
        .name("parley")
        .idle_timeout(bound.timeouts.idle)
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)));
    // Every listener is bound (connections already queue in their backlogs), the store is
    // open and the replicator runs: the first poll of `serving` starts accepting.
    crate::systemd::ready(&status);
    let result = serving.await;
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .ok();
    remove_listen_file(&listen_file, bound.http);
    result.context("serving HTTP")
}

/// The file in the data directory that says where the running node listens (`IP:PORT` and a
/// newline), for the CLI on this machine: the address actually bound, so `--listen
/// 127.0.0.1:0` is found as well as any other.
pub const LISTEN_FILE: &str = "listen";

/// Writes the listen file whole or not at all: a reader never sees half an address.
fn write_listen_file(path: &std::path::Path, addr: SocketAddr) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| {
            format!(
                "writing {}: is the data directory writable?",
                path.display()
            )
        })
}

/// On a clean stop the file goes, unless another node on this data directory wrote it since.
fn remove_listen_file(path: &std::path::Path, addr: SocketAddr) {
    let ours = std::fs::read_to_string(path).is_ok_and(|s| s.trim() == addr.to_string());
    if ours && let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(file = %path.display(), error = %e, "could not remove the listen file");
    }
}

/// The plain HTTP address the node is bound to (for `--listen 127.0.0.1:0`).
pub fn local_addr(bound: &Bound) -> Option<SocketAddr> {
    Some(bound.http)
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that arrives while the node is still starting is
/// not lost to the default action (which would kill the process without a clean stop).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut int, mut term) = handlers;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let (i, t) = (int.take(), term.take());
            tokio::select! {
                _ = wait(i) => {},
                _ = wait(t) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
