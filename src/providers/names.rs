//! The provider's own names for its workspaces (projects) and API keys, for
//! the adapters whose APIs list them ([`super::ProviderAdapter::fetch_names`]).
//!
//! Names are descriptive, never money: they go to `workspace_names` and
//! `api_key_names`, not into any record identity, so a renamed key keeps its
//! history. Key hints are the provider's masked form only; a value that looks
//! like a whole key is refused here, before anything can store it.

use std::collections::HashSet;
use std::future::Future;

use super::platform::json::{self, Json, JsonBody, JsonError};
use super::ProviderError;

/// One workspace (Anthropic) or project (OpenAI) as the provider names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceName {
    pub id: String,
    pub name: String,
}

/// One API key as the provider lists it: never the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyName {
    pub id: String,
    pub name: String,
    /// The provider's masked form (`sk-ant-api03-R2D...igAA`), or empty.
    pub hint: String,
    /// The workspace or project the key belongs to, or empty.
    pub workspace_id: String,
}

/// Everything one names fetch found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSnapshot {
    pub workspaces: Vec<WorkspaceName>,
    pub api_keys: Vec<ApiKeyName>,
}

/// Pages of one list endpoint before paging is called endless: ids are
/// unique, so a list of a thousand workspaces at 100 a page needs 10.
pub const MAX_LIST_PAGES: usize = 1_000;

/// The longest masked hint accepted. Providers show a few characters of each
/// end (`sk-ant-api03-R2D...igAA`, `sk-abc...wxyz`); a longer value is
/// probably a whole key and is never stored.
const MAX_HINT_CHARS: usize = 40;

/// One page of a list: its items and the cursor of the next page.
#[derive(Debug, Default)]
pub struct ListPage {
    pub items: Vec<Json<'static>>,
    pub next: Option<String>,
}

/// Reads a `{data: [...], has_more, last_id}` page (OpenAI's and Anthropic's
/// list envelope): the next cursor is `last_id` when `has_more` is true.
pub fn id_cursor_page(body: &Json) -> Result<ListPage, JsonError> {
    let top = json::object(body, "the response")?;
    let items = json::array(top, "data")?
        .iter()
        .cloned()
        .map(Json::into_owned)
        .collect();
    let has_more = top.get("has_more").and_then(Json::as_bool).unwrap_or(false);
    let next = if has_more {
        match top.get("last_id").and_then(Json::as_str) {
            Some(id) if !id.is_empty() => Some(id.to_string()),
            _ => return Err(JsonError("has_more is true but last_id is missing".into())),
        }
    } else {
        None
    };
    Ok(ListPage { items, next })
}

/// Calls `fetch_page(cursor)` until a page has no next cursor, refusing a
/// cursor seen before and more than [`MAX_LIST_PAGES`] pages (an endless
/// list). `malformed` turns a problem into the endpoint's error.
pub async fn collect_list<F, Fut>(
    mut fetch_page: F,
    malformed: impl Fn(String) -> ProviderError,
) -> Result<Vec<Json<'static>>, ProviderError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<JsonBody, ProviderError>>,
{
    let mut items = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut cursor = None;
    for number in 1..=MAX_LIST_PAGES {
        let body = fetch_page(cursor.take()).await?;
        let page = id_cursor_page(body.json()).map_err(|e| malformed(format!("page {number}: {}", e.0)))?;
        items.extend(page.items);
        match page.next {
            None => return Ok(items),
            Some(next) if !seen.insert(next.clone()) => {
                return Err(malformed(format!(
                    "page {number}: cursor '{next}' was already followed"
                )))
            }
            Some(next) => cursor = Some(next),
        }
    }
    Err(malformed(format!(
        "more than {MAX_LIST_PAGES} pages; refusing an endless list"
    )))
}

