//! Command-line interface. Every option is also a `PARLEY_*` environment variable.
//! Commands other than `serve` open the data directory directly, so they need the node to be
//! stopped; against a running node they say so and point to the HTTP API.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::config::{Config, Overrides};
use crate::domain::Role;
use crate::service::{Clock, NewToken, Service};
use crate::store::check::Pages;

/// `parley --version`: the release, and the versions it reads and speaks (kept equal to
/// `store::SCHEMA_VERSION` and the link protocols by a test below).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nstore schema 1 (reads 1 and older)",
    "\nsync protocols parley-sync.2, parley-sync.1"
);

#[derive(Debug, Parser)]
#[command(
    name = "parley",
    version,
    long_version = LONG_VERSION,
    about = "Offline-first conversations between retailers and suppliers"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Data directory (created on first start).
    #[arg(long, global = true, env = "PARLEY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config file (default: parley.toml in the data directory, if present).
    #[arg(long, global = true, env = "PARLEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log filter, e.g. info or parley=debug.
    #[arg(long, global = true, env = "PARLEY_LOG")]
    pub log: Option<String>,
    /// Log lines as readable text or as one JSON object per line (for a log shipper).
    #[arg(
        long,
        global = true,
        env = "PARLEY_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    pub log_format: crate::logging::LogFormat,
    /// Let peers have loopback addresses (127.0.0.1, localhost): only when every node runs on
    /// this machine.
    #[arg(long, global = true, env = "PARLEY_ALLOW_LOOPBACK_PEERS", num_args = 0..=1,
          default_missing_value = "true", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_loopback_peers: Option<bool>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Retailer,
    Supplier,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Retailer => Role::Retailer,
            RoleArg::Supplier => Role::Supplier,
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct IdentityArgs {
    /// This node's org id, e.g. acme-retail (a-z, 0-9, '-', '_', '.').
    #[arg(long, env = "PARLEY_ORG_ID")]
    pub org_id: Option<String>,
    /// This node's org name, e.g. "Acme Retail".
    #[arg(long, env = "PARLEY_ORG_NAME")]
    pub org_name: Option<String>,
    /// Whether this org is a retailer or a supplier.
    #[arg(long, env = "PARLEY_ROLE")]
    pub role: Option<RoleArg>,
}

/// Serving peers over TLS (needs a build with `--features tls`).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Also serve HTTPS here, for partners' nodes, e.g. 0.0.0.0:7879; invites then carry the
    /// certificate's fingerprint and partners pin it.
    #[arg(long, env = "PARLEY_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// Certificate (PEM) to serve it with; default: one made on first start in DATA_DIR/tls.
    #[arg(long, env = "PARLEY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "PARLEY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node: HTTP API (and web UI) on --listen.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "PARLEY_LISTEN")]
        listen: Option<String>,
        /// Conversations kept loaded in memory by the writer.
        #[arg(long, env = "PARLEY_DOC_CACHE")]
        doc_cache: Option<usize>,
        /// The address partners' nodes dial, e.g. `http://parley.example.net:7878`.
        #[arg(long, env = "PARLEY_PUBLIC_URL")]
        public_url: Option<String>,
        #[command(flatten)]
        tls: TlsArgs,
        /// Also serve `/metrics` here without a token, for a local Prometheus, e.g.
        /// 127.0.0.1:9464 (off unless set; the main listener serves it to admins).
        #[arg(long, env = "PARLEY_METRICS_LISTEN")]
        metrics_listen: Option<String>,
        /// On first start: the identity to create.
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Set this node's identity and create the first admin user and API token.
    Init {
        #[command(flatten)]
        identity: IdentityArgs,
    },
    /// Manage local users.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Manage partner orgs.
    #[command(subcommand)]
    Partner(PartnerCmd),
    /// Pair with other nodes and manage them (works while the node runs).
    Peer(PeerArgs),
    /// Webhook endpoints for integrations (works while the node runs).
    Webhook(crate::cli_webhook::WebhookArgs),
    /// Mail: send a test mail through the configured SMTP server.
    #[command(subcommand)]
    Email(crate::cli_email::EmailCmd),
    /// Print the effective configuration as TOML.
    PrintConfig {
        #[arg(long, env = "PARLEY_LISTEN")]
        listen: Option<String>,
    },
    /// Check that every index agrees with the documents; --repair rebuilds the indexes.
    Check {
        #[arg(long)]
        repair: bool,
    },
    /// Write a checked backup of this node to FILE: from one consistent snapshot, while the
    /// node runs (it is asked over HTTP) or not.
    Backup {
        /// Where to write it; an existing file is replaced only by a whole, checked backup.
        #[arg(long)]
        to: PathBuf,
        /// The running node's address (default: the listen file in the data directory).
        #[arg(long = "listen", visible_alias = "url")]
        listen: Option<String>,
    },
    /// Restore a backup into an empty data directory. The restored node writes as a new
    /// Automerge actor, and each partner's node gives back, once, what it wrote after the
    /// backup.
    Restore {
        /// The backup file (`parley backup --to FILE`).
        file: PathBuf,
        /// Refuse a backup of any other org.
        #[arg(long, env = "PARLEY_ORG_ID")]
        expect_org: Option<String>,
    },
    /// Print a completion script for a shell, e.g. `source <(parley completions bash)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Import topic records (orders, items, returns, …) from a CSV file with a header naming
    /// kind, ref and title (url and other columns optional). All or nothing.
    Import {
        /// The CSV file; `-` reads standard input.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Add a user who signs in with a password (read from the terminal or --password-stdin).
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token and print it (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Act as this existing user (default: an integration user named like the token).
        #[arg(long)]
        user: Option<String>,
    },
    /// List tokens (not their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum PartnerCmd {
    /// Add a partner org.
    Add {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: RoleArg,
    },
    /// List partners.
    List,
}

