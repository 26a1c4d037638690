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
) -> Result<Vec<crate::providers::json::Json<'static>>, ProviderError> {
    names::list_all(http, endpoint, url, LIMIT, "after", extra).await
}

/// A path segment from a provider id (ids are plain, but never trusted).
fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::providers::openai::OpenAiAdapter;
    use crate::providers::{ProviderAdapter, RetryPolicy};

    #[tokio::test]
    async fn projects_are_paged_with_after_and_each_projects_keys_are_read() {
        let server = MockServer::start().await;
        let project = |id: &str, name: &str| json!({"id": id, "object": "organization.project", "name": name});
        Mock::given(method("GET"))
            .and(path("/v1/organization/projects"))
            .and(query_param_is_missing("after"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "data": [project("proj_a", "Chatbot")], "first_id": "proj_a", "last_id": "proj_a", "has_more": true
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/organization/projects"))
            .and(query_param("after", "proj_a"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "object": "list", "data": [project("proj_b", "Search")], "first_id": "proj_b", "last_id": "proj_b", "has_more": false
            })))
            .expect(1)
            .mount(&server)
            .await;
        for (id, key) in [("proj_a", "key_1"), ("proj_b", "key_2")] {
            Mock::given(method("GET"))
                .and(path(format!("/v1/organization/projects/{id}/api_keys")))
                .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                    "object": "list",
                    "data": [{"object": "organization.project.api_key", "id": key, "name": format!("{key} name"), "redacted_value": "sk-abc...wxyz"}],
                    "first_id": key, "last_id": key, "has_more": false
                })))
                .expect(1)
                .mount(&server)
                .await;
        }
        let policy = RetryPolicy {
            max_attempts: 1,
            request_timeout: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let adapter = OpenAiAdapter::new(
            "openai-names",
            &format!("{}/v1", server.uri()),
            "sk-admin-FAKE".into(),
            policy,
        )
        .unwrap();
        let names = adapter.fetch_names().await.unwrap().unwrap();
        let projects: Vec<(&str, &str)> = names
            .workspaces
            .iter()
            .map(|w| (w.id.as_str(), w.name.as_str()))
            .collect();
        assert_eq!(projects, [("proj_a", "Chatbot"), ("proj_b", "Search")]);
        let keys: Vec<(&str, &str, &str)> = names
            .api_keys
            .iter()
            .map(|k| (k.id.as_str(), k.hint.as_str(), k.workspace_id.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("key_1", "sk-abc...wxyz", "proj_a"),
                ("key_2", "sk-abc...wxyz", "proj_b")
            ]
        );
    }
}
