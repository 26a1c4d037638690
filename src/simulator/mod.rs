//! Provider simulator: a real HTTP server that answers like the providers'
//! usage and cost APIs (documented JSON formats, pagination, `group_by`,
//! bucket widths, auth and failure modes) from seeded, deterministic data.
//!
//! It exists so the README demo and the integration tests can run the daemon
//! end to end without real credentials, and compare what the daemon stored with
//! the simulator's ground truth ([`truth`], `GET /_sim/truth`).
//!
//! Each simulated provider is a folder under `providers/` implementing one
//! trait (auth, routes, error format, truth); the server dispatches
//! `/{provider}/{org}/...` through the registry. Routes (one server serves
//! every org):
//! - `/openai/{org}/v1/organization/usage/{completions,embeddings,...,file_search_calls,web_search_calls}`,
//!   `/openai/{org}/v1/organization/costs`, and the names lists
//!   `/openai/{org}/v1/organization/projects[/{id}/api_keys]`:
//!   `Authorization: Bearer <openai_api_key(org)>`.
//! - `/anthropic/{org}/v1/organizations/usage_report/messages`,
//!   `/anthropic/{org}/v1/organizations/cost_report`, the names lists
//!   `/anthropic/{org}/v1/organizations/{workspaces,api_keys}`, and the beta
//!   `/anthropic/{org}/v1/organizations/analytics/{usage,cost}` (these also
//!   need `anthropic-beta: analytics-usage-cost-2026-08-24`):
//!   `x-api-key: <anthropic_api_key(org)>`, `anthropic-version: 2023-06-01`.
//! - `/fal/{org}/v1/models/usage`: `Authorization: Key <fal_api_key(org)>`
//!   (the org's API-scope key, [`fal_api_scope_key`], gets 403).
//! - `POST /runway/{org}/v1/organization/usage`: `Authorization: Bearer
//!   <runway_api_key(org)>`, `X-Runway-Version: 2024-11-06`.
//! - `/piapi/{org}/account/info`: `x-api-key: <piapi_api_key(org)>`; the
//!   balance moves with `POST /_sim/restate` (provider `piapi`, today).
//! - `/openrouter/{org}/api/v1/activity`: `Authorization: Bearer
//!   <openrouter_management_key(org)>` (the inference key gets 403).
//! - `/litellm/{org}/user/daily/activity`: `Authorization: Bearer
//!   <litellm_api_key(org)>`; row-paged, dates cut across pages.
//! - `/azure/{org}/...`: Entra ID login (`login/{tenant}/oauth2/v2.0/token`), Cost
//!   Management query, Cognitive Services accounts and deployments, Azure Monitor
//!   metrics ([`azure_credentials`]; see `providers/azure`).
//! - `/google_vertex/{org}/token` (service-account JWT grant, keys registered
//!   with [`register_google_service_account`]), `/google_vertex/{org}/bigquery/v2/...`
//!   (`jobs.query`, `getQueryResults`) and `/google_vertex/{org}/monitoring/v3/...`:
//!   `Authorization: Bearer` with a token from that endpoint.
//! - `GET /_sim/truth?provider=&org=&start=&end=[&api=]`, `POST /_sim/faults`,
//!   `POST /_sim/restate`, `GET /_sim/stats` (provider requests only),
//!   `POST /_sim/org-faults` (orgs broken on every request, see [`fleet`]),
//!   `POST /_sim/clock` (`{"advance_secs": N}`: the simulated present moves
//!   N seconds ahead of the real one, as if that much time had passed),
//!   `GET /_sim/requests` (every provider request served, in order, when
//!   started with `record_requests`).

mod data;
mod faults;
pub mod fleet;
mod names;
mod providers;
mod query;
mod server;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use chrono::{DateTime, Utc};

pub use data::{normalize_model, Restatement, TruthRow};
pub use faults::{FaultPlan, OrgFault};
pub use names::NameChange;
#[doc(hidden)]
pub use providers::aws_bedrock::cbor as aws_cbor;
pub use providers::aws_bedrock::{
    bedrock_access_key_id, bedrock_external_id, bedrock_role_arn, bedrock_secret_access_key,
};
pub use providers::azure::{azure_credentials, AzureCredentials};
pub use providers::google_vertex::{
    billing_table as google_billing_table, register_service_account as register_google_service_account,
    service_account_json as google_service_account_json,
};
pub use providers::TruthOptions;
pub use server::StatEntry;