/// `parley peer …`, and where the running node is when it runs.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The running node's address (IP:PORT or http://HOST:PORT). Default: PARLEY_LISTEN,
    /// then the `listen` file the node writes in its data directory, then the config file's
    /// listen, then 127.0.0.1:7878.
    #[arg(long = "listen", visible_alias = "url", global = true)]
    pub listen: Option<String>,
    #[command(subcommand)]
    pub cmd: PeerCmd,
}

#[derive(Debug, Subcommand)]
pub enum PeerCmd {
    /// Print a one-time invite code (valid 24 h) for a node of one partner org, or (with
    /// --own-site) for another site of this node's org. Only a node of exactly that org can
    /// use it.
    Invite {
        /// The partner org the invite is for, e.g. bolt-supply.
        #[arg(
            long,
            required_unless_present = "own_site",
            conflicts_with = "own_site"
        )]
        org: Option<String>,
        /// The partner org's name (needed for a new partner; default: the known partner's).
        #[arg(long, requires = "org")]
        name: Option<String>,
        /// The partner org's role (needed for a new partner).
        #[arg(long, value_enum, requires = "org")]
        role: Option<RoleArg>,
        /// The invite is for another site of this node's own org.
        #[arg(long)]
        own_site: bool,
        /// The address other nodes dial to reach this one (default: from the config).
        #[arg(long, env = "PARLEY_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Pair with the node that printed CODE.
    Add {
        code: String,
        /// The address the other node can dial back (optional; without it this node dials).
        #[arg(long, env = "PARLEY_PUBLIC_URL")]
        public_url: Option<String>,
        /// Recovery pairing, for a node of ours that lost its data and has no backup: until
        /// the first full exchange, the partner's node may give back our own org's past
        /// changes to the conversations shared with it. It asks you to trust that partner
        /// with your history; see the README.
        #[arg(long)]
        recover: bool,
    },
    /// List peers and their sync status.
    List,
    /// Revoke a peer by node id; its connection is cut.
    Remove { node_id: Uuid },
}

pub(crate) fn config(
    g: &Global,
    listen: Option<String>,
    doc_cache: Option<usize>,
) -> anyhow::Result<Config> {
    config_with(g, listen, doc_cache, None, TlsArgs::default())
}

