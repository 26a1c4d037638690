//! Azure: Entra ID login, Cost Management `query`, the Cognitive Services
//! account and deployment listings, and Azure Monitor metrics, in their
//! documented formats. One org is one tenant with one subscription.
//!
//! - `POST /azure/{org}/login/{tenant}/oauth2/v2.0/token` (form body):
//!   client credentials of [`azure_credentials`]; a wrong tenant, client id
//!   or secret gets Entra ID's `AADSTS` errors (400/401). A secret with the
//!   suffix `-NOCOST` is a principal without Cost Management Reader (the
//!   query answers 403 `RBACAccessDenied`); with `-STALE`, the first token it
//!   gets is already expired (ARM answers 401 `ExpiredAuthenticationToken`).
//! - `POST .../providers/Microsoft.CostManagement/query`: `ActualCost`,
//!   `Daily`, grouped by `ResourceId` and `Meter`; 5 rows a page, `nextLink`
//!   (`$skiptoken`) to be POSTed with the same body; columns in a
//!   non-obvious order; org-2 bills in EUR (with `CostUSD`); every fourth
//!   day carries a negative service-credit row.
//! - `GET .../Microsoft.CognitiveServices/accounts` (2 a page, one Speech
//!   account that has no tokens), `.../accounts/{name}/deployments`,
//!   `.../accounts/{name}/providers/Microsoft.Insights/metrics`
//!   (`ProcessedPromptTokens`, `GeneratedTokens`, `PT1H`, `Total`, split by
//!   `ModelDeploymentName`; hours without data have no `total`).

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, floor, hours_of, money, object, round9, text, traffic, OrgDraw, Row, TruthBook, TruthRow, World,
    DAY,
};
use crate::simulator::query::Params;
use crate::simulator::server::Reply;

pub(crate) const NAME: &str = "azure";

/// The service principal and subscription the simulator accepts for an org
/// (obviously fake values in the real formats).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
}

/// A readable fake GUID: the kind in the second group, the org's number
/// (`org-12` -> 12) in the last, so a config can be written by hand.
fn guid(kind: &str, org: &str) -> String {
    let group = match kind {
        "tenant" => "7e4a",
        "client" => "c11e",
        _ => "5b5c",
    };
    let number: u64 = org
        .trim_start_matches("org-")
        .parse()
        .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_64(org.as_bytes()) & 0xffff_ffff_ffff);
    format!("00000000-{group}-4000-a000-{number:012x}")
}

/// The credentials of `org`'s simulated service principal.
pub fn azure_credentials(org: &str) -> AzureCredentials {
    AzureCredentials {
        tenant_id: guid("tenant", org),
        client_id: guid("client", org),
        client_secret: format!("FAKE8Q~sim-{org}-client-secret-0123456789"),
        subscription_id: guid("subscription", org),
    }
}

pub(crate) struct Azure;

struct Account {
    name: &'static str,
    kind: &'static str,
    location: &'static str,
    group: &'static str,
}

const ACCOUNTS: [Account; 3] = [
    Account {
        name: "aoai",
        kind: "OpenAI",
        location: "eastus",
        group: "rg-ai",
    },
    Account {
        name: "speech",
        kind: "SpeechServices",
        location: "eastus",
        group: "rg-ai",
    },
    Account {
        name: "hub",
        kind: "AIServices",
        location: "swedencentral",
        group: "rg-hub",
    },
];

/// (account index, deployment, model, model version, meter stem, USD cents
/// per million input/output tokens, base prompt tokens an hour).
struct Stream {
    account: usize,
    deployment: &'static str,
    model: &'static str,
    version: &'static str,
    meter: &'static str,
    price: (i64, i64),
    base: i64,
}

