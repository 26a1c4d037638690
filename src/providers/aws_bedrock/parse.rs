//! Cost Explorer and CloudWatch answers read into records. The parsers work
//! on plain data ([`CeDay`], [`MetricSeries`]) that `mod.rs` fills from the
//! SDK's typed output, so they are tested (and fuzzed) without the SDK.
//!
//! **Cost Explorer** (`GetCostAndUsage`, DAILY, grouped by SERVICE and
//! USAGE_TYPE): each group of a day is one record of the `cost` or `credit`
//! stream, identified by (service, usage type) as AWS returned them.
//! - `UnblendedCost.Amount` is a decimal string in `Unit` (USD): the bill,
//!   read exactly. Credits and refunds are negative amounts on their own
//!   query (RECORD_TYPE Credit/Refund) and become positive `credits`.
//! - The usage type gives token direction, tier and region
//!   ([`super::usage_type`]); the model is the usage type's model for
//!   AWS-billed models and the Marketplace service name for third-party
//!   ones. A usage type we cannot read keeps its money under the raw usage
//!   type as model; a credit not tied to a model goes to `bedrock-general`.
//! - `UsageQuantity` is in AWS pricing units (1K or 1M tokens, by SKU), not
//!   tokens: it is kept as `quantity` with a unit naming the direction,
//!   never added to token counts (those come from CloudWatch).
//!
//! **CloudWatch** (`GetMetricData`, `AWS/Bedrock`, Sum per hour per
//! `ModelId`): each (hour, model, metric) datapoint is one `usage` record.
//! `input_tokens` counts all input (DESIGN rule 4): `InputTokenCount` (new
//! input) plus the cache metrics, which are also their own subsets.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::usage_type::{self, Direction, UsageType};
use crate::normalize::schema::{
    CostSource, Dimensions, FetchedRecord, Granularity, Measures, RawField, RawGroup, RecordIdentity, RecordType,
};
use crate::providers::platform::PageBucket;

/// The model of money not tied to one model (service-wide credits).
pub const GENERAL_MODEL: &str = "bedrock-general";

/// The first-party service name.
pub const BEDROCK_SERVICE: &str = "Amazon Bedrock";

/// One `ResultsByTime` entry.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeDay {
    pub time_period: CePeriod,
    #[serde(default)]
    pub estimated: bool,
    #[serde(default)]
    pub groups: Vec<CeGroup>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CePeriod {
    pub start: String,
    pub end: String,
}

/// One group: `Keys` in GroupBy order (SERVICE, USAGE_TYPE) and metrics.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeGroup {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, CeMetric>,
}

#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CeMetric {
    pub amount: Option<String>,
    pub unit: Option<String>,
}

/// The cost metric read as the bill.
pub const COST_METRIC: &str = "UnblendedCost";
pub const QUANTITY_METRIC: &str = "UsageQuantity";

/// Which services are Bedrock: `Amazon Bedrock`, the Marketplace services
/// third-party models on Bedrock (and Claude Platform on AWS) bill under,
/// and any the account lists in `extra_services`.
#[derive(Clone, Debug, Default)]
pub struct Services {
    pub extra: Vec<String>,
}

impl Services {
    pub fn is_bedrock(&self, service: &str) -> bool {
        let lower = service.to_ascii_lowercase();
        service == BEDROCK_SERVICE
            || lower.contains("bedrock")
            || lower.contains("claude")
            || self.extra.iter().any(|s| s == service)
    }
}

/// The model a Marketplace service bills, in the form Bedrock model ids
/// use, so cost and CloudWatch usage of one model group together: `Claude
/// 3.5 Sonnet (Amazon Bedrock Edition)` -> `claude-3-5-sonnet` (as
/// `anthropic.claude-3-5-sonnet-20240620-v1:0` normalizes).
pub fn marketplace_model(service: &str) -> String {
    let name = match service.rfind(" (") {
        Some(at) if service.ends_with(')') && at > 0 => &service[..at],
        _ => service,
    };
    let mut slug = String::with_capacity(name.len());
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            slug.extend(c.to_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// One page of Cost Explorer days as buckets of `record_type` (`Cost` or
/// `Credit`), and the days AWS marked `Estimated`.
pub fn cost_page(
    days: &[CeDay],
    record_type: RecordType,
    endpoint: &'static str,
    services: &Services,
) -> Result<(Vec<PageBucket>, Vec<DateTime<Utc>>), String> {
    let mut buckets = Vec::with_capacity(days.len());
    let mut estimated = Vec::new();
    for (i, day) in days.iter().enumerate() {
        let start = date(&day.time_period.start).map_err(|e| format!("ResultsByTime[{i}].TimePeriod.Start {e}"))?;
        let end = date(&day.time_period.end).map_err(|e| format!("ResultsByTime[{i}].TimePeriod.End {e}"))?;
        if day.estimated {
            estimated.push(start);
        }
        let mut records = Vec::with_capacity(day.groups.len());
        for (j, group) in day.groups.iter().enumerate() {
            let at = |e: String| format!("ResultsByTime[{i}].Groups[{j}]: {e}");
            let [service, usage] = group.keys.as_slice() else {
                return Err(at(format!(
                    "Keys should be [SERVICE, USAGE_TYPE], got {} keys",
                    group.keys.len()
                )));
            };
            if !services.is_bedrock(service) {
                continue;
            }
            records.push(cost_record(service, usage, group, record_type, endpoint, start).map_err(at)?);
        }
        buckets.push(PageBucket {
            start,
            end: Some(end),
            records,
        });
    }
    Ok((buckets, estimated))
}

fn date(text: &str) -> Result<DateTime<Utc>, String> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(Default::default()).and_utc())
        .map_err(|_| format!("is not a YYYY-MM-DD date ({text})"))
}

