//! OpenAI's names: projects (`GET /organization/projects`, archived ones
//! included because their usage stays in the history) and each project's API
//! keys (`GET /organization/projects/{id}/api_keys`), both paged with
//! `after=<last_id>` while `has_more`.

use crate::providers::names::{self, ApiKeyName, NameSnapshot, WorkspaceName};
use crate::providers::platform::json::JsonError;
use crate::providers::{ProviderError, ProviderHttp};

/// Items per page: the API's maximum.
const LIMIT: &str = "100";

const PROJECTS: &str = "projects";
const KEYS: &str = "project api_keys";

/// Every project and every project's keys.
pub(super) async fn fetch(http: &ProviderHttp, base_url: &str) -> Result<NameSnapshot, ProviderError> {
    let url = format!("{base_url}/organization/projects");
    let items = list(http, PROJECTS, &url, &[("include_archived", "true")]).await?;
    let mut snapshot = NameSnapshot::default();
    for (i, item) in items.iter().enumerate() {
        let read = || -> Result<WorkspaceName, JsonError> {
            Ok(WorkspaceName {
                id: names::item_id(item, i)?,
                name: names::item_text(item, i, "name")?,
            })
        };
        snapshot
            .workspaces
            .push(read().map_err(|e| http.malformed(PROJECTS, e.0))?);
    }
    for project in &snapshot.workspaces {
        let url = format!("{base_url}/organization/projects/{}/api_keys", encode(&project.id));
        let items = list(http, KEYS, &url, &[]).await?;
        for (i, item) in items.iter().enumerate() {
            let read = || -> Result<ApiKeyName, JsonError> {
                Ok(ApiKeyName {
                    id: names::item_id(item, i)?,
                    name: names::item_text(item, i, "name")?,
                    hint: names::masked_hint(&names::item_text(item, i, "redacted_value")?),
                    workspace_id: project.id.clone(),
                })
            };
            snapshot
                .api_keys
                .push(read().map_err(|e| http.malformed(KEYS, format!("project {}: {}", project.id, e.0)))?);
        }
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
                    Some(id) => request.query(&[("after", id)]),
                    None => request,
                }
            })
            .await
        },
        |detail| http.malformed(endpoint, detail),
    )
    .await
}

/// A path segment from a provider id (ids are plain, but never trusted).
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