const STREAMS: [Stream; 3] = [
    Stream {
        account: 0,
        deployment: "chat-prod",
        model: "gpt-4o",
        version: "2024-08-06",
        meter: "gpt-4o-0806",
        price: (250, 1000),
        base: 40_000,
    },
    Stream {
        account: 0,
        deployment: "chat-mini",
        model: "gpt-4o-mini",
        version: "2024-07-18",
        meter: "gpt-4o-mini-0718",
        price: (15, 60),
        base: 120_000,
    },
    Stream {
        account: 2,
        deployment: "embed",
        model: "text-embedding-3-small",
        version: "1",
        meter: "text-embedding-3-small",
        price: (2, 0),
        base: 300_000,
    },
];

const CREDIT_METER: &str = "Azure OpenAI service credit";
/// Cost rows per page without `$top` (small, so paging is exercised; the
/// real service's default is 1,000); `$top` may ask for up to 5,000.
const PAGE_ROWS: usize = 5;
const MAX_PAGE_ROWS: usize = 5000;
const LIST_PAGE: usize = 2;

fn account_id(org: &str, a: &Account) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.CognitiveServices/accounts/{}-{org}",
        azure_credentials(org).subscription_id,
        a.group,
        a.name
    )
}

/// Hourly [prompt, generated] per stream, restated.
fn hour_tokens(world: &World<'_>, org: &str, hour: i64) -> Vec<[i64; 2]> {
    if !world.has_data(hour) {
        return vec![[0, 0]; STREAMS.len()];
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let rows: Vec<Row> = STREAMS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let r = |f: i64| draw.at(&[hour, i as i64, f]);
            let prompt = s.base * traffic(hour) / 100 * (50 + (r(0) % 100) as i64) / 100;
            let generated = if s.price.1 == 0 {
                0
            } else {
                prompt * (5 + (r(1) % 20) as i64) / 100
            };
            Row::usage(vec![Value::from(i as i64)], vec![prompt, generated])
        })
        .collect();
    world
        .restate(NAME, org, hour, rows)
        .into_iter()
        .map(|r| [r.vals[0], r.vals[1]])
        .collect()
}

/// One cost row: (resource id, meter, USD amount).
fn day_costs(world: &World<'_>, org: &str, day: i64) -> Vec<(String, String, Decimal)> {
    let rate = OrgDraw::new(world.seed, NAME, org).rate();
    let mut totals = vec![[0i64; 2]; STREAMS.len()];
    for hour in hours_of(day, day + DAY) {
        for (t, h) in totals.iter_mut().zip(hour_tokens(world, org, hour)) {
            t[0] += h[0];
            t[1] += h[1];
        }
    }
    let mut out = Vec::new();
    for (s, t) in STREAMS.iter().zip(&totals) {
        let id = account_id(org, &ACCOUNTS[s.account]).to_ascii_lowercase();
        for (dir, tokens, cents) in [("Inp", t[0], s.price.0), ("Outp", t[1], s.price.1)] {
            if tokens > 0 && cents > 0 {
                let usd = money(tokens, Decimal::new(cents, 2), rate, 6);
                out.push((id.clone(), format!("{}-{dir}-glbl 1M Tokens", s.meter), usd));
            }
        }
    }
    if (day / DAY) % 4 == 0 {
        if let Some((id, _, usd)) = out.first().cloned() {
            out.push((id, CREDIT_METER.to_string(), -(usd / Decimal::from(10))));
        }
    }
    out.sort();
    out
}

/// org-2 bills in EUR: (currency, units of it per USD).
fn currency(org: &str) -> (&'static str, Decimal) {
    if org == "org-2" {
        ("EUR", Decimal::new(92, 2))
    } else {
        ("USD", Decimal::ONE)
    }
}

fn exact(d: Decimal) -> Value {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A count as Azure Monitor writes it: a float (`18234.0`).
fn float_total(n: i64) -> Value {
    Number::from_str(&format!("{n}.0"))
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

fn arm_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(status, json!({"error": {"code": code, "message": message}}))
}

fn aad_error(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": error, "error_description": description, "error_codes": [aad_code(description)],
               "timestamp": "2025-01-01 00:00:00Z", "trace_id": "00000000-0000-0000-0000-000000000000"}),
    )
}