use server::SimState;

/// How to run the simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (see [`SimHandle::addr`]).
    pub listen: SocketAddr,
    /// Seed of the dataset: same seed, same data, in every process.
    pub seed: u64,
    /// Number of orgs served: `org-1` ..= `org-{orgs}`.
    pub orgs: u32,
    /// Days of history before the current UTC day.
    pub history_days: u32,
    /// Server worker threads (tests: 1; a benchmark: one per core, so the
    /// simulator is not what limits it).
    pub workers: usize,
    /// Keep every provider request served, for `GET /_sim/requests` (the
    /// scale benchmark replays a first sync's requests to time the
    /// simulator serving them alone). Memory grows with every request.
    pub record_requests: bool,
}

/// A running simulator. Dropping it without [`SimHandle::stop`] still asks the
/// server to stop (without waiting).
pub struct SimHandle {
    pub addr: SocketAddr,
    server: actix_web::dev::ServerHandle,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    state: Arc<SimState>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `base_url` an account of `provider` for `org` should use; `None`
    /// for a provider the simulator does not serve.
    pub fn provider_base_url(&self, provider: &str, org: &str) -> Option<String> {
        providers::find(provider).map(|p| format!("{}{}", self.base_url(), p.base_path(org)))
    }

    /// The `base_url` an OpenAI account of `org` should use.
    pub fn openai_base_url(&self, org: &str) -> String {
        format!("{}/openai/{org}/v1", self.base_url())
    }

    /// The `base_url` an Anthropic account of `org` should use.
    pub fn anthropic_base_url(&self, org: &str) -> String {
        format!("{}/anthropic/{org}", self.base_url())
    }

    /// The `base_url` a fal.ai account of `org` should use.
    pub fn fal_base_url(&self, org: &str) -> String {
        format!("{}/fal/{org}/v1", self.base_url())
    }

    /// The `base_url` a Runway account of `org` should use.
    pub fn runway_base_url(&self, org: &str) -> String {
        format!("{}/runway/{org}", self.base_url())
    }

    /// The `base_url` a PiAPI account of `org` should use.
    pub fn piapi_base_url(&self, org: &str) -> String {
        format!("{}/piapi/{org}", self.base_url())
    }

    /// The `base_url` an OpenRouter account of `org` should use.
    pub fn openrouter_base_url(&self, org: &str) -> String {
        format!("{}/openrouter/{org}/api/v1", self.base_url())
    }

    /// The `base_url` of the simulated LiteLLM proxy of `org`.
    pub fn litellm_base_url(&self, org: &str) -> String {
        format!("{}/litellm/{org}", self.base_url())
    }

    /// The BigQuery `base_url` of a Google Vertex account of `org`.
    pub fn google_vertex_base_url(&self, org: &str) -> String {
        format!("{}/google_vertex/{org}/bigquery/v2", self.base_url())
    }

    /// The `monitoring_url` of a Google Vertex account of `org`.
    pub fn google_vertex_monitoring_url(&self, org: &str) -> String {
        format!("{}/google_vertex/{org}/monitoring", self.base_url())
    }

