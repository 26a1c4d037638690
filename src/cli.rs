//! The command line (the binary's edge: errors here are `anyhow`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use std::ops::Not;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::actors::writer::WriterActor;
use crate::app::App;
use crate::config::{self, ValidatedConfig};
use crate::lock::AccountLock;
use crate::store::migrations;
use crate::store::sink::RowSink;
use crate::sync::window::SyncKind;
use crate::sync::SyncReport;

#[derive(Debug, Parser)]
#[command(
    name = "tokentra-sync",
    version,
    about = "AI provider usage and cost into ClickHouse, exactly once."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `tokentra_sync=debug`.
    /// Without it (and without TOKENTRA_LOG), RUST_LOG is used, else `info`.
    #[arg(long, global = true, env = "TOKENTRA_LOG")]
    pub log: Option<String>,
    /// Log format: `text` (for people; coloured only when stderr is a
    /// terminal and NO_COLOR is unset) or `json` (one object a line, for
    /// journald, Loki and friends).
    #[arg(long, global = true, value_enum, env = "TOKENTRA_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The same as `--log-format json` (kept for existing setups).
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Cli {
    /// The log format after the `--log-json` alias.
    pub fn effective_log_format(&self) -> LogFormat {
        if self.log_json {
            LogFormat::Json
        } else {
            self.log_format
        }
    }

    /// The log filter: `--log` or TOKENTRA_LOG, else RUST_LOG, else `info`.
    pub fn log_filter(&self, rust_log: Option<&str>) -> String {
        self.log
            .as_deref()
            .or(rust_log)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("info")
            .to_string()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sync every enabled account on its schedule.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Sync the selected accounts (default: all enabled) once, then exit;
    /// exits 1 if any account failed.
    Sync {
        #[arg(short, long)]
        config: PathBuf,
        /// Account id; repeat for several.
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// Window start: a date (00:00 UTC) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Window end, exclusive: a date (00:00 UTC) or an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
    },
    /// Create or upgrade the ClickHouse schema.
    Migrate {
        #[arg(short, long, required_unless_present = "print_sql")]
        config: Option<PathBuf>,
        /// Print the statements a fresh database gets, without a server.
        #[arg(long)]
        print_sql: bool,
        /// With --print-sql: the server version to plan for, e.g. 18.16.
        #[arg(long, default_value = "18.16")]
        server_version: String,
        /// With --print-sql: the database name to fill in.
        #[arg(long, default_value = "tokentra")]
        database: String,
    },
    /// Validate the config file and list the accounts it defines.
    CheckConfig {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Compare usage_records with usage_daily per day and repair differences.
    Verify {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long = "account")]
        accounts: Vec<String>,
        /// First day to check (default: deep_resync_days ago).
        #[arg(long)]
        since: Option<String>,
        /// Day after the last day to check (default: tomorrow).
        #[arg(long)]
        until: Option<String>,
    },
    /// Each account's connection status, last success, last error and the
    /// time up to which its data is complete (from ClickHouse).
    Status {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Fetch one day from every endpoint of an account without storing it.
    TestConnection {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
    },
    /// Serve the simulated provider APIs (demo, tests and benchmarks).
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 2)]
        orgs: u32,
        #[arg(long, default_value_t = 40)]
        history_days: u32,
        /// Server worker threads; 0 = one per core.
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// A Google service-account key JSON whose JWTs the simulated token
        /// endpoint accepts (repeatable; the demo makes one at start).
        #[arg(long = "google-service-account")]
        google_service_accounts: Vec<PathBuf>,
        /// Keep every provider request served, headers included, for
        /// `GET /_sim/requests` (the scale benchmark replays them; memory
        /// grows with each). For the simulator's own fake credentials only.
        #[arg(long)]
        record_requests: bool,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Write a dashboard table as CSV (RFC 4180): the same SQL the
    /// dashboard runs, over whole UTC days [--since, --until).
    Export {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long, value_enum)]
        view: crate::export::View,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        since: String,
        /// Day after the last day, YYYY-MM-DD (UTC), exclusive like `sync --until`.
        #[arg(long)]
        until: String,
        /// Only this provider (repeat for several); default: all with data.
        #[arg(long = "provider")]
        providers: Vec<String>,
        /// A column of the view: COLUMN, COLUMN:asc or COLUMN:desc.
        #[arg(long)]
        sort: Option<String>,
        /// Write here instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Display names of workspaces/projects: rename, history, revert.
    Workspaces {
        #[command(subcommand)]
        command: crate::names::command::WorkspacesCommand,
    },
    /// Encrypted credentials: make a key, encrypt a secret, rotate keys.
    Vault {
        #[command(subcommand)]
        command: crate::vault::VaultCommand,
    },
}