/// The number of an `AADSTS<digits>:` message.
fn aad_code(description: &str) -> Value {
    let digits: String = description
        .trim_start_matches("AADSTS")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse::<u64>().map(Value::from).unwrap_or(Value::Null)
}

/// Secrets whose one stale token was already handed out.
static STALE_ISSUED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn login(org: &str, tail: &str, body: &[u8]) -> Reply {
    let creds = azure_credentials(org);
    let tenant = tail.split('/').nth(1).unwrap_or_default();
    if tenant != creds.tenant_id {
        return aad_error(
            400,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    }
    let form = Params::parse(std::str::from_utf8(body).unwrap_or_default());
    if form.get("grant_type") != Some("client_credentials")
        || !form.get("scope").is_some_and(|s| s.ends_with("/.default"))
    {
        return aad_error(
            400,
            "invalid_scope",
            "AADSTS70011: The provided request must include a 'scope' input parameter ending in /.default.",
        );
    }
    if form.get("client_id") != Some(creds.client_id.as_str()) {
        return aad_error(
            400,
            "unauthorized_client",
            "AADSTS700016: Application with identifier was not found in the directory.",
        );
    }
    let secret = form.get("client_secret").unwrap_or_default();
    let (base, variant) = match secret.rsplit_once('-') {
        Some((base, v @ ("NOCOST" | "STALE"))) => (base, v),
        _ => (secret, ""),
    };
    if base != creds.client_secret {
        return aad_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.");
    }
    let n = rand_suffix();
    let token = match variant {
        "NOCOST" => format!("sim-aad-{org}-nocost-{n}"),
        "STALE"
            if STALE_ISSUED
                .lock()
                .map(|mut s| s.insert(format!("{org}/{secret}")))
                .unwrap_or(false) =>
        {
            format!("sim-aad-{org}-{n}{}", crate::simulator::EXPIRED_SUFFIX)
        }
        _ => format!("sim-aad-{org}-{n}"),
    };
    Reply::json(
        200,
        json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}),
    )
}

fn rand_suffix() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn host(request: &SimRequest<'_>) -> String {
    request.header("host").unwrap_or("127.0.0.1").to_string()
}

fn next_link(request: &SimRequest<'_>, skip: usize) -> String {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(request.query.as_bytes())
        .filter(|(k, _)| k != "$skiptoken")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .chain([("$skiptoken".to_string(), skip.to_string())])
        .collect();
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!(
        "http://{}/{NAME}/{}/{}?{query}",
        host(request),
        request.org,
        request.tail
    )
}

fn skip(request: &SimRequest<'_>) -> usize {
    Params::parse(request.query)
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The scope's resource group, if the path names one; `Err` for another subscription.
fn scope_group<'a>(org: &str, tail: &'a str) -> Result<Option<&'a str>, Reply> {
    let parts: Vec<&str> = tail.split('/').collect();
    if parts.first() != Some(&"subscriptions") || parts.get(1) != Some(&azure_credentials(org).subscription_id.as_str())
    {
        return Err(arm_error(
            404,
            "SubscriptionNotFound",
            "The subscription could not be found.",
        ));
    }
    Ok((parts.get(2) == Some(&"resourceGroups")).then(|| parts.get(3).copied().unwrap_or_default()))
}