/// One cursor-paged list endpoint (OpenAI's and Anthropic's shape): `limit`
/// per page, the cursor sent as `cursor_param` (`after` / `after_id`),
/// `extra` query pairs on every page.
pub async fn list_all(
    http: &super::ProviderHttp,
    endpoint: &'static str,
    url: &str,
    limit: &'static str,
    cursor_param: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Result<Vec<Json<'static>>, ProviderError> {
    collect_list(
        |after| async move {
            http.get_json(endpoint, |client| {
                let request = client.get(url).query(&[("limit", limit)]).query(extra);
                match &after {
                    Some(id) => request.query(&[(cursor_param, id)]),
                    None => request,
                }
            })
            .await
        },
        |detail| http.malformed(endpoint, detail),
    )
    .await
}

/// A masked key hint as stored: the provider's masked value when it is
/// visibly masked and short, else empty (never a whole key).
pub fn masked_hint(value: &str) -> String {
    let value = value.trim();
    let masked = value.contains("...") || value.contains('*') || value.contains('…');
    if masked && value.chars().count() <= MAX_HINT_CHARS {
        value.to_string()
    } else {
        String::new()
    }
}

/// The string field `field` of a list item, with where it sits for errors.
pub fn item_text(item: &Json, index: usize, field: &str) -> Result<String, JsonError> {
    let obj = json::object(item, &format!("data[{index}]"))?;
    match obj.get(field) {
        Some(Json::String(s)) => Ok(s.to_string()),
        Some(Json::Null) | None => Ok(String::new()),
        Some(_) => Err(JsonError(format!("data[{index}]: field '{field}' should be a string"))),
    }
}

/// The required, non-empty `id` of a list item.
pub fn item_id(item: &Json, index: usize) -> Result<String, JsonError> {
    let id = item_text(item, index, "id")?;
    if id.is_empty() {
        return Err(JsonError(format!("data[{index}]: field 'id' is missing or empty")));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hints_are_kept_only_when_visibly_masked_and_short() {
        assert_eq!(masked_hint("sk-ant-api03-R2D...igAA"), "sk-ant-api03-R2D...igAA");
        assert_eq!(masked_hint("sk-abc*****wxyz"), "sk-abc*****wxyz");
        assert_eq!(
            masked_hint("sk-proj-FAKE-TEST-abcdefghijklmnopqrstuvwxyz0123456789"),
            ""
        );
        assert_eq!(masked_hint(&format!("sk-{}...{}", "a".repeat(40), "b")), "");
        assert_eq!(masked_hint(""), "");
    }

    #[test]
    fn the_id_cursor_envelope_needs_last_id_when_there_is_more() {
        let page = id_cursor_page(&Json::from(
            json!({"data": [{"id": "a"}], "has_more": true, "last_id": "a"}),
        ))
        .unwrap();
        assert_eq!((page.items.len(), page.next.as_deref()), (1, Some("a")));
        let page = id_cursor_page(&Json::from(json!({"data": [], "has_more": false, "last_id": null}))).unwrap();
        assert!(page.next.is_none());
        let err = id_cursor_page(&Json::from(json!({"data": [], "has_more": true}))).unwrap_err();
        assert!(err.0.contains("last_id"), "{}", err.0);
    }

    #[tokio::test]
    async fn a_repeated_cursor_is_an_error_not_a_loop() {
        let err = collect_list(
            |_| async {
                Ok(JsonBody::parse(br#"{"data": [{"id": "x"}], "has_more": true, "last_id": "x"}"#.to_vec()).unwrap())
            },
            |detail| ProviderError::Malformed {
                account: "acct".into(),
                endpoint: "list".into(),
                detail,
            },
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("already followed"), "{err}");
    }

    #[test]
    fn item_fields_are_read_with_their_place() {
        let item = json!({"id": "k1", "name": null, "bad": 3});
        assert_eq!(item_id(&Json::from(item.clone()), 0).unwrap(), "k1");
        assert_eq!(item_text(&Json::from(item.clone()), 0, "name").unwrap(), "");
        assert!(item_text(&Json::from(item.clone()), 2, "bad")
            .unwrap_err()
            .0
            .contains("data[2]"));
        assert!(item_id(&Json::from(json!({"name": "x"})), 1)
            .unwrap_err()
            .0
            .contains("'id'"));
    }
}
