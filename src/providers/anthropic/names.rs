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
) -> Result<Vec<crate::providers::json::Json<'static>>, ProviderError> {
    names::list_all(http, endpoint, url, LIMIT, "after_id", extra).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{method, path, query_param, query_param_is_missing};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::providers::anthropic::AnthropicAdapter;
    use crate::providers::{ProviderAdapter, RetryPolicy};

    const KEY: &str = "sk-ant-admin01-FAKE-names-test-key";

    fn adapter(server: &MockServer) -> AnthropicAdapter {
        let policy = RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            ..RetryPolicy::default()
        };
        AnthropicAdapter::new("acme", &server.uri(), KEY.to_string(), policy).unwrap()
    }

    #[tokio::test]
    async fn workspaces_and_keys_are_read_across_pages_with_masked_hints_only() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/organizations/workspaces"))
            .and(query_param("include_archived", "true"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [{"id": "wrkspc_1", "type": "workspace", "name": "Research", "archived_at": null}],
                "has_more": false, "first_id": "wrkspc_1", "last_id": "wrkspc_1"
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/organizations/api_keys"))
            .and(query_param_is_missing("after_id"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [{"id": "apikey_1", "type": "api_key", "name": "prod", "partial_key_hint": "sk-ant-api03-R2D...igAA", "workspace_id": "wrkspc_1"}],
                "has_more": true, "first_id": "apikey_1", "last_id": "apikey_1"
            })))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/organizations/api_keys"))
            .and(query_param("after_id", "apikey_1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "data": [{"id": "apikey_2", "type": "api_key", "name": "ci", "partial_key_hint": "sk-ant-api03-FAKE-TEST-whole-key-not-masked-at-all", "workspace_id": null}],
                "has_more": false, "first_id": "apikey_2", "last_id": "apikey_2"
            })))
            .expect(1)
            .mount(&server)
            .await;
        let names = adapter(&server).fetch_names().await.unwrap().unwrap();
        assert_eq!(names.workspaces.len(), 1);
        assert_eq!(names.workspaces[0].name, "Research");
        let keys: Vec<(&str, &str, &str, &str)> = names
            .api_keys
            .iter()
            .map(|k| (k.id.as_str(), k.name.as_str(), k.hint.as_str(), k.workspace_id.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("apikey_1", "prod", "sk-ant-api03-R2D...igAA", "wrkspc_1"),
                ("apikey_2", "ci", "", ""),
            ]
        );
    }

    #[tokio::test]
    async fn a_broken_list_names_the_account_and_the_endpoint() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/v1/organizations/workspaces"))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"data": [{"name": "no id"}], "has_more": false})),
            )
            .mount(&server)
            .await;
        let err = adapter(&server).fetch_names().await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("acme") && text.contains("workspaces") && text.contains("'id'"),
            "{text}"
        );
    }
}