fn cost_query(world: &World<'_>, request: &SimRequest<'_>, token: &str) -> Reply {
    if token.contains("-nocost-") {
        return arm_error(403, "RBACAccessDenied", "The client does not have authorization to perform action 'Microsoft.CostManagement/query/action' over scope or the scope is invalid.");
    }
    let group = match scope_group(request.org, request.tail) {
        Ok(g) => g,
        Err(reply) => return reply,
    };
    let bad = |m: &str| arm_error(400, "BadRequest", m);
    let Ok(body) = serde_json::from_slice::<Value>(request.body) else {
        return bad("Invalid query definition: the body is not JSON.");
    };
    if body["type"] != "ActualCost" || body["timeframe"] != "Custom" || body["dataset"]["granularity"] != "Daily" {
        return bad("Invalid query definition: type, timeframe or granularity.");
    }
    let groups: Vec<&str> = body["dataset"]["grouping"]
        .as_array()
        .map(|g| g.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    if groups != ["ResourceId", "Meter"] {
        return bad("Invalid query definition: this simulator serves grouping by ResourceId and Meter.");
    }
    let time = |field: &str| {
        body["timePeriod"][field]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc).timestamp())
    };
    let (Some(from), Some(to)) = (time("from"), time("to")) else {
        return bad("Invalid query definition: timePeriod.from and timePeriod.to are required for Custom.");
    };
    let (code, per_usd) = currency(request.org);
    let mut rows = Vec::new();
    for day in days_of(from, to + 1) {
        let date: i64 = day_of(day).format("%Y%m%d").to_string().parse().unwrap_or_default();
        for (id, meter, usd) in day_costs(world, request.org, day) {
            if group.is_some_and(|g| !id.contains(&format!("/resourcegroups/{}/", g.to_ascii_lowercase()))) {
                continue;
            }
            rows.push(json!([date, exact(usd * per_usd), id, exact(usd), meter, code]));
        }
    }
    let page_rows = match Params::parse(request.query).get("$top") {
        None => PAGE_ROWS,
        Some(top) => match top.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_ROWS).contains(&n) => n,
            _ => return bad(&format!("$top must be between 1 and {MAX_PAGE_ROWS}, got '{top}'")),
        },
    };
    let from_row = skip(request).min(rows.len());
    let to_row = (from_row + page_rows).min(rows.len());
    let next = (to_row < rows.len()).then(|| next_link(request, to_row));
    let columns = json!([
        {"name": "UsageDate", "type": "Number"}, {"name": "Cost", "type": "Number"},
        {"name": "ResourceId", "type": "String"}, {"name": "CostUSD", "type": "Number"},
        {"name": "Meter", "type": "String"}, {"name": "Currency", "type": "String"}
    ]);
    Reply::json(
        200,
        json!({
            "id": format!("subscriptions/{}/providers/Microsoft.CostManagement/query/sim", azure_credentials(request.org).subscription_id),
            "name": "sim", "type": "Microsoft.CostManagement/query",
            "properties": object([
                ("nextLink", text(next)),
                ("columns", columns),
                ("rows", Value::Array(rows.drain(from_row..to_row).collect())),
            ])
        }),
    )
}

fn list_accounts(request: &SimRequest<'_>) -> Reply {
    let group = match scope_group(request.org, request.tail) {
        Ok(g) => g,
        Err(reply) => return reply,
    };
    let items: Vec<Value> = ACCOUNTS
        .iter()
        .filter(|a| group.is_none_or(|g| g.eq_ignore_ascii_case(a.group)))
        .map(|a| json!({"id": account_id(request.org, a), "name": format!("{}-{}", a.name, request.org), "type": "Microsoft.CognitiveServices/accounts",
                        "kind": a.kind, "location": a.location, "sku": {"name": "S0"}, "properties": {"provisioningState": "Succeeded"}}))
        .collect();
    paged(request, items)
}

fn paged(request: &SimRequest<'_>, items: Vec<Value>) -> Reply {
    let from = skip(request).min(items.len());
    let to = (from + LIST_PAGE).min(items.len());
    let mut body = json!({"value": items[from..to]});
    if to < items.len() {
        body["nextLink"] = Value::String(next_link(request, to));
    }
    Reply::json(200, body)
}

/// The index of the account a path names (`.../accounts/{name}/...`).
fn account_of(request: &SimRequest<'_>) -> Option<usize> {
    ACCOUNTS.iter().position(|a| {
        let id = account_id(request.org, a);
        let id = id.trim_start_matches('/');
        request.tail.strip_prefix(id).is_some_and(|rest| rest.starts_with('/'))
    })
}

