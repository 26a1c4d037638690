//! `GET /v1/organization/projects` and
//! `GET /v1/organization/projects/{id}/api_keys`: the org's projects and keys
//! under the ids its usage carries, paged with `after` (limit 1..=100).

use serde_json::{json, Value};

use super::{bad_request, data, NAME};
use crate::simulator::data::{OrgDraw, World};
use crate::simulator::names::{self, workspace_name};

const PROJECT_NAMES: [&str; 3] = ["Chatbot", "Search", "Data Platform"];
const KEY_NAMES: [&str; 4] = ["prod-backend", "batch-jobs", "ci", "analytics"];
use crate::simulator::providers::SimulatedProvider;
use crate::simulator::query::Params;
use crate::simulator::server::Reply;

const CREATED: i64 = 1_711_471_533;

pub(super) fn projects(world: &World<'_>, org: &str, params: &Params) -> Reply {
    if world.names.down {
        return super::OpenAi.server_error();
    }
    let (projects, _) = data::name_ids(world, org);
    let items = projects
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id,
                "object": "organization.project",
                "name": world.names.name_of(NAME, org, id, workspace_name(&PROJECT_NAMES, i, org)),
                "created_at": CREATED,
                "archived_at": null,
                "status": "active",
            })
        })
        .collect();
    list(items, params)
}

pub(super) fn project_keys(world: &World<'_>, org: &str, project: &str, params: &Params) -> Reply {
    if world.names.down {
        return super::OpenAi.server_error();
    }
    let (projects, keys) = data::name_ids(world, org);
    let Some(index) = projects.iter().position(|p| p == project) else {
        return super::error(
            404,
            &format!("No such project: '{project}'"),
            "invalid_request_error",
            None,
            None,
        );
    };
    let draw = OrgDraw::new(world.seed, NAME, org);
    let items = keys
        .iter()
        .enumerate()
        .filter(|(_, (_, p))| *p == index)
        .map(|(i, (id, _))| {
            let secret = draw.ident("", 9, i, 8);
            json!({
                "object": "organization.project.api_key",
                "redacted_value": format!("sk-proj-{}...{}", &secret[..3], &secret[4..]),
                "name": world.names.name_of(NAME, org, id, KEY_NAMES[i % KEY_NAMES.len()].to_string()),
                "created_at": CREATED,
                "last_used_at": CREATED,
                "id": id,
                "owner": {"type": "user", "user": {"object": "organization.project.user", "id": "user_abc", "name": "First Last", "role": "owner"}},
            })
        })
        .collect();
    list(items, params)
}

fn list(items: Vec<Value>, params: &Params) -> Reply {
    match names::page(items, params, "after", 20, 100) {
        Ok((data, has_more, first_id, last_id)) => Reply::json(
            200,
            json!({"object": "list", "data": data, "first_id": first_id, "last_id": last_id, "has_more": has_more}),
        ),
        Err(message) => bad_request("limit", message),
    }
}
