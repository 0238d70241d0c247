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
    let closing = svc.clone();
    let shutdown = async move {
        shutdown.await;
        closing.begin_shutdown();
    };
    let app = crate::api::routes(svc);
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

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
