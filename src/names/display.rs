//! Display names people give workspaces: `workspaces rename | history |
//! revert`. Every change is a row (who, when, old, new), so the history is
//! kept; a revert undoes the latest rename not yet undone (repeated reverts
//! walk back through the renames) and is itself a row of the history.
//!
//! A display name overrides the provider's name in the dashboards; the same
//! display name on workspaces of different accounts or providers makes them
//! one row there (the workspaces dashboard groups by the shown name).

use chrono::Utc;

use super::store::{self, DisplayNameRow};
use crate::normalize::schema::{from_ch_seconds, to_ch_seconds};
use crate::providers::Provider;
use crate::store::{ClickhouseClient, StoreError};

/// The longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DisplayError {
    #[error("account '{account}', workspace '{workspace}': the new name is empty; give a name with --name")]
    EmptyName { account: String, workspace: String },
    #[error(
        "account '{account}', workspace '{workspace}': the name is {chars} characters; at most {MAX_NAME_CHARS} fit"
    )]
    TooLong {
        account: String,
        workspace: String,
        chars: usize,
    },
    #[error("account '{account}', workspace '{workspace}': the name contains control characters; use plain text")]
    ControlCharacters { account: String, workspace: String },
    #[error("account '{account}', workspace '{workspace}': it is already named '{name}'")]
    Unchanged {
        account: String,
        workspace: String,
        name: String,
    },
    #[error(
        "account '{account}' has no workspace or project '{workspace}' in its usage or names yet; \
         check the id (`workspaces history` lists renamed ones; the dashboards show ids) or sync first"
    )]
    UnknownWorkspace { account: String, workspace: String },
    #[error("account '{account}', workspace '{workspace}': nothing to revert (no rename left to undo)")]
    NothingToRevert { account: String, workspace: String },
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// One change, as `workspaces history` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEntry {
    pub row: DisplayNameRow,
}

impl std::fmt::Display for HistoryEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.row;
        let shown = |name: &str| {
            if name.is_empty() {
                "(provider name)".to_string()
            } else {
                format!("'{name}'")
            }
        };
        write!(
            f,
            "{}  {:<20} {:<24} {:<7} {} -> {}  by {}",
            from_ch_seconds(r.changed_at).format("%Y-%m-%d %H:%M:%SZ"),
            r.connection_id,
            r.workspace_id,
            r.action,
            shown(&r.previous_name),
            shown(&r.display_name),
            r.changed_by
        )
    }
}

/// The display names of one ClickHouse database.
pub struct DisplayNames<'a> {
    pub client: &'a ClickhouseClient,
}

impl DisplayNames<'_> {
    /// Gives `workspace` of `account` the display name `name`.
    pub async fn rename(
        &self,
        account: &str,
        provider: Provider,
        workspace: &str,
        name: &str,
        by: &str,
    ) -> Result<DisplayNameRow, DisplayError> {
        let name = checked_name(account, workspace, name)?;
        if !store::workspace_is_known(self.client, account, workspace).await? {
            return Err(DisplayError::UnknownWorkspace {
                account: account.to_string(),
                workspace: workspace.to_string(),
            });
        }
        let history = store::display_history(self.client, Some(account), Some(workspace)).await?;
        let current = current_name(&history);
        if current == name {
            return Err(DisplayError::Unchanged {
                account: account.to_string(),
                workspace: workspace.to_string(),
                name,
            });
        }
        let row = change_row(account, provider, workspace, &history, name, "rename", by);
        store::insert_display_name(self.client, &row).await?;
        Ok(row)
    }

    /// Undoes the latest rename of `workspace` not yet undone.
    pub async fn revert(
        &self,
        account: &str,
        provider: Provider,
        workspace: &str,
        by: &str,
    ) -> Result<DisplayNameRow, DisplayError> {
        let history = store::display_history(self.client, Some(account), Some(workspace)).await?;
        let Some(target) = revert_target(&history) else {
            return Err(DisplayError::NothingToRevert {
                account: account.to_string(),
                workspace: workspace.to_string(),
            });
        };
        let row = change_row(account, provider, workspace, &history, target, "revert", by);
        store::insert_display_name(self.client, &row).await?;
        Ok(row)
    }

    /// Every change, oldest first (one account and workspace when given).
    pub async fn history(
        &self,
        account: Option<&str>,
        workspace: Option<&str>,
    ) -> Result<Vec<HistoryEntry>, DisplayError> {
        let rows = store::display_history(self.client, account, workspace).await?;
        Ok(rows.into_iter().map(|row| HistoryEntry { row }).collect())
    }
}