    /// Ground truth with this simulator's seed, history and restatements,
    /// for an account with the provider's default settings. An unknown
    /// provider name yields no rows.
    pub fn truth(&self, provider: &str, org: &str, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<TruthRow> {
        self.truth_with(provider, org, start, end, &TruthOptions::default())
            .unwrap_or_default()
    }

    /// Ground truth for an account configured as `options` say (e.g. an
    /// Anthropic account with `api = "analytics"`). Errors name an unknown
    /// provider or an option the provider does not take.
    pub fn truth_with(
        &self,
        provider: &str,
        org: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        let p = providers::find(provider)
            .ok_or_else(|| format!("no simulated provider '{provider}' (known: {})", providers::names()))?;
        self.state.truth(p, org, start, end, options)
    }

    /// Replaces the pending fault counters (see [`FaultPlan`]).
    pub fn set_faults(&self, plan: FaultPlan) {
        self.state.set_faults(plan);
    }

    /// Breaks the given orgs on every request from now on (replacing any
    /// earlier set; see [`OrgFault`]).
    pub fn set_org_faults(&self, faults: std::collections::HashMap<String, OrgFault>) {
        self.state.set_org_faults(faults);
    }

    /// Fault counters not yet consumed.
    pub fn pending_faults(&self) -> FaultPlan {
        self.state.faults.lock().map(|f| f.pending()).unwrap_or_default()
    }

    /// Renames a workspace, project or key as the provider's console would:
    /// its name endpoints list the new name from now on.
    pub fn rename(&self, change: NameChange) {
        self.state.write_names().renames.push(change);
    }

    /// While `down`, every provider's name endpoints answer its 500 (usage
    /// endpoints keep answering).
    pub fn set_names_down(&self, down: bool) {
        self.state.write_names().down = down;
    }

    /// Restates a day from now on (see [`Restatement`]).
    pub fn restate(&self, restatement: Restatement) {
        self.state.restate(restatement);
    }

    /// Provider requests that came before the `Retry-After` of an earlier
    /// 429 had passed (a client that does not obey its throttling).
    pub fn too_early(&self) -> u64 {
        self.state.too_early.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Provider requests served so far, per path and status.
    pub fn stats(&self) -> Vec<StatEntry> {
        self.state.stats()
    }

    /// Stops accepting connections, lets in-flight requests finish, and waits
    /// for the server to exit.
    pub async fn stop(mut self) {
        self.server.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            // The stop command is sent eagerly; the returned future only waits.
            drop(self.server.stop(false));
        }
    }
}

/// Starts the simulator and returns once it is bound. Works inside an existing
/// tokio or actix runtime (the server runs as a spawned task with its own
/// single worker and no signal handling, so it never steals the host's Ctrl-C).
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    let mut state = SimState::new(config.seed, config.orgs, config.history_days);
    if config.record_requests {
        state.recorded = Some(Default::default());
    }
    let state = Arc::new(state);
    let data = web::Data::from(state.clone());
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(server::routes))
        .workers(config.workers.max(1))
        .disable_signals()
        .shutdown_timeout(5)
        .bind(config.listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("simulator bound no address"))?;
    let server = server.run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    tracing::info!(%addr, seed = config.seed, orgs = config.orgs, history_days = config.history_days, "provider simulator listening");
    Ok(SimHandle {
        addr,
        server: handle,
        task: Some(task),
        state,
    })
}

/// How [`account_toml`] writes one account.
#[derive(Clone, Debug, Default)]
pub struct AccountOptions<'a> {
    /// More top-level lines of the account (`backfill_days = 7`, ...).
    pub extra: &'a str,
    /// Credentials the simulator refuses (a bad key: 401).
    pub wrong_credentials: bool,
}

/// An `[[accounts]]` block named `id` for `provider`'s simulated `org` on the
/// simulator at `root` (`http://127.0.0.1:8787`); an unknown provider is an
/// error naming the known ones.
pub fn account_toml(
    root: &str,
    provider: &str,
    org: &str,
    id: &str,
    options: &AccountOptions<'_>,
) -> Result<String, String> {
    let p = providers::find(provider)
        .ok_or_else(|| format!("no simulated provider '{provider}' (known: {})", providers::names()))?;
    let credentials = p.account_credentials(org);
    if credentials.is_empty() {
        return Err(format!(
            "simulated '{provider}' accounts cannot be generated (their credential is made outside)"
        ));
    }
    let mut out = format!(
        "[[accounts]]\nid = \"{id}\"\nprovider = \"{}\"\nbase_url = \"{root}{}\"\n",
        p.config_provider(),
        p.base_path(org)
    );
    for (key, path) in p.account_paths(org) {
        out.push_str(&format!("{key} = \"{root}{path}\"\n"));
    }
    if !options.extra.is_empty() {
        out.push_str(options.extra.trim_end());
        out.push('\n');
    }
    out.push_str("[accounts.credentials]\n");
    for (key, value) in credentials {
        let value = if options.wrong_credentials && key == p.spoiled_credential() {
            format!("{value}WRONG")
        } else {
            value
        };
        out.push_str(&format!("{key} = \"{value}\"\n"));
    }
    out.push('\n');
    Ok(out)
}

