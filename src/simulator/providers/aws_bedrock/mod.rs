//! AWS Bedrock: the three AWS APIs the adapter's SDK clients call, as they
//! speak them, under `/aws_bedrock/{org}/`:
//!
//! - `ce/`: Cost Explorer `GetCostAndUsage` (awsJson 1.1, `X-Amz-Target:
//!   AWSInsightsIndexService.GetCostAndUsage`), DAILY, grouped by SERVICE
//!   and USAGE_TYPE, filtered to Bedrock + Marketplace, usage or (RECORD_TYPE
//!   Credit/Refund) credits. Three days per page; `NextPageToken` carries a
//!   hash of the request, and a page asked with other parameters is refused
//!   with `RequestChangedException`, as AWS does. Days of the current month
//!   are `Estimated`. A Marketplace row of a non-Bedrock product is mixed in
//!   (the filter on BILLING_ENTITY returns it too).
//! - `monitoring/`: CloudWatch `ListMetrics` and `GetMetricData` in Smithy
//!   RPC v2 CBOR (what the current SDK sends), 2 metrics per ListMetrics
//!   page, 150 datapoints per GetMetricData page.
//! - `sts/`: STS `AssumeRole` (awsQuery: form in, XML out) for the org's
//!   role ([`bedrock_role_arn`], [`bedrock_external_id`]).
//!
//! Auth: SigV4's `Credential=<key id>/...` must name the org's IAM key
//! ([`bedrock_access_key_id`]) or a key the org's role handed out (with its
//! `X-Amz-Security-Token`); signatures are not verified. An expired
//! credential is answered `ExpiredTokenException`.
//!
//! Data: hourly token counts per model (CloudWatch) and, from the same
//! counts, the daily bill per usage type (Cost Explorer): prices per 1K
//! tokens times the org's rate, `UsageQuantity` in 1K-token units. A
//! provisioned-throughput line with a usage type the adapter cannot read,
//! service-wide credits (`NoUsageType` -> `bedrock-general`) and credits on
//! one model's input complete the bill.

pub mod cbor;

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use xxhash_rust::xxh3::xxh3_64;

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{
    day_of, days_of, hours_of, money, object, round9, traffic, OrgDraw, Row, TruthBook, TruthRow, World, DAY, HOUR,
};
use crate::simulator::server::Reply;

pub(crate) const NAME: &str = "aws_bedrock";

/// The IAM access key id the simulator accepts for `org` (obviously fake).
pub fn bedrock_access_key_id(org: &str) -> String {
    format!("AKIAFAKESIM{}", org.to_ascii_uppercase().replace('-', ""))
}

/// The secret of [`bedrock_access_key_id`] (not verified: no signatures).
pub fn bedrock_secret_access_key(org: &str) -> String {
    format!("FAKE-sim-secret-{org}-0123456789abcdef")
}

/// The role `org`'s key may assume.
pub fn bedrock_role_arn(org: &str) -> String {
    format!("arn:aws:iam::000000000{:03}:role/tokentra-read", org_number(org))
}

/// The external id the role's trust policy asks for.
pub fn bedrock_external_id(org: &str) -> String {
    format!("FAKE-sim-external-{org}")
}

