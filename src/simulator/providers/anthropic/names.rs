//! `GET /v1/organizations/workspaces` and `GET /v1/organizations/api_keys`:
//! the org's workspaces (the default workspace is not listed) and keys under
//! the ids its usage carries, paged with `after_id` (limit 1..=1000).

use serde_json::{json, Value};

use super::{data, error, Anthropic, NAME};
use crate::simulator::data::World;
use crate::simulator::names::{self, workspace_name};

const WORKSPACE_NAMES: [&str; 3] = ["Agents", "Support", "Batch Eval"];
const KEY_NAMES: [&str; 4] = ["claude-prod", "claude-batch", "claude-ci", "claude-eval"];
use crate::simulator::providers::SimulatedProvider;
use crate::simulator::query::Params;
use crate::simulator::server::Reply;

const CREATED: &str = "2024-10-30T23:58:27.427722Z";

/// Answers the two name lists; `None` for any other path.
pub(super) fn route(world: &World<'_>, org: &str, method: &str, tail: &str, params: &Params) -> Option<Reply> {
    let items = match (method, tail) {
        ("GET", "v1/organizations/workspaces") => workspaces(world, org),
        ("GET", "v1/organizations/api_keys") => keys(world, org),
        _ => return None,
    };
    if world.names.down {
        return Some(Anthropic.server_error());
    }
    Some(match names::page(items, params, "after_id", 20, 1000) {
        Ok((data, has_more, first_id, last_id)) => Reply::json(
            200,
            json!({"data": data, "has_more": has_more, "first_id": first_id, "last_id": last_id}),
        ),
        Err(message) => error(400, "invalid_request_error", &message),
    })
}

fn workspaces(world: &World<'_>, org: &str) -> Vec<Value> {
    let (workspaces, _) = data::name_ids(world, org);
    workspaces
        .iter()
        .filter_map(|(i, id)| id.as_ref().map(|id| (i, id)))
        .map(|(i, id)| {
            json!({
                "id": id,
                "type": "workspace",
                "name": world.names.name_of(NAME, org, id, workspace_name(&WORKSPACE_NAMES, *i, org)),
                "created_at": CREATED,
                "archived_at": null,
                "display_color": "#6C5BB9",
            })
        })
        .collect()
}

fn keys(world: &World<'_>, org: &str) -> Vec<Value> {
    let (workspaces, keys) = data::name_ids(world, org);
    keys.iter()
        .enumerate()
        .map(|(i, (id, hint, ws))| {
            let workspace = workspaces.iter().find(|(w, _)| w == ws).and_then(|(_, id)| id.clone());
            json!({
                "id": id,
                "type": "api_key",
                "name": world.names.name_of(NAME, org, id, KEY_NAMES[i % KEY_NAMES.len()].to_string()),
                "partial_key_hint": hint,
                "workspace_id": workspace,
                "status": "active",
                "created_at": CREATED,
                "created_by": {"id": "user_01WCz1FkmYMm4gnmykNKUu3Q", "type": "user"},
            })
        })
        .collect()
}