pub(crate) fn config_with(
    g: &Global,
    listen: Option<String>,
    doc_cache: Option<usize>,
    public_url: Option<String>,
    tls: TlsArgs,
) -> anyhow::Result<Config> {
    Ok(Config::load(Overrides {
        config: g.config.clone(),
        data_dir: g.data_dir.clone(),
        listen,
        public_url,
        doc_cache,
        log: g.log.clone(),
        tls_listen: tls.tls_listen,
        tls_cert: tls.tls_cert,
        tls_key: tls.tls_key,
        allow_loopback_peers: g.allow_loopback_peers,
        ..Default::default()
    })?)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            doc_cache,
            public_url,
            tls,
            metrics_listen,
            identity,
        } => {
            let mut cfg = config_with(&cli.global, listen, doc_cache, public_url, tls)?;
            if metrics_listen.is_some() {
                cfg.metrics_listen =
                    crate::metrics::config::listen_addr(metrics_listen, cfg.listen)?;
            }
            crate::logging::init(&cfg.log, cli.global.log_format);
            let svc = crate::server::open(&cfg, Clock::System).await?;
            if svc.identity().await?.is_none() {
                first_start(&svc, &cfg, identity).await?;
            }
            svc.set_public_url(cfg.public_url.clone());
            write_cli_token(&cfg, &svc.local_cli_token().await?)?;
            let stop = crate::server::shutdown_signal();
            let bound = crate::server::bind(&cfg).await?;
            let id = svc
                .identity()
                .await?
                .context("identity missing after init")?;
            let say = announcer(cli.global.log_format);
            if let Some(addr) = crate::server::local_addr(&bound) {
                say(&format!(
                    "Parley {} for {} ({}) listening on http://{addr}",
                    env!("CARGO_PKG_VERSION"),
                    id.org_id,
                    id.role
                ));
            }
            if let (Some(addr), Some(fp)) = (bound.tls_addr(), bound.tls_fingerprint()) {
                say(&format!(
                    "serving partners over TLS on https://{addr} (certificate {fp})"
                ));
            }
            if let Some(addr) = bound.metrics_addr() {
                println!("serving /metrics without a token on http://{addr}/metrics");
            }
            std::io::stdout().flush().ok();
            crate::server::run(svc, bound, stop).await
        }
        Command::Init { identity } => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            let svc = open_offline(&cfg).await?;
            let (org, name, role) = identity_values(identity, false)?;
            init(&svc, &cfg, &org, &name, role).await
        }
        Command::User(cmd) => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            let svc = open_offline(&cfg).await?;
            match cmd {
                UserCmd::Add {
                    name,
                    admin,
                    password_stdin,
                } => {
                    let pw = read_password(password_stdin)?;
                    let u = svc
                        .add_user(
                            &crate::service::Principal::operator(),
                            &name,
                            Some(pw),
                            admin,
                        )
                        .await?;
                    println!(
                        "added user {}{}",
                        u.name,
                        if u.admin { " (admin)" } else { "" }
                    );
                }
                UserCmd::List => {
                    for u in svc.users(&crate::service::Principal::operator()).await? {
                        let kind = format!("{:?}", u.kind).to_lowercase();
                        println!(
                            "{}\t{}\t{}",
                            u.name,
                            kind,
                            if u.admin { "admin" } else { "" }
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Token(cmd) => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            let svc = open_offline(&cfg).await?;
            match cmd {
                TokenCmd::Create { name, user } => {
                    let t = svc
                        .create_token(
                            &crate::service::Principal::operator(),
                            NewToken { name, user },
                        )
                        .await?;
                    eprintln!(
                        "token {} for user {} (shown once; keep it safe):",
                        t.record.name, t.record.user
                    );
                    println!("{}", t.secret);
                }
                TokenCmd::List => {
                    for t in svc.tokens(&crate::service::Principal::operator()).await? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            t.id,
                            t.name,
                            t.user,
                            t.created_at.to_rfc3339()
                        );
                    }
                }
                TokenCmd::Revoke { id } => {
                    svc.revoke_token(&crate::service::Principal::operator(), id)
                        .await?;
                    println!("revoked token {id}");
                }
            }
            Ok(())
        }
        Command::Partner(cmd) => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            let svc = open_offline(&cfg).await?;
            match cmd {
                PartnerCmd::Add { id, name, role } => {
                    let (p, created) = svc
                        .add_partner(
                            &crate::service::Principal::operator(),
                            &id,
                            &name,
                            role.into(),
                        )
                        .await?;
                    println!(
                        "{} partner {} ({}, {})",
                        if created { "added" } else { "already had" },
                        p.id,
                        p.name,
                        p.role
                    );
                }
                PartnerCmd::List => {
                    for p in svc.partners().await? {
                        println!("{}\t{}\t{}", p.id, p.role, p.name);
                    }
                }
            }
            Ok(())
        }
        Command::Peer(p) => crate::cli_peer::run(&cli.global, p.listen, p.cmd).await,
        Command::Webhook(w) => crate::cli_webhook::run(&cli.global, w.listen, w.cmd).await,
        Command::Backup { to, listen } => crate::cli_backup::backup(&cli.global, listen, to).await,
        Command::Restore { file, expect_org } => {
            crate::cli_backup::restore(&cli.global, file, expect_org).await
        }
        Command::Import { file } => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("reading standard input")?;
                s
            } else {
                std::fs::read_to_string(&file).with_context(|| {
                    format!("cannot read {} (it must be UTF-8 CSV)", file.display())
                })?
            };
            let svc = open_offline(&cfg).await?;
            let r = svc.import_topics(&text).await?;
            println!(
                "imported {} topic records ({} new, {} updated)",
                r.created + r.updated,
                r.created,
                r.updated
            );
            Ok(())
        }
        Command::Email(cmd) => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            crate::cli_email::run(&cfg, cmd).await
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a failed write, and a reader that
            // stops early (`| head`) is no error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "parley", &mut script);
            match std::io::stdout().write_all(&script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow::Error::new(e).context("writing the completion script"))
                }
                _ => Ok(()),
            }
        }
        Command::PrintConfig { listen } => {
            print!("{}", config(&cli.global, listen, None)?.to_toml());
            Ok(())
        }
        Command::Check { repair } => {
            let cfg = config(&cli.global, None, None)?;
            crate::logging::init(&cfg.log, cli.global.log_format);
            if repair {
                let svc = open_offline(&cfg).await?;
                let store = svc.store().clone();
                drop(svc);
                // Closes the database cleanly before the check below reopens it: a file left
                // open at exit needs recovery on the next open.
                tokio::task::spawn_blocking(move || {
                    let rebuilt = store.rebuild_indexes();
                    store.shutdown();
                    drop(store);
                    rebuilt
                })
                .await??;
                println!("indexes rebuilt from the documents");
            }
            let dir = cfg.data_dir.clone();
            let r = tokio::task::spawn_blocking(move || crate::store::check::check_offline(&dir))
                .await??;
            print_check(&r);
            if r.is_clean() {
                println!("all indexes agree with the documents");
                Ok(())
            } else if r.damaged.is_empty() && !matches!(r.pages, Pages::Damaged(_)) {
                bail!("problems found; run `parley check --repair` to rebuild the indexes")
            } else {
                bail!(
                    "damage found; run `parley check --repair` to rebuild what is derived, and restore each \
                     damaged conversation from a backup of the data directory or from a partner's copy"
                )
            }
        }
    }
}

