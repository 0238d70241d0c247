//! `parley email test ADDRESS`: one mail through the configured SMTP server, and its answer.

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum EmailCmd {
    /// Send one test mail to ADDRESS through the configured SMTP server and print the
    /// server's answer. Works whether or not the node runs.
    Test { address: String },
}

pub async fn run(cfg: &Config, cmd: EmailCmd) -> anyhow::Result<()> {
    match cmd {
        EmailCmd::Test { address } => {
            let to =
                crate::domain::notify::check_email(&address).map_err(|e| anyhow::anyhow!("{e}"))?;
            let smtp = cfg.email.smtp.as_ref().context(
                "no SMTP server is configured: set smtp_host in the [email] table of parley.toml (or PARLEY_SMTP_HOST)",
            )?;
            let server = format!("{}:{} ({})", smtp.host, smtp.port, smtp.security.as_str());
            match crate::notify::send_test(&cfg.email, &to, "this node").await {
                Ok(answer) => {
                    println!("sent to {to} through {server}; the server answered: {answer}");
                    Ok(())
                }
                Err(e) => Err(anyhow::anyhow!("not sent to {to} through {server}: {e}")),
            }
        }
    }
}