/// `simulate --accounts-out`: write a config fragment with one account per
/// org (providers round-robin) and break a share of them (benchmarks).
#[derive(Debug, clap::Args)]
pub struct FleetArgs {
    /// Write `[[accounts]]` blocks for `org-1 ..= org-{orgs}` to this file.
    #[arg(long)]
    accounts_out: Option<PathBuf>,
    /// Providers of the written accounts, round-robin (default: all).
    #[arg(long, value_delimiter = ',')]
    providers: Vec<String>,
    /// Percent of the written accounts to break, rotating through a bad key,
    /// 500s, hanging responses and malformed pages.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    broken_percent: u32,
    /// More lines for every written account (e.g. `interval = "5m"`).
    #[arg(long, default_value = "")]
    account_extra: String,
}

/// Runs a command; the process exit code is the returned value.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Migrate {
            config,
            print_sql,
            server_version,
            database,
        } => {
            if print_sql {
                print_plan(&server_version, &database)
            } else {
                let config = load(config.as_ref().expect("clap requires --config"))?;
                migrate(&App::new(config)?).await
            }
        }
        Command::Sync {
            config,
            accounts,
            since,
            until,
        } => sync_once(load(&config)?, &accounts, since.as_deref(), until.as_deref()).await,
        Command::Verify {
            config,
            accounts,
            since,
            until,
        } => verify(load(&config)?, &accounts, since.as_deref(), until.as_deref()).await,
        Command::Status { config } => status(load(&config)?).await,
        Command::TestConnection { config, account } => test_connection(load(&config)?, &account).await,
        Command::Run { config } => Ok(crate::daemon::run_daemon(App::new(load(&config)?)?, config).await?),
        Command::Simulate {
            listen,
            seed,
            orgs,
            history_days,
            workers,
            google_service_accounts,
            record_requests,
            fleet,
        } => {
            for path in &google_service_accounts {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                let email = crate::simulator::register_google_service_account(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                tracing::info!(%email, "simulated Google service account");
            }
            let config = crate::simulator::SimConfig {
                listen,
                seed,
                orgs,
                history_days,
                workers: if workers == 0 {
                    std::thread::available_parallelism().map_or(1, |n| n.get())
                } else {
                    workers
                },
                record_requests,
            };
            simulate(config, fleet).await
        }
        Command::Workspaces { command } => crate::names::command::run(command).await,
        Command::Vault { command } => vault(command),
        Command::Export {
            config,
            view,
            since,
            until,
            providers,
            sort,
            output,
        } => {
            let request = export_request(view, &since, &until, &providers, sort.as_deref())?;
            export(load(&config)?, request, output.as_deref()).await
        }
    }
}