/// How `serve` says where it listens: a line on standard output, or with JSON logs a log
/// event, so that a log shipper reading the service's output meets JSON lines only.
fn announcer(format: crate::logging::LogFormat) -> fn(&str) {
    match format {
        crate::logging::LogFormat::Text => |line| println!("{line}"),
        crate::logging::LogFormat::Json => |line| tracing::info!("{line}"),
    }
}

fn print_check(r: &crate::store::check::CheckReport) {
    println!("{} conversations checked", r.conversations);
    for id in &r.damaged {
        println!("damaged: {id} (its stored bytes do not verify; it is neither shown nor changed)");
    }
    for id in &r.mismatched {
        println!("index differs from document: {id}");
    }
    for f in &r.bad_counts {
        println!("wrong count: {f}");
    }
    if r.strays > 0 {
        println!("index entries naming no stored conversation: {}", r.strays);
    }
    println!("{} files checked", r.files.files);
    for f in &r.files.damaged {
        println!(
            "damaged file: {f} (its bytes do not hash to its name; `--repair` drops it and it is fetched again from the partner)"
        );
    }
    if r.files.refs_mismatched > 0 {
        println!(
            "file references that differ from the documents: {}",
            r.files.refs_mismatched
        );
    }
    match &r.pages {
        Pages::Verified => println!("page checksums verify"),
        Pages::NotChecked => {}
        Pages::Damaged(e) => println!(
            "page checksums fail: {e}; the bytes of some records were damaged outside Parley (`--repair` rewrites the derived ones and the records of damaged documents)"
        ),
    }
}