fn org_number(org: &str) -> u32 {
    org.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Key ids handed out by AssumeRole for `org`.
fn assumed_key_id(org: &str) -> String {
    format!("ASIAFAKESIM{}", org.to_ascii_uppercase().replace('-', ""))
}

fn session_prefix(org: &str) -> String {
    format!("FAKE-sim-session-{org}-")
}

pub(crate) struct AwsBedrock;

/// A model and how it is billed.
struct Model {
    /// CloudWatch `ModelId`.
    model_id: &'static str,
    /// What the daemon's normalizer makes of it (the truth's model).
    normalized: &'static str,
    /// Cost Explorer SERVICE.
    service: &'static str,
    /// Usage types per metric index (input, output, cache read, cache write).
    usage_types: [Option<&'static str>; 4],
    /// The model the Cost Explorer rows normalize to.
    billed_as: &'static str,
    /// USD per 1K tokens, 4 places, per direction.
    prices: [i64; 4],
    base: i64,
}

const MODELS: [Model; 2] = [
    Model {
        model_id: "amazon.nova-lite-v1:0",
        normalized: "nova-lite-v1",
        service: "Amazon Bedrock",
        usage_types: [
            Some("USE1-NovaLite-input-tokens"),
            Some("USE1-NovaLite-output-tokens"),
            None,
            None,
        ],
        billed_as: "novalite",
        prices: [6, 24, 0, 0],
        base: 400_000,
    },
    Model {
        model_id: "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        normalized: "claude-sonnet-4-5",
        service: "Claude Sonnet 4.5 (Amazon Bedrock Edition)",
        usage_types: [
            Some("USE1-MP:USE1_InputTokenCount-Units"),
            Some("USE1-MP:USE1_OutputTokenCount-Units"),
            Some("USE1-MP:USE1_CacheReadInputTokenCount-Units"),
            Some("USE1-MP:USE1_CacheWriteInputTokenCount-Units"),
        ],
        billed_as: "claude-sonnet-4-5",
        prices: [30, 150, 3, 38],
        base: 250_000,
    },
];

/// CloudWatch metric names, in `Row::vals` order.
const METRIC_NAMES: [&str; 5] = [
    "InputTokenCount",
    "OutputTokenCount",
    "CacheReadInputTokenCount",
    "CacheWriteInputTokenCount",
    "Invocations",
];

/// The `usage_daily` unit of each direction's `UsageQuantity`.
const UNITS: [&str; 4] = [
    "input-token-units",
    "output-token-units",
    "cache-read-token-units",
    "cache-write-token-units",
];

const PROVISIONED: &str = "USE1-ProvisionedThroughput-NovaPro-ModelUnits";
const GENERAL: &str = "NoUsageType";

/// One hour of one model: `vals` = [input, output, cache read, cache write,
/// invocations] (after restatements).
fn hour_rows(world: &World<'_>, org: &str, hour: i64) -> Vec<(usize, Row)> {
    if !world.has_data(hour) {
        return Vec::new();
    }
    let draw = OrgDraw::new(world.seed, NAME, org);
    let mut out = Vec::new();
    for (i, m) in MODELS.iter().enumerate() {
        let r = |f: i64| draw.at(&[hour, i as i64, f]);
        if r(0) % 100 >= 85 {
            continue; // idle hour
        }
        let input = m.base * traffic(hour) / 100 * (50 + (r(1) % 100) as i64) / 100 / 24;
        let output = input * (5 + (r(2) % 25) as i64) / 100;
        let (read, write) = if m.usage_types[2].is_some() {
            (input * (r(3) % 60) as i64 / 100, input * (r(4) % 10) as i64 / 100)
        } else {
            (0, 0)
        };
        let invocations = 1 + input / (500 + (r(5) % 1500) as i64);
        out.push((
            i,
            Row::usage(
                vec![Value::from(i as i64)],
                vec![input, output, read, write, invocations],
            ),
        ));
    }
    let (index, rows): (Vec<usize>, Vec<Row>) = out.into_iter().unzip();
    index.into_iter().zip(world.restate(NAME, org, hour, rows)).collect()
}

/// One bill line of a day: (service, usage type, cost, quantity).
struct Line {
    service: &'static str,
    usage_type: &'static str,
    model: usize,
    direction: Option<usize>,
    cost: Decimal,
    quantity: Decimal,
}

/// The day's usage lines (tokens of every complete hour, priced per 1K).
fn usage_lines(world: &World<'_>, org: &str, day: i64) -> Vec<Line> {
    let rate = OrgDraw::new(world.seed, NAME, org).rate();
    let mut tokens: BTreeMap<(usize, usize), i64> = BTreeMap::new();
    for hour in (day..day + DAY).step_by(HOUR as usize) {
        for (i, row) in hour_rows(world, org, hour) {
            for d in 0..4 {
                *tokens.entry((i, d)).or_default() += row.vals[d];
            }
        }
    }
    let mut lines = Vec::new();
    for ((i, d), n) in tokens {
        let m = &MODELS[i];
        let Some(usage_type) = m.usage_types[d] else { continue };
        if n == 0 {
            continue;
        }
        lines.push(Line {
            service: m.service,
            usage_type,
            model: i,
            direction: Some(d),
            cost: money(n, Decimal::new(m.prices[d], 4), rate, 3),
            quantity: Decimal::from(n) / Decimal::from(1000),
        });
    }
    if !lines.is_empty() {
        // Provisioned throughput: a fixed daily fee, in a usage type the
        // adapter keeps raw.
        lines.push(Line {
            service: "Amazon Bedrock",
            usage_type: PROVISIONED,
            model: usize::MAX,
            direction: None,
            cost: Decimal::new(314_159, 5) * rate,
            quantity: Decimal::from(24),
        });
    }
    lines
}

/// The day's credits (negative amounts): service-wide every third day, and
/// a tenth of Claude's input on even days.
fn credit_lines(world: &World<'_>, org: &str, day: i64) -> Vec<Line> {
    let usage = usage_lines(world, org, day);
    if usage.is_empty() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    let n = day / DAY;
    if n % 3 == 0 {
        lines.push(Line {
            service: "Amazon Bedrock",
            usage_type: GENERAL,
            model: usize::MAX,
            direction: None,
            cost: Decimal::new(-1_250_000_001, 9),
            quantity: Decimal::ZERO,
        });
    }
    if n % 2 == 0 {
        if let Some(claude) = usage.iter().find(|l| l.model == 1 && l.direction == Some(0)) {
            lines.push(Line {
                service: claude.service,
                usage_type: claude.usage_type,
                model: 1,
                direction: Some(0),
                cost: -claude.cost / Decimal::from(10),
                quantity: Decimal::ZERO,
            });
        }
    }
    lines
}

/// Days of the current month (and today) are estimated.
fn estimated(world: &World<'_>, day: i64) -> bool {
    let today = day_of(world.now);
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).unwrap_or(today);
    day_of(day) >= first
}

fn exact(d: Decimal) -> String {
    d.normalize().to_string()
}

fn json_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({"__type": kind, "message": message}))
}