/// Names of the simulated providers whose accounts [`account_toml`] can
/// generate, in registry order.
pub fn provider_names() -> Vec<&'static str> {
    providers::REGISTRY
        .iter()
        .filter(|p| !p.account_credentials("org-1").is_empty())
        .map(|p| p.name())
        .collect()
}

/// The simulated org ids: `org-1`, `org-2`, ...
pub fn org_ids(orgs: u32) -> Vec<String> {
    (1..=orgs).map(|i| format!("org-{i}")).collect()
}

/// The OpenAI admin key the simulator accepts for `org` (obviously fake).
/// The expired form of a simulated key: the simulator answers it with the
/// provider's "expired" 401 (for connection tests).
pub fn expired_api_key(key: &str) -> String {
    format!("{key}{EXPIRED_SUFFIX}")
}

/// What [`expired_api_key`] appends.
pub(crate) const EXPIRED_SUFFIX: &str = "-EXPIRED";

pub fn openai_api_key(org: &str) -> String {
    format!("sk-admin-FAKE-sim-{org}")
}

/// The Anthropic admin key the simulator accepts for `org` (obviously fake).
pub fn anthropic_api_key(org: &str) -> String {
    format!("sk-ant-admin01-FAKE-sim-{org}")
}

/// The fal.ai ADMIN key the simulator accepts for `org` (obviously fake).
pub fn fal_api_key(org: &str) -> String {
    format!("FAKE-sim-{org}-admin:0123456789abcdef")
}

/// A fal.ai key of `org` with the API scope only: the simulator answers 403.
pub fn fal_api_scope_key(org: &str) -> String {
    format!("FAKE-sim-{org}-api:0123456789abcdef")
}

/// The Runway API secret the simulator accepts for `org` (obviously fake).
pub fn runway_api_key(org: &str) -> String {
    format!("key_FAKE_sim_{org}_0123456789")
}

/// The PiAPI key the simulator accepts for `org` (obviously fake).
pub fn piapi_api_key(org: &str) -> String {
    format!("FAKE-sim-piapi-{org}-0123456789")
}

/// The OpenRouter inference key the simulator knows for `org`: `/activity`
/// refuses it (403), as OpenRouter refuses non-management keys.
pub fn openrouter_api_key(org: &str) -> String {
    format!("sk-or-v1-FAKE-sim-{org}")
}

/// The OpenRouter management key the simulator accepts for `org`.
pub fn openrouter_management_key(org: &str) -> String {
    format!("sk-or-v1-FAKE-sim-mgmt-{org}")
}

/// The LiteLLM master key the simulated proxy of `org` accepts.
pub fn litellm_api_key(org: &str) -> String {
    format!("sk-FAKE-sim-litellm-{org}")
}

/// Ground truth per UTC day, normalized model and unit for `[start, end)`,
/// as of now, for an account with the provider's default settings. This is
/// the implementation behind `GET /_sim/truth` and [`SimHandle::truth`]; each
/// provider documents its own semantics (`providers/*/data.rs`). In short:
/// - tokens and requests come from the usage endpoints, for hours starting in
///   the window (snapped outward to whole hours); `input_tokens` counts all
///   input (cache reads and writes included); Anthropic's legacy reports have
///   no requests (0), its analytics API has;
/// - quantities (tool calls, web searches, billed tokens) are per unit, so a
///   model can have one row per unit;
/// - `cost` sums the daily cost records of every day the window touches
///   (snapped outward to whole days), each record at the finest grain
///   converted to USD (Anthropic: cents / 100) and rounded half-even to 9
///   places; non-model costs (web search) are under model `""`;
/// - only complete hours (ending at or before now) have data.
///
/// An unknown provider name yields no rows.
pub fn truth(
    seed: u64,
    history_days: u32,
    provider: &str,
    org: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    restatements: &[Restatement],
) -> Vec<TruthRow> {
    let Some(provider) = providers::find(provider) else {
        return Vec::new();
    };
    let world = data::World {
        seed,
        history_days,
        now: Utc::now().timestamp(),
        restatements,
        names: &names::NO_NAMES,
    };
    provider
        .truth(
            &world,
            org,
            start.timestamp(),
            end.timestamp(),
            &TruthOptions::default(),
        )
        .unwrap_or_default()
}