/// Leaves a token for `parley peer …` on this machine, readable by the node's owner only.
fn write_cli_token(cfg: &Config, token: &str) -> anyhow::Result<()> {
    let path = cfg.data_dir.join(CLI_TOKEN_FILE);
    let _ = std::fs::remove_file(&path);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(token.as_bytes())?;
    Ok(())
}

pub const CLI_TOKEN_FILE: &str = "cli-token";

/// Opens the data directory for a one-off command.
pub(crate) async fn open_offline(cfg: &Config) -> anyhow::Result<std::sync::Arc<Service>> {
    crate::server::open(cfg, Clock::System).await
}

/// The first `serve` on a new data directory: take the identity from flags/environment, or
/// ask on a terminal, or explain how to give it.
async fn first_start(svc: &Service, cfg: &Config, args: IdentityArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal();
    let (org, name, role) = identity_values(args, interactive)?;
    init(svc, cfg, &org, &name, role).await
}

fn identity_values(a: IdentityArgs, ask: bool) -> anyhow::Result<(String, String, Role)> {
    if let (Some(o), Some(n), Some(r)) = (&a.org_id, &a.org_name, a.role) {
        return Ok((o.clone(), n.clone(), r.into()));
    }
    if !ask {
        bail!(
            "this node has no identity yet. Give it once, e.g.\n  parley init --org-id acme-retail --org-name \"Acme Retail\" --role retailer\n\
             (or pass the same flags to `parley serve`, or set PARLEY_ORG_ID, PARLEY_ORG_NAME and PARLEY_ROLE)"
        );
    }
    println!("This is a new Parley node. Tell it which org it belongs to.");
    let org = match a.org_id {
        Some(o) => o,
        None => prompt("Org id (e.g. acme-retail)")?,
    };
    let name = match a.org_name {
        Some(n) => n,
        None => prompt("Org name (e.g. Acme Retail)")?,
    };
    let role = match a.role {
        Some(r) => r.into(),
        None => loop {
            match prompt("Role (retailer or supplier)")?.as_str() {
                "retailer" => break Role::Retailer,
                "supplier" => break Role::Supplier,
                _ => println!("Please type retailer or supplier."),
            }
        },
    };
    Ok((org, name, role))
}

fn prompt(q: &str) -> anyhow::Result<String> {
    print!("{q}: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Sets the identity; on a node with no users yet, creates `admin` with a random password
/// and an API token, and prints both once.
async fn init(
    svc: &Service,
    cfg: &Config,
    org: &str,
    name: &str,
    role: Role,
) -> anyhow::Result<()> {
    let id = svc.init_identity(org, name, role).await?;
    println!(
        "node {} belongs to {} ({}, {}); data in {}",
        id.node_id,
        id.org_id,
        id.org_name,
        id.role,
        cfg.data_dir.display()
    );
    if svc
        .users(&crate::service::Principal::operator())
        .await?
        .is_empty()
    {
        let password = format!("{}", Uuid::new_v4().simple())[..20].to_string();
        svc.add_user(
            &crate::service::Principal::operator(),
            "admin",
            Some(password.clone()),
            true,
        )
        .await?;
        let t = svc
            .create_token(
                &crate::service::Principal::operator(),
                NewToken {
                    name: "admin-token".into(),
                    user: Some("admin".into()),
                },
            )
            .await?;
        println!("created admin user `admin` with password: {password}");
        println!("created API token for admin (shown once): {}", t.secret);
    }
    Ok(())
}

fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\r', '\n']).to_string();
        if pw.is_empty() {
            bail!(
                "no password on standard input; pipe one in, e.g. `echo secret123 | parley user add NAME --password-stdin`"
            );
        }
        return Ok(pw);
    }
    let pw = rpassword::prompt_password("Password (8+ characters): ")?;
    let again = rpassword::prompt_password("Again: ")?;
    if pw != again {
        bail!("the passwords differ; nothing was changed");
    }
    Ok(pw)
}

#[cfg(test)]
mod version_tests {
    #[test]
    fn the_long_version_names_the_versions_this_release_reads_and_speaks() {
        let v = super::LONG_VERSION;
        assert!(v.contains(&format!("store schema {} ", crate::store::SCHEMA_VERSION)));
        assert!(v.contains(crate::replicator::dial::PROTOCOL_FILES));
        assert!(v.contains(crate::replicator::dial::PROTOCOL));
    }
}