fn xml_error(status: u16, code: &str, message: &str) -> Reply {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code>\
         <Message>{message}</Message></Error><RequestId>sim</RequestId></ErrorResponse>"
    );
    Reply::raw(status, body.into_bytes(), "text/xml")
}

/// The key id a SigV4 `Authorization` header names.
fn key_id(request: &SimRequest<'_>) -> Option<String> {
    let auth = request.header("authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    credential.split('/').next().map(str::to_string)
}

fn days_between(start: &str, end: &str) -> Option<(i64, i64)> {
    let parse = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(Default::default()).and_utc().timestamp())
    };
    Some((parse(start)?, parse(end)?))
}

/// Cost Explorer days per page.
const CE_PAGE_DAYS: usize = 3;

fn cost_and_usage(world: &World<'_>, org: &str, body: &[u8]) -> Reply {
    let Ok(mut request) = serde_json::from_slice::<Value>(body) else {
        return json_error(400, "SerializationException", "the body is not JSON");
    };
    let token = request
        .as_object_mut()
        .and_then(|o| o.remove("NextPageToken"))
        .and_then(|t| t.as_str().map(str::to_string));
    // The token names the request it belongs to.
    let fingerprint = format!("{:016x}", xxh3_64(request.to_string().as_bytes()));
    let offset = match token {
        None => 0,
        Some(t) => match t.split_once('.') {
            Some((hash, n)) if hash == fingerprint => n.parse::<usize>().unwrap_or(usize::MAX),
            Some(_) => {
                return json_error(
                    400,
                    "RequestChangedException",
                    "Your request parameters changed between pages. Submit all subsequent requests with the same parameters.",
                )
            }
            None => return json_error(400, "InvalidNextTokenException", "The NextPageToken is invalid."),
        },
    };
    let period = &request["TimePeriod"];
    let Some((start, end)) = days_between(
        period["Start"].as_str().unwrap_or_default(),
        period["End"].as_str().unwrap_or_default(),
    ) else {
        return json_error(
            400,
            "ValidationException",
            "TimePeriod Start and End must be YYYY-MM-DD",
        );
    };
    if end <= start || request["Granularity"] != "DAILY" {
        return json_error(
            400,
            "ValidationException",
            "Start must be before End; this simulator serves DAILY",
        );
    }
    let groups: Vec<&str> = request["GroupBy"]
        .as_array()
        .map(|g| g.iter().filter_map(|d| d["Key"].as_str()).collect())
        .unwrap_or_default();
    if groups != ["SERVICE", "USAGE_TYPE"] {
        return json_error(
            400,
            "ValidationException",
            "this simulator groups by SERVICE and USAGE_TYPE",
        );
    }
    let filter = request["Filter"].to_string();
    if !filter.contains("Amazon Bedrock") || !filter.contains("RECORD_TYPE") {
        return json_error(
            400,
            "ValidationException",
            "this simulator serves Bedrock usage or credits by RECORD_TYPE",
        );
    }
    let credits = !filter.contains("\"Not\"");
    let days: Vec<i64> = days_of(start, end).collect();
    let page: Vec<i64> = days.iter().copied().skip(offset).take(CE_PAGE_DAYS).collect();
    let mut results = Vec::new();
    for day in &page {
        let lines = if credits {
            credit_lines(world, org, *day)
        } else {
            usage_lines(world, org, *day)
        };
        let mut groups: Vec<Value> = lines
            .iter()
            .map(|l| {
                json!({
                    "Keys": [l.service, l.usage_type],
                    "Metrics": {
                        "UnblendedCost": {"Amount": exact(l.cost), "Unit": "USD"},
                        "UsageQuantity": {"Amount": exact(l.quantity), "Unit": "N/A"}
                    }
                })
            })
            .collect();
        if !credits && !lines.is_empty() {
            groups.push(json!({
                "Keys": ["Acme Log Analytics SaaS", "MP:AcmeHosts-Units"],
                "Metrics": {
                    "UnblendedCost": {"Amount": "7.5", "Unit": "USD"},
                    "UsageQuantity": {"Amount": "3", "Unit": "N/A"}
                }
            }));
        }
        results.push(object([
            (
                "TimePeriod",
                json!({"Start": day_of(*day).to_string(), "End": day_of(day + DAY).to_string()}),
            ),
            ("Total", json!({})),
            ("Groups", Value::Array(groups)),
            ("Estimated", Value::from(estimated(world, *day))),
        ]));
    }
    let mut answer = object([
        (
            "GroupDefinitions",
            json!([{"Type": "DIMENSION", "Key": "SERVICE"}, {"Type": "DIMENSION", "Key": "USAGE_TYPE"}]),
        ),
        ("ResultsByTime", Value::Array(results)),
        ("DimensionValueAttributes", json!([])),
    ]);
    if offset.saturating_add(CE_PAGE_DAYS) < days.len() {
        answer["NextPageToken"] = Value::from(format!("{fingerprint}.{}", offset + CE_PAGE_DAYS));
    }
    Reply::json(200, answer)
}

