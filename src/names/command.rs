//! `tokentra-sync workspaces rename | history | revert`: the command-line
//! edge of [`super::display`] (errors here are `anyhow`, like the rest of the
//! CLI).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

use super::display::DisplayNames;
use crate::app::App;
use crate::config::{self, ValidatedConfig};
use crate::provider::Provider;
use crate::store::migrations;

#[derive(Debug, Subcommand)]
pub enum WorkspacesCommand {
    /// Give a workspace (Anthropic) or project (OpenAI) a display name. The
    /// same name on workspaces of several accounts or providers shows them
    /// as one row in the dashboards.
    Rename {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        /// The provider's workspace or project id (e.g. wrkspc_..., proj_...).
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        name: String,
        /// Who made the change (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Every display-name change, oldest first: when, who, old -> new.
    History {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Undo the latest rename not yet undone (repeat to walk further back);
    /// the revert is recorded in the history too.
    Revert {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(long)]
        account: String,
        #[arg(long)]
        workspace: String,
        #[arg(long)]
        by: Option<String>,
    },
}

pub async fn run(command: WorkspacesCommand) -> anyhow::Result<i32> {
    match command {
        WorkspacesCommand::Rename {
            config,
            account,
            workspace,
            name,
            by,
        } => {
            let (app, provider) = open(&config, &account).await?;
            let row = DisplayNames { client: &app.store }
                .rename(&account, provider, &workspace, &name, &who(by))
                .await?;
            writeln!(
                std::io::stdout().lock(),
                "{account} {workspace}: '{}' (was {})",
                row.display_name,
                shown(&row.previous_name)
            )?;
        }
        WorkspacesCommand::Revert {
            config,
            account,
            workspace,
            by,
        } => {
            let (app, provider) = open(&config, &account).await?;
            let row = DisplayNames { client: &app.store }
                .revert(&account, provider, &workspace, &who(by))
                .await?;
            writeln!(
                std::io::stdout().lock(),
                "{account} {workspace}: reverted to {} (was {})",
                shown(&row.display_name),
                shown(&row.previous_name)
            )?;
        }
        WorkspacesCommand::History {
            config,
            account,
            workspace,
        } => {
            let config = load(&config)?;
            if let Some(id) = &account {
                account_provider(&config, id)?;
            }
            let app = App::new(config)?;
            migrations::migrate(&app.store).await?;
            let entries = DisplayNames { client: &app.store }
                .history(account.as_deref(), workspace.as_deref())
                .await?;
            let mut out = std::io::stdout().lock();
            if entries.is_empty() {
                writeln!(out, "no display-name changes")?;
            }
            for entry in entries {
                writeln!(out, "{entry}")?;
            }
        }
    }
    Ok(0)
}

fn load(path: &std::path::Path) -> anyhow::Result<ValidatedConfig> {
    Ok(config::load(path)?)
}

fn account_provider(config: &ValidatedConfig, id: &str) -> anyhow::Result<Provider> {
    let known: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
    config
        .account(id)
        .map(|a| a.provider)
        .with_context(|| format!("no account '{id}' in the config; accounts: {}", known.join(", ")))
}

async fn open(path: &std::path::Path, account: &str) -> anyhow::Result<(App, Provider)> {
    let config = load(path)?;
    let provider = account_provider(&config, account)?;
    let app = App::new(config)?;
    migrations::migrate(&app.store).await?;
    Ok((app, provider))
}

/// `--by`, else the login name, else "unknown".
fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

fn shown(name: &str) -> String {
    if name.is_empty() {
        "the provider's name".to_string()
    } else {
        format!("'{name}'")
    }
}