fn amount(group: &CeGroup, metric: &str) -> Result<Option<(Decimal, String)>, String> {
    let Some(value) = group.metrics.get(metric) else {
        return Ok(None);
    };
    let text = value
        .amount
        .as_deref()
        .ok_or_else(|| format!("{metric}.Amount is missing"))?;
    // Decimal strings; AWS writes some tiny amounts in exponent form.
    let number = Decimal::from_str_exact(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|_| format!("{metric}.Amount '{text}' is not a decimal number"))?;
    Ok(Some((number, value.unit.clone().unwrap_or_default())))
}

fn cost_record(
    service: &str,
    usage: &str,
    group: &CeGroup,
    record_type: RecordType,
    endpoint: &'static str,
    start: DateTime<Utc>,
) -> Result<FetchedRecord, String> {
    let (money, currency) = amount(group, COST_METRIC)?.ok_or_else(|| format!("metric {COST_METRIC} is missing"))?;
    if !currency.is_empty() && currency != "USD" {
        return Err(format!(
            "{COST_METRIC} is in {currency}; Cost Explorer answers in USD unless the account's billing currency \
             differs, which this adapter does not convert"
        ));
    }
    let quantity = amount(group, QUANTITY_METRIC)?.map(|(q, _)| q).unwrap_or_default();
    let parsed = usage_type::parse(usage);
    let marketplace = service != BEDROCK_SERVICE;
    let (model, region, direction, tier) = match &parsed {
        UsageType::Tokens {
            model,
            direction,
            tier,
            region,
            ..
        } => {
            let model = if marketplace || model.is_empty() {
                marketplace_model(service)
            } else {
                model.clone()
            };
            (model, region.clone(), Some(*direction), tier.clone())
        }
        UsageType::Other { region } => {
            let model = if marketplace {
                marketplace_model(service)
            } else if record_type == RecordType::Credit {
                GENERAL_MODEL.to_string()
            } else {
                usage.to_string()
            };
            (model, region.clone(), None, String::new())
        }
    };
    let model = if model.trim().is_empty() {
        GENERAL_MODEL.to_string()
    } else {
        model
    };
    let raw_group: RawGroup = [
        ("service", RawField::Text(service.into())),
        ("usage_type", RawField::Text(usage.into())),
    ]
    .into_iter()
    .collect();
    let mut attributes = BTreeMap::new();
    if let Some(d) = direction {
        attributes.insert("direction".into(), d.as_str().into());
    }
    if !tier.is_empty() {
        attributes.insert("tier".into(), tier.into());
    }
    let dims = Dimensions {
        model_raw: model.into(),
        service: service.into(),
        region: region.into(),
        line_item: usage.into(),
        attributes,
        ..Dimensions::default()
    };
    let unit = direction.map_or("units", unit_of);
    let measures = match record_type {
        RecordType::Credit => Measures {
            // Credits are negative on the bill; stored positive (DESIGN rule 5).
            credits: -money,
            amount_original: money,
            currency: "USD".into(),
            cost_source: CostSource::Billed,
            ..Measures::default()
        },
        _ => Measures {
            cost: money,
            amount_original: money,
            currency: "USD".into(),
            cost_source: CostSource::Billed,
            quantity,
            unit: unit.into(),
            ..Measures::default()
        },
    };
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type,
            endpoint: endpoint.into(),
            granularity: Granularity::Day,
            bucket_start: start,
            bucket_end: start + Duration::days(1),
            raw_group,
        },
        dims,
        measures,
    })
}

/// The unit of `UsageQuantity` for a direction: AWS pricing units of that
/// token type (1K or 1M tokens, by SKU).
pub fn unit_of(direction: Direction) -> &'static str {
    match direction {
        Direction::Input => "input-token-units",
        Direction::Output => "output-token-units",
        Direction::CacheRead => "cache-read-token-units",
        Direction::CacheWrite => "cache-write-token-units",
    }
}