/// The export's arguments, checked before anything connects.
fn export_request(
    view: crate::export::View,
    since: &str,
    until: &str,
    providers: &[String],
    sort: Option<&str>,
) -> anyhow::Result<crate::export::Request> {
    let date = |flag: &str, text: &str| {
        chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .with_context(|| format!("{flag} '{text}' is not a date; use YYYY-MM-DD (UTC)"))
    };
    let providers = providers
        .iter()
        .map(|name| {
            crate::provider::Provider::parse(name).with_context(|| {
                format!(
                    "--provider '{name}' is not a provider; use one of {}",
                    crate::provider::Provider::names()
                )
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(crate::export::Request {
        view,
        since: date("--since", since)?,
        until: date("--until", until)?,
        providers,
        sort: sort.map(str::parse).transpose()?,
    })
}

/// Runs an export and writes the CSV to `output` or standard output.
async fn export(
    config: ValidatedConfig,
    request: crate::export::Request,
    output: Option<&std::path::Path>,
) -> anyhow::Result<i32> {
    let store = crate::store::ClickhouseClient::new(&config.clickhouse);
    let csv = crate::export::export(&store, &request).await?.to_csv();
    match output {
        Some(path) => std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().lock().write_all(csv.as_bytes())?,
    }
    Ok(0)
}

fn vault(command: crate::vault::VaultCommand) -> anyhow::Result<i32> {
    // Not env::vars(), which panics on a non-UTF-8 variable.
    let env = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    Ok(crate::vault::command::run(command, &env)?)
}

fn load(path: &std::path::Path) -> anyhow::Result<ValidatedConfig> {
    Ok(config::load(path)?)
}

fn check_config(path: &std::path::Path) -> anyhow::Result<i32> {
    let config = match config::load(path).and_then(|c| c.check_state_dir().map(|()| c)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return Ok(2);
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok, {} account(s)", path.display(), config.accounts.len())?;
    for a in &config.accounts {
        writeln!(
            out,
            "  {:<24} {:<14} {:<8} every {:<6} lookback {:<6} {}",
            a.id,
            a.provider.as_str(),
            if a.enabled { "enabled" } else { "disabled" },
            humantime::format_duration(a.interval).to_string(),
            humantime::format_duration(a.lookback).to_string(),
            a.base_url
        )?;
    }
    Ok(0)
}

fn print_plan(server_version: &str, database: &str) -> anyhow::Result<i32> {
    let mut parts = server_version.split('.');
    let major: u32 = parts
        .next()
        .unwrap_or("")
        .parse()
        .context("--server-version like 18.16")?;
    let minor: u32 = parts
        .next()
        .unwrap_or("0")
        .parse()
        .context("--server-version like 18.16")?;
    let mut out = std::io::stdout().lock();
    for statement in migrations::fresh_plan_sql((major, minor), database) {
        writeln!(out, "{};\n", statement.trim_end())?;
    }
    Ok(0)
}

async fn migrate(app: &App) -> anyhow::Result<i32> {
    let report = migrations::migrate(&app.store).await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "database {} at {}: {} migration(s) applied{}",
        app.store.database(),
        app.store.url(),
        report.applied.len(),
        if report.applied.is_empty() { " (up to date)" } else { "" }
    )?;
    for name in &report.pending_unsupported {
        writeln!(out, "  pending until the server is upgraded: {name}")?;
    }
    Ok(0)
}

/// A date (00:00 UTC) or an RFC 3339 time.
pub fn parse_time(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(crate::sync::window::parse_time(text)?)
}

/// The accounts named on the command line (all enabled ones when none is).
fn select_accounts(
    config: &ValidatedConfig,
    wanted: &[String],
) -> anyhow::Result<Vec<std::sync::Arc<crate::config::AccountConfig>>> {
    for id in wanted {
        if config.account(id).is_none() {
            let known: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
            bail!("no account '{id}' in the config; accounts: {}", known.join(", "));
        }
    }
    Ok(config
        .accounts
        .iter()
        .filter(|a| {
            if wanted.is_empty() {
                a.enabled
            } else {
                wanted.contains(&a.id)
            }
        })
        .cloned()
        .collect())
}

async fn verify(
    config: ValidatedConfig,
    wanted: &[String],
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<i32> {
    let selected = select_accounts(&config, wanted)?;
    let until = match until {
        Some(t) => parse_time(t)?,
        None => crate::normalize::schema::Granularity::Day.floor(Utc::now()) + chrono::Duration::days(1),
    };
    let since = match since {
        Some(t) => parse_time(t)?,
        None => until - chrono::Duration::days(i64::from(config.sync.deep_resync_days) + 1),
    };
    let app = App::new(config.clone())?;
    migrations::migrate(&app.store).await?;
    let mut locks = Vec::new();
    for account in &selected {
        locks.push(AccountLock::acquire(&config.state_dir, &account.id)?);
    }
    let writer = WriterActor::start_with_handle(app.store.clone(), config.writer.clone());
    let mut out = std::io::stdout().lock();
    for account in &selected {
        let report = crate::store::verify::verify_connection(&app.store, &writer, &account.id, since, until).await?;
        writeln!(
            out,
            "{:<24} {} group(s) checked, {} repaired",
            account.id,
            report.groups_checked,
            report.repairs.len()
        )?;
        for fix in &report.repairs {
            writeln!(
                out,
                "  repaired {} {} {} model '{}': cost {:+}, input_tokens {:+}, records {:+}",
                fix.date(),
                fix.record_type,
                fix.service,
                fix.model,
                fix.cost.to_decimal().normalize(),
                fix.input_tokens,
                fix.records
            )?;
        }
    }
    writer.flush().await?;
    Ok(0)
}

async fn sync_once(
    config: ValidatedConfig,
    wanted: &[String],
    since: Option<&str>,
    until: Option<&str>,
) -> anyhow::Result<i32> {
    let kind = match (since, until) {
        (None, None) => SyncKind::Incremental,
        (Some(since), until) => {
            let since = parse_time(since)?;
            let until = until.map(parse_time).transpose()?;
            if until.is_some_and(|u| u <= since) {
                bail!("--until must be after --since");
            }
            SyncKind::Explicit { since, until }
        }
        (None, Some(_)) => bail!("--until needs --since"),
    };
    for id in wanted {
        if config.account(id).is_none() {
            let known: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
            bail!("no account '{id}' in the config; accounts: {}", known.join(", "));
        }
    }
    let selected: Vec<_> = config
        .accounts
        .iter()
        .filter(|a| {
            if wanted.is_empty() {
                a.enabled
            } else {
                wanted.contains(&a.id)
            }
        })
        .cloned()
        .collect();
    let app = App::new(config.clone())?.one_shot();
    migrations::migrate(&app.store).await?;
    let mut locks = Vec::new();
    for account in &selected {
        locks.push(AccountLock::acquire(&config.state_dir, &account.id)?);
    }
    let writer = WriterActor::start_watching(app.store.clone(), config.writer.clone(), app.sync_slots.clone());
    let mut tasks = Vec::new();
    for account in &selected {
        let sync = app.account_sync(account, writer.sink())?;
        tasks.push(async move {
            let id = sync.account.id.clone();
            (id, sync.run(kind, "cli").await)
        });
    }
    let results = futures::future::join_all(tasks).await;
    writer.flush().await?;
    drop(locks);
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<10} {:<8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9}",
        "account", "provider", "status", "fetched", "added", "cancelled", "requests", "retries", "seconds"
    )?;
    for (id, result) in results {
        match result {
            Ok(reports) => {
                let ok = reports.iter().all(|r| r.succeeded);
                failed |= !ok;
                let sum = |f: fn(&SyncReport) -> u64| reports.iter().map(f).sum::<u64>();
                writeln!(
                    out,
                    "{:<24} {:<10} {:<8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9.1}",
                    id,
                    reports.first().map_or("", |r| r.provider.as_str()),
                    if ok { "success" } else { "failed" },
                    sum(|r| r.rows_fetched),
                    sum(|r| r.rows_added),
                    sum(|r| r.rows_cancelled),
                    sum(|r| r.http_requests),
                    sum(|r| r.retries),
                    reports.iter().map(|r| r.duration.as_secs_f64()).sum::<f64>(),
                )?;
                for error in reports.iter().flat_map(|r| &r.errors) {
                    writeln!(out, "  error: {error}")?;
                }
            }
            Err(err) => {
                failed = true;
                writeln!(out, "{id:<24} {:<10} failed\n  error: {err}", "")?;
            }
        }
    }
    Ok(i32::from(failed))
}

/// Prints every configured account's standing; exits 1 when any enabled
/// account is in error or disconnected (so a cron or a probe can use it).
async fn status(config: ValidatedConfig) -> anyhow::Result<i32> {
    let app = App::new(config.clone())?;
    let standings = crate::store::status::read_standings(&app.store)
        .await
        .context("reading sync_runs and sync_state (has the daemon or `migrate` run?)")?;
    let time = |secs: u32| {
        if secs == 0 {
            "-".to_string()
        } else {
            crate::normalize::schema::from_ch_seconds(secs)
                .format("%Y-%m-%d %H:%M:%SZ")
                .to_string()
        }
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<24} {:<14} {:<13} {:<21} {:<21} last error",
        "account", "provider", "status", "last success", "complete until"
    )?;
    let mut unhealthy = false;
    for account in &config.accounts {
        let standing = standings.iter().find(|s| s.connection_id == account.id);
        let state = match (account.enabled, standing) {
            (false, _) => "disabled".to_string(),
            (true, None) => "pending".to_string(),
            (true, Some(s)) if s.connection_status.is_empty() => "pending".to_string(),
            (true, Some(s)) => s.connection_status.clone(),
        };
        unhealthy |= account.enabled && matches!(state.as_str(), "error" | "disconnected");
        let error = standing
            .filter(|s| s.last_error_kind.is_empty().not() && s.last_attempt > s.last_success)
            .map(|s| {
                let first_line = s.last_error.lines().next().unwrap_or("");
                format!("[{}] {first_line}", s.last_error_kind)
            })
            .unwrap_or_default();
        writeln!(
            out,
            "{:<24} {:<14} {:<13} {:<21} {:<21} {}",
            account.id,
            account.provider.as_str(),
            state,
            time(standing.map_or(0, |s| s.last_success)),
            time(standing.map_or(0, |s| s.complete_until)),
            error
        )?;
    }
    Ok(i32::from(unhealthy))
}

/// Tests one account's credentials (see [`crate::connection_test`]); the exit
/// code tells bad credentials (2) from an unreachable provider (3).
async fn test_connection(config: ValidatedConfig, id: &str) -> anyhow::Result<i32> {
    let account = config
        .account(id)
        .with_context(|| format!("no account '{id}' in the config"))?
        .clone();
    let app = App::new(config.clone())?;
    let report = crate::connection_test::test_account(&account, &app.retry).await;
    writeln!(std::io::stdout().lock(), "{report}")?;
    Ok(report.verdict.exit_code())
}

async fn simulate(config: crate::simulator::SimConfig, fleet: FleetArgs) -> anyhow::Result<i32> {
    use crate::simulator::fleet;
    let (listen, orgs) = (config.listen, config.orgs);
    let handle = crate::simulator::start(config)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(path) = &fleet.accounts_out {
        let known = crate::simulator::provider_names();
        let providers: Vec<&'static str> = if fleet.providers.is_empty() {
            known.clone()
        } else {
            fleet
                .providers
                .iter()
                .map(|p| {
                    known.iter().copied().find(|k| k == p).with_context(|| {
                        format!("--providers: no simulated provider '{p}' (known: {})", known.join(", "))
                    })
                })
                .collect::<anyhow::Result<_>>()?
        };
        let accounts = fleet::fleet(orgs, &providers, fleet.broken_percent);
        let toml =
            fleet::fleet_toml(&accounts, &handle.base_url(), &fleet.account_extra).map_err(anyhow::Error::msg)?;
        std::fs::write(path, toml).with_context(|| format!("cannot write {}", path.display()))?;
        handle.set_org_faults(fleet::fleet_org_faults(&accounts));
        for account in accounts.iter().filter(|a| a.breakage.is_some()) {
            let breakage = account.breakage.map_or("", |b| b.name());
            tracing::info!(account = %account.id, breakage, "broken simulated account");
        }
        tracing::info!(accounts = accounts.len(), path = %path.display(), "wrote simulated accounts");
    }
    tracing::info!(addr = %handle.addr, orgs, "simulator listening");
    crate::shutdown::signal().await;
    handle.stop().await;
    Ok(0)
}