fn checked_name(account: &str, workspace: &str, name: &str) -> Result<String, DisplayError> {
    let (account, workspace) = (account.to_string(), workspace.to_string());
    let name = name.trim();
    if name.is_empty() {
        return Err(DisplayError::EmptyName { account, workspace });
    }
    if name.chars().any(char::is_control) {
        return Err(DisplayError::ControlCharacters { account, workspace });
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(DisplayError::TooLong {
            account,
            workspace,
            chars,
        });
    }
    Ok(name.to_string())
}

/// The display name now in force ('' = none), from one workspace's history.
pub fn current_name(history: &[DisplayNameRow]) -> String {
    history
        .iter()
        .max_by_key(|r| r.seq)
        .map(|r| r.display_name.clone())
        .unwrap_or_default()
}

/// The name a revert restores: the name before the latest rename that no
/// later revert undid; `None` when every rename is undone.
pub fn revert_target(history: &[DisplayNameRow]) -> Option<String> {
    let mut ordered: Vec<&DisplayNameRow> = history.iter().collect();
    ordered.sort_by_key(|r| r.seq);
    let mut renames: Vec<&DisplayNameRow> = Vec::new();
    for row in ordered {
        if row.action == "revert" {
            renames.pop();
        } else {
            renames.push(row);
        }
    }
    renames.last().map(|r| r.previous_name.clone())
}

fn change_row(
    account: &str,
    provider: Provider,
    workspace: &str,
    history: &[DisplayNameRow],
    name: String,
    action: &str,
    by: &str,
) -> DisplayNameRow {
    let now = Utc::now();
    // Strictly after the last change, even within one microsecond.
    let last = history.iter().map(|r| r.seq).max().unwrap_or(0);
    let seq = (now.timestamp_micros().max(0) as u64).max(last + 1);
    DisplayNameRow {
        connection_id: account.to_string(),
        provider: provider.as_str().to_string(),
        workspace_id: workspace.to_string(),
        previous_name: current_name(history),
        display_name: name,
        action: action.to_string(),
        changed_by: by.to_string(),
        changed_at: to_ch_seconds(now),
        seq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, action: &str, previous: &str, name: &str) -> DisplayNameRow {
        DisplayNameRow {
            connection_id: "a".into(),
            provider: "openai".into(),
            workspace_id: "proj_1".into(),
            display_name: name.into(),
            previous_name: previous.into(),
            action: action.into(),
            changed_by: "me".into(),
            changed_at: 0,
            seq,
        }
    }

    #[test]
    fn reverts_walk_back_through_the_renames() {
        // rename '' -> A, rename A -> B
        let mut history = vec![row(1, "rename", "", "A"), row(2, "rename", "A", "B")];
        assert_eq!(current_name(&history), "B");
        assert_eq!(revert_target(&history).as_deref(), Some("A"));
        history.push(row(3, "revert", "B", "A"));
        assert_eq!(
            revert_target(&history).as_deref(),
            Some(""),
            "the second revert goes back to no override"
        );
        history.push(row(4, "revert", "A", ""));
        assert_eq!(current_name(&history), "");
        assert_eq!(revert_target(&history), None);
        // A rename after reverts is undone first.
        history.push(row(5, "rename", "", "C"));
        assert_eq!(revert_target(&history).as_deref(), Some(""));
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(checked_name("a", "w", "  Search  ").unwrap(), "Search");
        assert!(matches!(
            checked_name("a", "w", "   "),
            Err(DisplayError::EmptyName { .. })
        ));
        assert!(matches!(
            checked_name("a", "w", "a\nb"),
            Err(DisplayError::ControlCharacters { .. })
        ));
        let err = checked_name("acct", "proj_9", &"x".repeat(201)).unwrap_err();
        assert!(
            err.to_string().contains("acct") && err.to_string().contains("proj_9"),
            "{err}"
        );
    }

    #[test]
    fn a_change_comes_strictly_after_the_last_one() {
        let history = vec![row(u64::MAX / 2, "rename", "", "A")];
        let next = change_row("a", Provider::OpenAi, "proj_1", &history, "B".into(), "rename", "me");
        assert_eq!(next.seq, u64::MAX / 2 + 1);
        assert_eq!((next.previous_name.as_str(), next.display_name.as_str()), ("A", "B"));
    }
}