/// The CloudWatch metrics read per model, and what each counts.
pub const METRICS: [&str; 5] = [
    "InputTokenCount",
    "OutputTokenCount",
    "Invocations",
    "CacheReadInputTokenCount",
    "CacheWriteInputTokenCount",
];

/// One `MetricDataResults` entry, with the model and metric its query asked.
#[derive(Clone, Debug, Default)]
pub struct MetricSeries {
    pub model_id: String,
    pub metric: String,
    pub timestamps: Vec<DateTime<Utc>>,
    pub values: Vec<f64>,
}

/// CloudWatch series as hourly `usage` records, in buckets.
pub fn metric_records(series: &[MetricSeries], endpoint: &'static str) -> Result<Vec<PageBucket>, String> {
    let mut buckets: BTreeMap<DateTime<Utc>, Vec<FetchedRecord>> = BTreeMap::new();
    for s in series {
        if s.timestamps.len() != s.values.len() {
            return Err(format!(
                "{} of {}: {} timestamps but {} values",
                s.metric,
                s.model_id,
                s.timestamps.len(),
                s.values.len()
            ));
        }
        for (t, v) in s.timestamps.iter().zip(&s.values) {
            let n = count(*v).map_err(|e| format!("{} of {} at {}: {e}", s.metric, s.model_id, t.to_rfc3339()))?;
            let mut m = Measures {
                requests_reported: true,
                ..Measures::default()
            };
            match s.metric.as_str() {
                "InputTokenCount" => m.input_tokens = n,
                "OutputTokenCount" => m.output_tokens = n,
                "Invocations" => m.requests = n,
                "CacheReadInputTokenCount" => {
                    m.input_tokens = n;
                    m.cached_input_tokens = n;
                }
                "CacheWriteInputTokenCount" => {
                    m.input_tokens = n;
                    m.cache_creation_tokens = n;
                }
                other => return Err(format!("metric {other} was not asked for")),
            }
            let raw_group: RawGroup = [
                ("ModelId", RawField::Text(s.model_id.as_str().into())),
                ("MetricName", RawField::Text(s.metric.as_str().into())),
            ]
            .into_iter()
            .collect();
            let record = FetchedRecord {
                identity: RecordIdentity {
                    record_type: RecordType::Usage,
                    endpoint: endpoint.into(),
                    granularity: Granularity::Hour,
                    bucket_start: *t,
                    bucket_end: *t + Duration::hours(1),
                    raw_group,
                },
                dims: Dimensions {
                    model_raw: s.model_id.as_str().into(),
                    service: "inference".into(),
                    resource_id: s.model_id.as_str().into(),
                    ..Dimensions::default()
                },
                measures: m,
            };
            buckets.entry(*t).or_default().push(record);
        }
    }
    Ok(buckets
        .into_iter()
        .map(|(start, records)| PageBucket {
            start,
            end: None,
            records,
        })
        .collect())
}