/// ListMetrics pages of 2 metrics (Invocations per ModelId).
fn list_metrics(request: &Value) -> Reply {
    let offset: usize = request["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let metrics: Vec<Value> = MODELS
        .iter()
        .skip(offset)
        .take(2)
        .map(|m| {
            json!({"Namespace": "AWS/Bedrock", "MetricName": request["MetricName"].as_str().unwrap_or("Invocations"),
                   "Dimensions": [{"Name": "ModelId", "Value": m.model_id}]})
        })
        .collect();
    let mut answer = json!({"Metrics": metrics});
    if offset + 2 < MODELS.len() {
        answer["NextToken"] = Value::from((offset + 2).to_string());
    }
    cbor_reply(&answer)
}

/// Datapoints per GetMetricData page.
const CW_PAGE_POINTS: usize = 150;

fn metric_data(world: &World<'_>, org: &str, request: &Value) -> Reply {
    let (Some(start), Some(end)) = (request["StartTime"].as_f64(), request["EndTime"].as_f64()) else {
        return cbor_error(
            400,
            "InvalidParameterValueException",
            "StartTime and EndTime are required",
        );
    };
    let (start, end) = (start as i64, end as i64);
    let Some(queries) = request["MetricDataQueries"].as_array() else {
        return cbor_error(400, "InvalidParameterValueException", "MetricDataQueries is required");
    };
    // Every datapoint of every query, in query order, ascending time. An
    // hour's rows are drawn once, not once per query.
    let mut drawn: BTreeMap<i64, Vec<(usize, Row)>> = BTreeMap::new();
    let mut points: Vec<(String, i64, i64)> = Vec::new();
    let mut ids = Vec::new();
    for q in queries {
        let id = q["Id"].as_str().unwrap_or_default().to_string();
        let stat = &q["MetricStat"];
        let metric = stat["Metric"]["MetricName"].as_str().unwrap_or_default();
        let model_id = stat["Metric"]["Dimensions"][0]["Value"].as_str().unwrap_or_default();
        if stat["Period"] != 3600 || stat["Stat"] != "Sum" || stat["Metric"]["Namespace"] != "AWS/Bedrock" {
            return cbor_error(
                400,
                "InvalidParameterValueException",
                "this simulator serves AWS/Bedrock Sum per 3600s",
            );
        }
        ids.push(id.clone());
        let (Some(m), Some(k)) = (
            MODELS.iter().position(|m| m.model_id == model_id),
            METRIC_NAMES.iter().position(|n| *n == metric),
        ) else {
            continue;
        };
        for hour in hours_of(start, end) {
            if hour < start {
                continue;
            }
            let rows = drawn.entry(hour).or_insert_with(|| hour_rows(world, org, hour));
            if let Some((_, row)) = rows.iter().find(|(i, _)| *i == m) {
                if row.vals[k] > 0 {
                    points.push((id.clone(), hour, row.vals[k]));
                }
            }
        }
    }
    let offset: usize = request["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
    let page: Vec<&(String, i64, i64)> = points.iter().skip(offset).take(CW_PAGE_POINTS).collect();
    let more = offset + CW_PAGE_POINTS < points.len();
    let mut results = Vec::new();
    for id in &ids {
        let mine: Vec<&&(String, i64, i64)> = page.iter().filter(|p| &p.0 == id).collect();
        if mine.is_empty() && offset > 0 {
            continue;
        }
        results.push(json!({
            "Id": id,
            "Label": id,
            "Timestamps": mine.iter().map(|p| p.1).collect::<Vec<_>>(),
            "Values": mine.iter().map(|p| p.2 as f64).collect::<Vec<_>>(),
            "StatusCode": if more { "PartialData" } else { "Complete" }
        }));
    }
    let mut answer = json!({"MetricDataResults": results, "Messages": []});
    if more {
        answer["NextToken"] = Value::from((offset + CW_PAGE_POINTS).to_string());
    }
    cbor_reply(&answer)
}

fn cbor_reply(answer: &Value) -> Reply {
    Reply::raw(200, cbor::from_json(answer), "application/cbor")
}

fn cbor_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::raw(
        status,
        cbor::from_json(&json!({"__type": kind, "message": message})),
        "application/cbor",
    )
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn assume_role(world: &World<'_>, org: &str, body: &[u8]) -> Reply {
    let form = form(body);
    if form.get("Action").map(String::as_str) != Some("AssumeRole") {
        return xml_error(400, "InvalidAction", "this simulator serves AssumeRole");
    }
    if form.get("RoleArn") != Some(&bedrock_role_arn(org)) || form.get("ExternalId") != Some(&bedrock_external_id(org))
    {
        return xml_error(
            403,
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole on resource (role ARN or external id do not match)",
        );
    }
    let seconds: i64 = form.get("DurationSeconds").and_then(|s| s.parse().ok()).unwrap_or(3600);
    let expiry = Utc
        .timestamp_opt(world.now + seconds, 0)
        .single()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    let body = format!(
        "<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleResult>\
         <Credentials><AccessKeyId>{key}</AccessKeyId><SecretAccessKey>FAKE-sim-assumed-secret</SecretAccessKey>\
         <SessionToken>{prefix}{now}</SessionToken><Expiration>{expiry}</Expiration></Credentials>\
         <AssumedRoleUser><AssumedRoleId>AROAFAKESIM:tokentra-sync</AssumedRoleId>\
         <Arn>arn:aws:sts::000000000000:assumed-role/tokentra-read/tokentra-sync</Arn></AssumedRoleUser>\
         </AssumeRoleResult><ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></AssumeRoleResponse>",
        key = assumed_key_id(org),
        prefix = session_prefix(org),
        now = world.now,
    );
    Reply::raw(200, body.into_bytes(), "text/xml")
}

impl SimulatedProvider for AwsBedrock {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}/ce")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![
            ("access_key_id", bedrock_access_key_id(org)),
            ("secret_access_key", bedrock_secret_access_key(org)),
            ("region", "us-east-1".to_string()),
        ]
    }

    fn spoiled_credential(&self) -> &'static str {
        "access_key_id"
    }

    fn account_paths(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![
            ("cloudwatch_url", format!("/{NAME}/{org}/monitoring")),
            ("sts_url", format!("/{NAME}/{org}/sts")),
        ]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        let refused = || {
            json_error(
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        };
        if !request.org_known {
            return Err(refused());
        }
        let Some(key) = key_id(request) else {
            return Err(json_error(
                400,
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ));
        };
        let token = request.header("x-amz-security-token").unwrap_or_default();
        let is_sts = request.tail.starts_with("sts");
        let assumed = !is_sts && key == assumed_key_id(request.org) && token.starts_with(&session_prefix(request.org));
        if key == bedrock_access_key_id(request.org) || assumed {
            Ok(())
        } else if is_sts {
            Err(xml_error(
                403,
                "InvalidClientTokenId",
                "The security token included in the request is invalid.",
            ))
        } else {
            Err(refused())
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "POST" {
            return json_error(404, "UnknownOperationException", "POST only");
        }
        let tail = request.tail;
        if tail.starts_with("ce") {
            if request.header("x-amz-target") != Some("AWSInsightsIndexService.GetCostAndUsage") {
                return json_error(
                    400,
                    "UnknownOperationException",
                    "this simulator serves GetCostAndUsage",
                );
            }
            return cost_and_usage(world, request.org, request.body);
        }
        if tail.starts_with("monitoring") {
            if request.header("smithy-protocol") != Some("rpc-v2-cbor") {
                return json_error(
                    400,
                    "UnknownOperationException",
                    "this simulator speaks RPC v2 CBOR for CloudWatch",
                );
            }
            let body = match cbor::to_json(request.body) {
                Ok(body) => body,
                Err(e) => return cbor_error(400, "SerializationException", &e),
            };
            return if tail.ends_with("/operation/ListMetrics") {
                list_metrics(&body)
            } else if tail.ends_with("/operation/GetMetricData") {
                metric_data(world, request.org, &body)
            } else {
                cbor_error(
                    400,
                    "UnknownOperationException",
                    "this simulator serves ListMetrics and GetMetricData",
                )
            };
        }
        if tail.starts_with("sts") {
            return assume_role(world, request.org, request.body);
        }
        json_error(404, "UnknownOperationException", "no such AWS service here")
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = json_error(429, "ThrottlingException", "Rate exceeded");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn expired_credentials(&self) -> Reply {
        json_error(
            400,
            "ExpiredTokenException",
            "The security token included in the request is expired",
        )
    }

    fn server_error(&self) -> Reply {
        json_error(500, "InternalServerError", "An internal error occurred")
    }

    /// Per (UTC day, normalized model, unit): CloudWatch tokens and
    /// invocations (unit ""), the bill per direction unit (cost, quantity,
    /// each line rounded to 9 places), and credits (positive, unit "";
    /// service-wide ones as `bedrock-general`, the provisioned line under its
    /// raw usage type). Hours and days starting in `[start, end)`.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("aws_bedrock has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for hour in hours_of(start, end) {
            for (i, row) in hour_rows(world, org, hour) {
                let t = book.entry(day_of(hour), MODELS[i].normalized, "");
                let v = &row.vals;
                t.input_tokens += v[0] + v[2] + v[3];
                t.output_tokens += v[1];
                t.cached_input_tokens += v[2];
                t.cache_creation_tokens += v[3];
                t.requests += v[4];
            }
        }
        for day in days_of(start, end) {
            for l in usage_lines(world, org, day) {
                let (model, unit) = match l.direction {
                    Some(d) => (MODELS[l.model].billed_as, UNITS[d]),
                    None => (l.usage_type, "units"),
                };
                let t = book.entry(day_of(day), model, unit);
                t.cost += round9(l.cost);
                t.quantity += round9(l.quantity);
            }
            for l in credit_lines(world, org, day) {
                let model = if l.model == usize::MAX {
                    "bedrock-general"
                } else {
                    MODELS[l.model].billed_as
                };
                book.entry(day_of(day), model, "").credits += round9(-l.cost);
            }
        }
        Ok(book.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::data::floor;
    use crate::simulator::data::tests::{world, NOW};

    #[test]
    fn aws_bedrock_sim_bill_follows_tokens_and_credits_are_negative() {
        let w = world(NOW);
        let day = floor(NOW, DAY) - DAY;
        let lines = usage_lines(&w, "org-1", day);
        assert!(lines.iter().any(|l| l.usage_type == PROVISIONED));
        assert!(lines.iter().all(|l| l.cost > Decimal::ZERO));
        let credits: Vec<Line> = (0..3).flat_map(|k| credit_lines(&w, "org-1", day - k * DAY)).collect();
        assert!(credits.iter().any(|l| l.usage_type == GENERAL));
        assert!(credits.iter().all(|l| l.cost < Decimal::ZERO));
        let truth = AwsBedrock
            .truth(&w, "org-1", day, day + DAY, &TruthOptions::default())
            .unwrap();
        assert!(truth
            .iter()
            .any(|r| r.model == "claude-sonnet-4-5" && r.cached_input_tokens > 0));
        assert!(truth
            .iter()
            .any(|r| r.unit == "input-token-units" && r.cost > Decimal::ZERO));
    }
}