fn deployments(request: &SimRequest<'_>, index: usize) -> Reply {
    let items: Vec<Value> = STREAMS
        .iter()
        .filter(|s| s.account == index)
        .map(|s| json!({"name": s.deployment, "type": "Microsoft.CognitiveServices/accounts/deployments",
                        "sku": {"name": "GlobalStandard", "capacity": 10},
                        "properties": {"model": {"format": "OpenAI", "name": s.model, "version": s.version}, "provisioningState": "Succeeded"}}))
        .collect();
    paged(request, items)
}

fn metrics(world: &World<'_>, request: &SimRequest<'_>, index: usize) -> Reply {
    let params = Params::parse(request.query);
    let bad = |m: &str| arm_error(400, "BadRequest", m);
    if params.get("interval") != Some("PT1H") || params.get("aggregation") != Some("Total") {
        return bad("this simulator serves interval=PT1H and aggregation=Total");
    }
    if !params
        .get("$filter")
        .is_some_and(|f| f.contains("ModelDeploymentName eq '*'"))
    {
        return bad("split by ModelDeploymentName with $filter=ModelDeploymentName eq '*'");
    }
    let names: Vec<&str> = params.get("metricnames").unwrap_or_default().split(',').collect();
    if let Some(unknown) = names
        .iter()
        .find(|n| !["ProcessedPromptTokens", "GeneratedTokens"].contains(n))
    {
        return bad(&format!(
            "Failed to find metric configuration for provider: Microsoft.CognitiveServices, metric: {unknown}"
        ));
    }
    let span: Option<(i64, i64)> = params
        .get("timespan")
        .and_then(|t| t.split_once('/'))
        .and_then(|(a, b)| {
            let p = |x: &str| DateTime::parse_from_rfc3339(x).ok().map(|t| t.timestamp());
            Some((p(a)?, p(b)?))
        });
    let Some((start, end)) = span else {
        return bad("timespan must be start/end in ISO 8601");
    };
    if end - start > 31 * DAY {
        return bad("timespan is longer than the 31 days one call may ask for");
    }
    let id = account_id(request.org, &ACCOUNTS[index]);
    // Every stream's tokens of an hour are drawn together: once per hour,
    // not once per (metric, deployment, hour).
    let hours: Vec<(String, Option<_>)> = hours_of(start, end)
        .map(|hour| {
            let at = DateTime::from_timestamp(hour, 0)
                .unwrap_or_default()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            (at, world.has_data(hour).then(|| hour_tokens(world, request.org, hour)))
        })
        .collect();
    let value: Vec<Value> = names
        .iter()
        .map(|name| {
            let slot = usize::from(*name == "GeneratedTokens");
            let series: Vec<Value> = STREAMS
                .iter()
                .enumerate()
                .filter(|(_, s)| s.account == index)
                .map(|(i, s)| {
                    let data: Vec<Value> = hours
                        .iter()
                        .map(|(at, tokens)| match tokens {
                            Some(tokens) => object([
                                ("timeStamp", Value::from(at.as_str())),
                                ("total", float_total(tokens[i][slot])),
                            ]),
                            None => object([("timeStamp", Value::from(at.as_str()))]),
                        })
                        .collect();
                    object([
                        ("metadatavalues", json!([{"name": {"value": "modeldeploymentname", "localizedValue": "modeldeploymentname"}, "value": s.deployment}])),
                        ("data", Value::Array(data)),
                    ])
                })
                .collect();
            object([
                ("id", Value::from(format!("{id}/providers/Microsoft.Insights/metrics/{name}"))),
                ("type", Value::from("Microsoft.Insights/metrics")),
                ("name", json!({"value": name, "localizedValue": name})),
                ("unit", Value::from("Count")),
                ("timeseries", Value::Array(series)),
                ("errorCode", Value::from("Success")),
            ])
        })
        .collect();
    Reply::json(
        200,
        object([
            ("cost", Value::from(59)),
            ("timespan", text(params.get("timespan").map(str::to_string))),
            ("interval", Value::from("PT1H")),
            ("value", Value::Array(value)),
            ("namespace", Value::from("Microsoft.CognitiveServices/accounts")),
            ("resourceregion", Value::from(ACCOUNTS[index].location)),
        ]),
    )
}