/// A CloudWatch Sum of a count: finite, whole and non-negative.
fn count(value: f64) -> Result<i64, String> {
    if !value.is_finite()
        || value < 0.0
        || value.fract() != 0.0
        || value > crate::providers::platform::guards::MAX_COUNT as f64
    {
        return Err(format!("{value} is not a count"));
    }
    Ok(value as i64)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/aws_bedrock/cost_and_usage.json");

    fn days(text: &str) -> Vec<CeDay> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            results_by_time: Vec<CeDay>,
        }
        serde_json::from_str::<Answer>(text).unwrap().results_by_time
    }

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn aws_bedrock_cost_rows_keep_exact_money_model_direction_and_region() {
        let (buckets, estimated) = cost_page(&days(FIXTURE), RecordType::Cost, "cost", &Services::default()).unwrap();
        assert_eq!(buckets.len(), 2);
        assert_eq!(estimated.len(), 1, "the second day is estimated");
        let first = &buckets[0].records;
        // The Marketplace SaaS row of another product is not Bedrock.
        assert_eq!(first.len(), 4, "{first:#?}");
        let nova = &first[0];
        assert_eq!(nova.dims.model_raw, "NovaLite");
        assert_eq!(nova.dims.region, "us-east-1");
        assert_eq!(nova.dims.attributes["direction"], "input");
        assert_eq!(nova.measures.cost, d("0.0123456789"));
        assert_eq!(nova.measures.quantity, d("205.76"));
        assert_eq!(nova.measures.unit, "input-token-units");
        assert_eq!(nova.measures.input_tokens, 0, "pricing units are not tokens");
        let claude = &first[1];
        assert_eq!(claude.dims.model_raw, "claude-3-5-sonnet");
        assert_eq!(claude.dims.service, "Claude 3.5 Sonnet (Amazon Bedrock Edition)");
        assert_eq!(claude.dims.attributes["direction"], "output");
        assert_eq!(claude.dims.attributes["tier"], "global");
        let unknown = &first[2];
        assert_eq!(unknown.dims.model_raw, "USE1-ProvisionedThroughput-NovaPro-ModelUnits");
        assert_eq!(unknown.measures.cost, d("12.5"), "unknown usage types keep their money");
        assert_eq!(first[3].measures.cost, d("0.000000012"), "exponent form read exactly");
    }

    #[test]
    fn aws_bedrock_credits_are_positive_and_service_wide_ones_go_to_bedrock_general() {
        let text = r#"{"ResultsByTime": [{"TimePeriod": {"Start": "2026-11-01", "End": "2026-11-02"}, "Estimated": false,
            "Groups": [
              {"Keys": ["Amazon Bedrock", "USE1-NovaLite-input-tokens"], "Metrics": {"UnblendedCost": {"Amount": "-0.5", "Unit": "USD"}}},
              {"Keys": ["Amazon Bedrock", "NoUsageType"], "Metrics": {"UnblendedCost": {"Amount": "-10.000000001", "Unit": "USD"}}},
              {"Keys": ["Claude Haiku 4.5 (Amazon Bedrock Edition)", "USE1-MP:USE1_InputTokenCount-Units"], "Metrics": {"UnblendedCost": {"Amount": "-1.25", "Unit": "USD"}}}
            ]}]}"#;
        let (buckets, _) = cost_page(&days(text), RecordType::Credit, "credits", &Services::default()).unwrap();
        let r = &buckets[0].records;
        assert_eq!(
            (r[0].dims.model_raw.as_str(), r[0].measures.credits),
            ("NovaLite", d("0.5"))
        );
        assert_eq!(
            (r[1].dims.model_raw.as_str(), r[1].measures.credits),
            (GENERAL_MODEL, d("10.000000001"))
        );
        assert_eq!(r[2].dims.model_raw, "claude-haiku-4-5");
        assert!(r.iter().all(|x| x.measures.cost.is_zero()));
    }

    #[test]
    fn aws_bedrock_bad_answers_name_the_place() {
        let bad = FIXTURE.replacen("\"0.0123456789\"", "\"12,5\"", 1);
        let err = cost_page(&days(&bad), RecordType::Cost, "cost", &Services::default()).unwrap_err();
        assert!(
            err.contains("Groups[0]") && err.contains("UnblendedCost.Amount"),
            "{err}"
        );
        let bad = FIXTURE.replacen("\"2026-11-01\"", "\"11/01/2026\"", 1);
        assert!(cost_page(&days(&bad), RecordType::Cost, "cost", &Services::default())
            .unwrap_err()
            .contains("TimePeriod.Start"));
    }

    #[test]
    fn aws_bedrock_metrics_count_all_input_and_refuse_non_counts() {
        let t0 = date("2026-11-01").unwrap();
        let t1 = t0 + Duration::hours(1);
        let series = [
            MetricSeries {
                model_id: "us.anthropic.claude-sonnet-4-20250514-v1:0".into(),
                metric: "InputTokenCount".into(),
                timestamps: vec![t0, t1],
                values: vec![100.0, 50.0],
            },
            MetricSeries {
                model_id: "us.anthropic.claude-sonnet-4-20250514-v1:0".into(),
                metric: "CacheReadInputTokenCount".into(),
                timestamps: vec![t0],
                values: vec![30.0],
            },
        ];
        let buckets = metric_records(&series, "metrics").unwrap();
        assert_eq!(buckets.len(), 2);
        let input: i64 = buckets[0].records.iter().map(|r| r.measures.input_tokens).sum();
        let cached: i64 = buckets[0].records.iter().map(|r| r.measures.cached_input_tokens).sum();
        assert_eq!((input, cached), (130, 30));
        assert_eq!(
            buckets[0].records[0].dims.model_raw,
            "us.anthropic.claude-sonnet-4-20250514-v1:0"
        );
        let mut bad = series[0].clone();
        bad.values[1] = 1.5;
        assert!(metric_records(&[bad.clone()], "metrics")
            .unwrap_err()
            .contains("not a count"));
        bad.values.pop();
        assert!(metric_records(&[bad], "metrics").unwrap_err().contains("timestamps"));
    }

    #[test]
    fn aws_bedrock_marketplace_services_name_models_as_bedrock_ids_do() {
        assert_eq!(
            marketplace_model("Claude 3.5 Sonnet (Amazon Bedrock Edition)"),
            "claude-3-5-sonnet"
        );
        assert_eq!(
            marketplace_model("Claude Sonnet 4.5 (Amazon Bedrock Edition)"),
            "claude-sonnet-4-5"
        );
        assert_eq!(marketplace_model("Odd"), "odd");
    }
}
