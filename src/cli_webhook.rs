//! `parley webhook …`: webhook endpoints. Like `parley peer`, with the node stopped these
//! open the data directory directly; while it runs they call its HTTP API with the token it
//! left in the data directory (found as `cli_peer::locate` says). Both paths print from the
//! API's JSON shape, so the output is the same either way.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::cli::{CLI_TOKEN_FILE, Global, config_with, open_offline};
use crate::service::{Delivery, Principal, Service, Webhook};
use crate::store::StoreError;

/// `parley webhook …`, and where the running node is when it runs.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// The running node's address (IP:PORT or http://HOST:PORT); found as for `parley peer`
    /// when left out.
    #[arg(long = "listen", global = true)]
    pub listen: Option<String>,
    #[command(subcommand)]
    pub cmd: WebhookCmd,
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCmd {
    /// Add an endpoint; prints its id and its secret (shown once).
    Add {
        url: String,
        /// Event types, comma-separated, e.g. message.created,conversation.resolved.
        #[arg(long, value_delimiter = ',', required = true)]
        events: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List endpoints with their state and waiting deliveries.
    List,
    /// Remove an endpoint with its waiting deliveries and log.
    Remove { id: Uuid },
    /// Queue a `webhook.test` delivery now.
    Test { id: Uuid },
    /// Give an endpoint a new secret (shown once); the old one signs beside it for a while.
    Rotate { id: Uuid },
    /// Take a disabled endpoint back into service.
    Enable { id: Uuid },
    /// An endpoint's deliveries, newest first.
    Deliveries {
        id: Uuid,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

pub async fn run(g: &Global, listen: Option<String>, cmd: WebhookCmd) -> anyhow::Result<()> {
    let cfg = config_with(g, None, None, None, Default::default())?;
    let v = match open_offline(&cfg).await {
        Ok(svc) => offline(&svc, cmd.clone()).await?,
        Err(e)
            if e.downcast_ref::<StoreError>()
                .is_some_and(|s| matches!(s, StoreError::Locked(_))) =>
        {
            let (base, from) =
                crate::cli_peer::locate(listen, std::env::var("PARLEY_LISTEN").ok(), &cfg)?;
            remote(&cfg, &base, &from, &cmd).await?
        }
        Err(e) => return Err(e),
    };
    print(&cmd, &v);
    Ok(())
}

fn hook_json(w: Webhook) -> Value {
    json!({
        "id": w.id, "url": w.url, "events": w.events, "description": w.description,
        "created_at": w.created_at, "created_by": w.created_by,
        "disabled": w.disabled.map(|d| json!({"at": d.at, "reason": d.reason})),
        "failing_since": w.failing_since, "pending": w.pending,
    })
}

fn delivery_json(d: Delivery) -> Value {
    json!({
        "msg_id": d.msg_id, "event_type": d.event_type, "conversation_id": d.conversation,
        "status": d.status, "attempts": d.attempts, "last_status_code": d.last_status_code,
        "last_error": d.last_error, "created_at": d.created_at,
        "last_attempt_at": d.last_attempt_at,
    })
}

/// The command against the data directory, as the operator; answers what the API would.
async fn offline(svc: &Service, cmd: WebhookCmd) -> anyhow::Result<Value> {
    let op = Principal::operator();
    Ok(match cmd {
        WebhookCmd::Add {
            url,
            events,
            description,
        } => {
            let (w, secret) = svc.add_webhook(&op, &url, events, description).await?;
            let mut v = hook_json(w);
            v["secret"] = json!(secret);
            v
        }
        WebhookCmd::List => {
            let all = svc.webhooks(&op).await?;
            json!({"webhooks": all.into_iter().map(hook_json).collect::<Vec<_>>()})
        }
        WebhookCmd::Remove { id } => {
            svc.remove_webhook(&op, id).await?;
            Value::Null
        }
        WebhookCmd::Test { id } => json!({"msg_id": svc.test_webhook(&op, id).await?}),
        WebhookCmd::Rotate { id } => {
            let r = svc.rotate_webhook(&op, id).await?;
            json!({"secret": r.secret, "previous_expires_at": r.previous_expires_at})
        }
        WebhookCmd::Enable { id } => hook_json(svc.enable_webhook(&op, id).await?),
        WebhookCmd::Deliveries { id, limit } => {
            let d = svc
                .webhook_deliveries(
                    &op,
                    id,
                    limit.clamp(1, crate::service::MAX_LOG as u32) as usize,
                )
                .await?;
            json!({"deliveries": d.into_iter().map(delivery_json).collect::<Vec<_>>()})
        }
    })
}

/// The same command against the running node's API.
async fn remote(
    cfg: &crate::config::Config,
    base: &str,
    from: &str,
    cmd: &WebhookCmd,
) -> anyhow::Result<Value> {
    let path = cfg.data_dir.join(CLI_TOKEN_FILE);
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "the node is running but its CLI token {} is not readable",
            path.display()
        )
    })?;
    let (method, p, body) = match cmd {
        WebhookCmd::Add {
            url,
            events,
            description,
        } => (
            "POST",
            "/webhooks".to_string(),
            Some(json!({"url": url, "events": events, "description": description})),
        ),
        WebhookCmd::List => ("GET", "/webhooks".into(), None),
        WebhookCmd::Remove { id } => ("DELETE", format!("/webhooks/{id}"), None),
        WebhookCmd::Test { id } => ("POST", format!("/webhooks/{id}/test"), Some(json!({}))),
        WebhookCmd::Rotate { id } => ("POST", format!("/webhooks/{id}/rotate"), Some(json!({}))),
        WebhookCmd::Enable { id } => ("POST", format!("/webhooks/{id}/enable"), Some(json!({}))),
        WebhookCmd::Deliveries { id, limit } => (
            "GET",
            format!("/webhooks/{id}/deliveries?limit={limit}"),
            None,
        ),
    };
    let (status, text) = crate::http_client::request(
        method,
        &format!("{base}/api/v1{p}"),
        Some(token.trim()),
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
    let v: Value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    if !(200..300).contains(&status) {
        bail!(
            "{}",
            v["detail"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string())
        );
    }
    Ok(v)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn print(cmd: &WebhookCmd, v: &Value) {
    match cmd {
        WebhookCmd::Add { .. } => {
            println!("id\t{}\nsecret\t{}", s(&v["id"]), s(&v["secret"]));
            eprintln!("store the secret now: it is not shown again");
        }
        WebhookCmd::List => {
            for w in v["webhooks"].as_array().into_iter().flatten() {
                let state = if w["disabled"].is_object() {
                    format!("disabled: {}", s(&w["disabled"]["reason"]))
                } else if w["failing_since"].is_string() {
                    format!("failing since {}", s(&w["failing_since"]))
                } else {
                    "active".into()
                };
                let events: Vec<&str> = w["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                println!(
                    "{}\t{}\t{}\t{} waiting\t{state}",
                    s(&w["id"]),
                    s(&w["url"]),
                    events.join(","),
                    w["pending"].as_u64().unwrap_or(0)
                );
            }
        }
        WebhookCmd::Remove { id } => println!("removed webhook {id}"),
        WebhookCmd::Test { id } => println!(
            "queued test event {}; `parley webhook deliveries {id}` shows how it went",
            s(&v["msg_id"])
        ),
        WebhookCmd::Rotate { .. } => {
            println!("secret\t{}", s(&v["secret"]));
            match v["previous_expires_at"].as_str() {
                Some(t) => eprintln!("the previous secret signs beside it until {t}"),
                None => eprintln!("there was no previous secret still valid"),
            }
        }
        WebhookCmd::Enable { id } => println!("enabled webhook {id}"),
        WebhookCmd::Deliveries { .. } => {
            for d in v["deliveries"].as_array().into_iter().flatten() {
                let code = d["last_status_code"]
                    .as_u64()
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\t{}\t{}\t{} attempts\t{code}\t{}",
                    s(&d["created_at"]),
                    s(&d["msg_id"]),
                    s(&d["event_type"]),
                    s(&d["status"]),
                    d["attempts"].as_u64().unwrap_or(0),
                    s(&d["last_error"])
                );
            }
        }
    }
}
