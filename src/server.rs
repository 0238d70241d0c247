//! The one place that wires store, service and API together, and runs them until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};

use crate::config::Config;
use crate::service::{Clock, Service};
use crate::store::{Store, StoreOptions};

/// Opens the data directory (blocking work, off the executor) and builds the service.
pub async fn open(config: &Config, clock: Clock) -> anyhow::Result<Arc<Service>> {
    let dir = config.data_dir.clone();
    let opts = StoreOptions {
        doc_cache: config.doc_cache,
        ..StoreOptions::default()
    };
    let store = tokio::task::spawn_blocking(move || Store::open(&dir, opts))
        .await
        .context("opening the store")?
        .with_context(|| format!("opening data directory {}", config.data_dir.display()))?;
    Ok(Service::new(store, clock))
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> anyhow::Result<TcpAcceptor> {
    TcpListener::bind(config.listen)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {}: is another program using it? Use --listen to pick another address", config.listen))
}

/// Serves until `shutdown` completes, then lets requests in flight finish and drains the
/// store's writer, so every acknowledged write is on disk before this returns.
pub async fn run(
    svc: Arc<Service>,
    acceptor: TcpAcceptor,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let store = svc.store().clone();
    if svc.public_url().is_none()
        && let Some(addr) = local_addr(&acceptor)
        && !addr.ip().is_unspecified()
    {
        // Partners on this machine or network can dial the bound address; behind a proxy or on
        // 0.0.0.0, --public-url says what to advertise.
        svc.set_public_url(Some(format!("http://{addr}")));
    }
    let rep = crate::replicator::Replicator::start(svc.clone()).await?;
    // Peer links and event streams are long-lived: end them as soon as shutdown starts, so the
    // graceful wait is for ordinary requests only.
    let (rep2, closing) = (rep.clone(), svc.clone());
    let shutdown = async move {
        shutdown.await;
        closing.begin_shutdown();
        rep2.stop();
    };
    let app = crate::api::routes(svc, rep.clone());
    let result = Server::new_with_acceptor(acceptor)
        .name("parley")
        .run_with_graceful_shutdown(app, shutdown, Some(Duration::from_secs(10)))
        .await;
    tokio::task::spawn_blocking(move || store.shutdown())
        .await
        .ok();
    result.context("serving HTTP")
}

/// The address an acceptor is bound to (for `--listen 127.0.0.1:0`).
pub fn local_addr(acceptor: &TcpAcceptor) -> Option<std::net::SocketAddr> {
    acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
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
