//! Names the simulated providers list (OpenAI projects and project keys,
//! Anthropic workspaces and keys), for the same ids their usage carries, and
//! the controls tests use on them: a provider-side rename and an outage of
//! the name endpoints only (usage keeps answering).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::query::Params;

/// A rename made "in the provider's console": from now on the provider lists
/// `id` of `org` under `name`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameChange {
    pub provider: String,
    pub org: String,
    pub id: String,
    pub name: String,
}

/// The name controls in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameControls {
    pub renames: Vec<NameChange>,
    /// The name endpoints answer the provider's 500 while set.
    pub down: bool,
}

/// No renames, endpoints up (truth queries and unit tests).
pub(crate) static NO_NAMES: NameControls = NameControls {
    renames: Vec::new(),
    down: false,
};

impl NameControls {
    /// `default`, or the latest rename of (provider, org, id).
    pub fn name_of(&self, provider: &str, org: &str, id: &str, default: String) -> String {
        self.renames
            .iter()
            .rev()
            .find(|r| r.provider == provider && r.org == org && r.id == id)
            .map_or(default, |r| r.name.clone())
    }
}

/// The seeded name of workspace (project) `index` of `org`: a team's name
/// from `names` plus the org, so no two orgs or providers share a workspace
/// name by accident (a shared name would combine them in the dashboards).
pub(crate) fn workspace_name(names: &[&str], index: usize, org: &str) -> String {
    format!("{} ({org})", names[index % names.len()])
}

/// One page of an id-cursor list (`after` / `after_id` = the last id seen):
/// `(items, has_more, first_id, last_id)`, or the problem with `limit`.
pub(crate) fn page(
    items: Vec<Value>,
    params: &Params,
    after_param: &str,
    default_limit: usize,
    max_limit: usize,
) -> Result<(Vec<Value>, bool, Value, Value), String> {
    let limit = match params.get("limit") {
        None => default_limit,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=max_limit).contains(&n) => n,
            _ => {
                return Err(format!(
                    "limit must be an integer between 1 and {max_limit}, got '{text}'"
                ))
            }
        },
    };
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_string();
    let start = match params.get(after_param) {
        None => 0,
        Some(after) => match items.iter().position(|v| id(v) == after) {
            Some(i) => i + 1,
            None => return Err(format!("{after_param}: no object with id '{after}'")),
        },
    };
    let rest = items.get(start..).unwrap_or_default();
    let taken: Vec<Value> = rest.iter().take(limit).cloned().collect();
    let has_more = rest.len() > taken.len();
    let first = taken.first().map_or(Value::Null, |v| json!(id(v)));
    let last = taken.last().map_or(Value::Null, |v| json!(id(v)));
    Ok((taken, has_more, first, last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_the_last_id() {
        let items: Vec<Value> = (0..5).map(|i| json!({"id": format!("k{i}")})).collect();
        let (first, more, _, last) = page(items.clone(), &Params::parse("limit=2"), "after", 20, 100).unwrap();
        assert_eq!((first.len(), more, last), (2, true, json!("k1")));
        let (rest, more, _, _) = page(items.clone(), &Params::parse("limit=10&after=k1"), "after", 20, 100).unwrap();
        assert_eq!((rest.len(), more), (3, false));
        assert!(page(items, &Params::parse("limit=0"), "after", 20, 100).is_err());
    }

    #[test]
    fn a_rename_wins_over_the_seeded_name() {
        let controls = NameControls {
            renames: vec![NameChange {
                provider: "openai".into(),
                org: "org-1".into(),
                id: "proj_x".into(),
                name: "Renamed".into(),
            }],
            down: false,
        };
        assert_eq!(
            controls.name_of("openai", "org-1", "proj_x", "Seeded".into()),
            "Renamed"
        );
        assert_eq!(controls.name_of("openai", "org-2", "proj_x", "Seeded".into()), "Seeded");
    }
}
