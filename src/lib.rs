//! Parley: an offline-first conversations server for retail trading partners.
//!
//! Layers, each depending only on the ones after it: `api` / `cli` → `service` → `store` →
//! `domain`. `server` wires them; `config` is read once at the edge.

pub mod api;
pub mod cli;
mod cli_backup;
mod cli_email;
mod cli_peer;
mod cli_webhook;
pub mod config;
pub mod domain;
pub mod http_client;
pub mod logging;
pub mod malloc;
pub mod metrics;
pub mod notify;
pub mod replicator;
pub mod server;
pub mod service;
pub mod store;
pub mod systemd;
pub mod tls;
