//! Anthropic's names: workspaces (`GET /v1/organizations/workspaces`,
//! archived ones included because their usage stays in the history) and API
//! keys (`GET /v1/organizations/api_keys`, every status, with
//! `partial_key_hint` and `workspace_id`), both paged with
//! `after_id=<last_id>` while `has_more`. The default workspace is not
//! listed; its usage carries no workspace id.

use crate::providers::names::{self, ApiKeyName, NameSnapshot, WorkspaceName};
use crate::providers::platform::json::JsonError;
use crate::providers::{ProviderError, ProviderHttp};

/// Items per page: the API's maximum.
const LIMIT: &str = "1000";

const WORKSPACES: &str = "workspaces";
const KEYS: &str = "api_keys";

pub(super) async fn fetch(http: &ProviderHttp, base_url: &str) -> Result<NameSnapshot, ProviderError> {
    let mut snapshot = NameSnapshot::default();
    let url = format!("{base_url}/v1/organizations/workspaces");
    let items = list(http, WORKSPACES, &url, &[("include_archived", "true")]).await?;
    for (i, item) in items.iter().enumerate() {
        let read = || -> Result<WorkspaceName, JsonError> {
            Ok(WorkspaceName {
                id: names::item_id(item, i)?,
                name: names::item_text(item, i, "name")?,
            })
        };
        snapshot
            .workspaces
            .push(read().map_err(|e| http.malformed(WORKSPACES, e.0))?);
    }
    let url = format!("{base_url}/v1/organizations/api_keys");
    let items = list(http, KEYS, &url, &[]).await?;
    for (i, item) in items.iter().enumerate() {
        let read = || -> Result<ApiKeyName, JsonError> {
            Ok(ApiKeyName {
                id: names::item_id(item, i)?,
                name: names::item_text(item, i, "name")?,
                hint: names::masked_hint(&names::item_text(item, i, "partial_key_hint")?),
                workspace_id: names::item_text(item, i, "workspace_id")?,
            })
        };
        snapshot.api_keys.push(read().map_err(|e| http.malformed(KEYS, e.0))?);
    }
    Ok(snapshot)
}

async fn list(
    http: &ProviderHttp,
    endpoint: &'static str,
    url: &str,
    extra: &[(&'static str, &'static str)],
) -> Result<Vec<serde_json::Value>, ProviderError> {
    names::collect_list(
        |after| async move {
            http.get_json(endpoint, |client| {
                let request = client.get(url).query(&[("limit", LIMIT)]).query(extra);
                match &after {
                    Some(id) => request.query(&[("after_id", id)]),
                    None => request,
                }
            })
            .await
        },
        |detail| http.malformed(endpoint, detail),
    )
    .await
}