impl SimulatedProvider for Azure {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}")
    }

    fn spoiled_credential(&self) -> &'static str {
        "client_secret"
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        let c = azure_credentials(org);
        vec![
            ("tenant_id", c.tenant_id),
            ("client_id", c.client_id),
            ("client_secret", c.client_secret),
            ("subscription_id", c.subscription_id),
        ]
    }

    fn config_provider(&self) -> &'static str {
        "azure_openai"
    }

    fn account_paths(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("login_url", format!("/{NAME}/{org}/login"))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        if request.tail.starts_with("login/") && request.org_known {
            return Ok(());
        }
        match request.header("authorization") {
            Some(h) if request.org_known && h.starts_with(&format!("Bearer sim-aad-{}-", request.org)) => Ok(()),
            _ => Err(arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        let token = request.header("authorization").unwrap_or_default();
        let tail = request.tail;
        match request.method {
            "POST" if tail.starts_with("login/") && tail.ends_with("/oauth2/v2.0/token") => {
                login(request.org, tail, request.body)
            }
            "POST" if tail.ends_with("/providers/Microsoft.CostManagement/query") => cost_query(world, request, token),
            "GET" if tail.ends_with("/providers/Microsoft.CognitiveServices/accounts") => list_accounts(request),
            "GET" => match account_of(request) {
                Some(i) if tail.ends_with("/deployments") => deployments(request, i),
                Some(i) if tail.ends_with("/providers/Microsoft.Insights/metrics") => metrics(world, request, i),
                _ => arm_error(404, "ResourceNotFound", "The Resource was not found."),
            },
            _ => arm_error(404, "NotFound", "No route."),
        }
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = arm_error(429, "429", "Too many requests. Please retry.");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn expired_credentials(&self) -> Reply {
        arm_error(
            401,
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time is earlier than current UTC time.",
        )
    }

    fn server_error(&self) -> Reply {
        arm_error(500, "InternalServerError", "Encountered internal server error.")
    }

    /// Per (UTC day, normalized model, unit ""): prompt and generated tokens
    /// of the hours in the window (input, output); `cost` = the USD of every
    /// cost row of the days the window touches, each rounded to 9 places;
    /// `credits` = the service-credit rows, positive, under model "".
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("azure has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for hour in hours_of(start, end) {
            for (s, t) in STREAMS.iter().zip(hour_tokens(world, org, hour)) {
                let row = book.entry(day_of(hour), s.model, "");
                row.input_tokens += t[0];
                row.output_tokens += t[1];
            }
        }
        for day in days_of(start, end) {
            for (_, meter, usd) in day_costs(world, org, floor(day, DAY)) {
                if meter == CREDIT_METER {
                    book.entry(day_of(day), "", "").credits += round9(-usd);
                } else {
                    let model = crate::providers::azure_openai::meter_model(&meter);
                    book.entry(day_of(day), &model, "").cost += round9(usd);
                }
            }
        }
        Ok(book.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_demo_config_holds_the_simulated_principal_of_org_1() {
        let demo = include_str!("../../../../config/demo.toml");
        let c = azure_credentials("org-1");
        for value in [&c.tenant_id, &c.client_id, &c.client_secret, &c.subscription_id] {
            assert!(demo.contains(&format!("\"{value}\"")), "config/demo.toml lacks {value}");
        }
        assert_ne!(azure_credentials("org-2"), c);
        assert!(crate::providers::azure_openai::wrong_secret_type(&c.client_secret).is_none());
    }
}
