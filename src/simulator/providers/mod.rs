//! One folder per simulated provider, each behind [`SimulatedProvider`].
//!
//! The server knows providers only through this trait and [`REGISTRY`]:
//! adding a provider is its folder plus one line in the registry.

pub(crate) mod anthropic;
pub(crate) mod aws_bedrock;
pub(crate) mod azure;
pub(crate) mod fal;
pub(crate) mod google_vertex;
pub(crate) mod litellm;
pub(crate) mod openai;
pub(crate) mod openrouter;
pub(crate) mod piapi;
pub(crate) mod runway;

use actix_web::http::header::HeaderMap;

use super::data::{TruthRow, World};
use super::server::Reply;

/// One provider request, as the server hands it over.
pub(crate) struct SimRequest<'a> {
    /// The org segment of the URL (`/{provider}/{org}/...`).
    pub org: &'a str,
    /// Whether the simulator serves that org at all.
    pub org_known: bool,
    pub method: &'a str,
    /// The path after `/{provider}/{org}/`, e.g. `v1/organization/costs`.
    pub tail: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    /// The request body (POST APIs such as Runway's usage).
    pub body: &'a [u8],
}

impl SimRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a truth query may add besides org and window; each provider reads
/// what applies to it and refuses what it does not know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruthOptions {
    /// Which of the provider's APIs the account reads (`api = ...` in its
    /// config), when the provider has more than one and they report
    /// different measures (Anthropic: `legacy` or `analytics`).
    pub api: Option<String>,
}

/// A simulated provider: its auth, routes, error format and ground truth.
pub(crate) trait SimulatedProvider: Send + Sync + 'static {
    /// The URL segment and the `provider=` of the control endpoints.
    fn name(&self) -> &'static str;

    /// The `base_url` an account of `org` uses, relative to the server root
    /// (e.g. `/openai/org-1/v1`).
    fn base_path(&self, org: &str) -> String;

    /// The `[accounts.credentials]` an account of `org` needs against the
    /// simulator, so demo, test and benchmark configs are generated, not
    /// hand-written per provider.
    /// Empty when a config cannot be generated (the credential is made
    /// outside, such as a key file): generated fleets leave the provider out.
    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)>;

    /// The credential a generated bad-key account gets wrong (the one the
    /// simulator checks; the others keep their valid format).
    fn spoiled_credential(&self) -> &'static str {
        "api_key"
    }

    /// The `provider = ...` of a config account for it (when the URL
    /// segment is shorter).
    fn config_provider(&self) -> &'static str {
        self.name()
    }

    /// Account settings whose values are paths on the simulator (the
    /// server root is put in front), such as a separate login URL.
    fn account_paths(&self, _org: &str) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Checks the request's credentials and required headers; the error is
    /// the provider's own reply (401, 400, ...).
    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply>;

    /// Answers an authorized request.
    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply;

    /// A 429 in the provider's error format, with `Retry-After`.
    fn rate_limited(&self, retry_after: u64) -> Reply;

    /// A 401 as the provider answers an expired or revoked credential.
    fn expired_credentials(&self) -> Reply {
        Reply::json(
            401,
            serde_json::json!({"error": {"message": "the credential has expired", "type": "authentication_error"}}),
        )
    }

    /// A 5xx in the provider's error format.
    fn server_error(&self) -> Reply;

    /// Ground truth of `org` over `[start, end)` (Unix seconds), comparable
    /// with `sum(...) GROUP BY day, model, unit` over `usage_daily` for an
    /// account that reads this provider as `options` say. An option the
    /// provider does not know is an error naming it.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String>;
}

/// Every simulated provider: one line each.
pub(crate) static REGISTRY: &[&dyn SimulatedProvider] = &[
    &openai::OpenAi,
    &anthropic::Anthropic,
    &fal::Fal,
    &runway::Runway,
    &piapi::PiApi,
    &openrouter::OpenRouter,
    &litellm::LiteLlm,
    &aws_bedrock::AwsBedrock,
    &azure::Azure,
    &google_vertex::GoogleVertex,
];

/// The provider registered under `name`.
pub(crate) fn find(name: &str) -> Option<&'static dyn SimulatedProvider> {
    REGISTRY.iter().copied().find(|p| p.name() == name)
}

/// Registered names, for error messages.
pub(crate) fn names() -> String {
    REGISTRY
        .iter()
        .map(|p| format!("'{}'", p.name()))
        .collect::<Vec<_>>()
        .join(", ")
}
