//! One page of an OpenAI usage or costs answer, read into records.
//!
//! Page: `{data: [bucket], has_more, next_page}`; bucket:
//! `{start_time, end_time, results: [result]}`; result: measures plus the
//! grouping fields asked for (null when a row has no value for one).

use crate::providers::json::{Json, Object};
use chrono::{DateTime, Duration, Utc};

use super::{line_items, EndpointDef, Metrics};
use crate::normalize::schema::{CostSource, Dimensions, FetchedRecord, Measures, RawGroup, RecordIdentity};
use crate::providers::json::{self, JsonError};
use crate::providers::platform::identity;
use crate::providers::platform::paging::{Page, PageBucket};

/// Grouping fields that have a column of their own; the others go to
/// `attributes`.
const COLUMNS: &[&str] = &["project_id", "user_id", "api_key_id", "model", "line_item"];

/// Reads a whole page (every bucket on it, empty ones included, each with its
/// records in the order given) or fails naming where (bucket, row) and which
/// field.
pub(super) fn page(def: &EndpointDef, body: &Json) -> Result<Page, JsonError> {
    let page = json::object(body, "the response")?;
    let data = json::array(page, "data")?;
    let next_page = json::next_page(page)?;
    // A bucket is [start, start + width) by definition. The answer's own
    // `end_time` is not used: for today's partial bucket it may be the clamped
    // request end, which would change the row on every sync.
    let width = Duration::seconds(def.spec.granularity.seconds());
    let mut buckets = Vec::with_capacity(data.len());
    for (i, bucket) in data.iter().enumerate() {
        let bucket = json::object(bucket, &format!("data[{i}]"))?;
        let start = json::unix_seconds(bucket, "start_time").map_err(|e| context(&format!("data[{i}]"), e))?;
        let rows = rows(bucket).map_err(|e| context(&format!("data[{i}] (bucket {start})"), e))?;
        // Each bucket's records in a vector of their own, sized once: records
        // are hundreds of bytes, and growing (then regrouping) one vector for
        // the page moved each of them three more times.
        let mut records = Vec::with_capacity(rows.len());
        for (j, row) in rows.iter().enumerate() {
            let record = json::object(row, "the result")
                .and_then(|row| record(def, start, start + width, row))
                .map_err(|e| context(&format!("data[{i}] (bucket {start}) results[{j}]"), e))?;
            records.push(record);
        }
        buckets.push(PageBucket {
            start,
            end: None,
            records,
        });
    }
    Ok(Page {
        buckets,
        next: next_page,
    })
}

fn context(place: &str, err: JsonError) -> JsonError {
    JsonError(format!("{place}: {}", err.0))
}

/// The bucket's rows: `results`, or `result` as the 2024-12 spec spelled it.
/// A bucket with neither is malformed rather than empty: an empty bucket is
/// covered, and covering it makes every stored record in it vanish.
fn rows<'v, 'a>(bucket: &'v Object<'a>) -> Result<&'v [Json<'a>], JsonError> {
    if !bucket.contains_key("results") && bucket.contains_key("result") {
        json::array(bucket, "result")
    } else {
        json::array(bucket, "results")
    }
}

fn record(
    def: &EndpointDef,
    bucket_start: DateTime<Utc>,
    bucket_end: DateTime<Utc>,
    row: &Object,
) -> Result<FetchedRecord, JsonError> {
    let raw_group = raw_group(def.metrics, row);
    let mut dims = dimensions(&raw_group);
    dims.service = def.spec.endpoint.into();
    let measures = match def.metrics {
        Metrics::Completions => Measures {
            // Already includes cache reads and writes: never add them on top.
            input_tokens: json::int_field(row, "input_tokens")?,
            cached_input_tokens: json::int_field(row, "input_cached_tokens")?,
            cache_creation_tokens: json::int_field(row, "input_cache_write_tokens")?,
            output_tokens: json::int_field(row, "output_tokens")?,
            requests: json::int_field(row, "num_model_requests")?,
            requests_reported: true,
            ..Measures::default()
        },
        Metrics::InputTokens => Measures {
            input_tokens: json::int_field(row, "input_tokens")?,
            requests: json::int_field(row, "num_model_requests")?,
            requests_reported: true,
            ..Measures::default()
        },
        Metrics::Quantity { field, unit, requests } => Measures {
            quantity: json::optional_decimal(row, field)?,
            unit: unit.into(),
            requests: if requests {
                json::int_field(row, "num_model_requests")?
            } else {
                0
            },
            requests_reported: requests,
            ..Measures::default()
        },
        Metrics::Costs => cost(row, &mut dims)?,
    };
    Ok(FetchedRecord {
        identity: RecordIdentity {
            record_type: def.spec.record_type,
            endpoint: def.spec.endpoint.into(),
            granularity: def.spec.granularity,
            bucket_start,
            bucket_end,
            raw_group,
        },
        dims,
        measures,
    })
}

/// Measures never identify a record. Besides the endpoint's own metric
/// fields, anything numeric or named like a counter counts as a measure:
/// OpenAI keeps adding token fields, and its grouping keys are ids, names and
/// booleans, never numbers. A measure in the key would re-key the record each
/// time its value changed. `quantity_unit` qualifies `quantity` (it becomes
/// `unit`), so it is part of the measure too.
fn is_measure(metrics: Metrics, field: &str, value: &Json) -> bool {
    let own = match metrics {
        Metrics::Quantity { field: metric, .. } => field == metric,
        Metrics::Costs => matches!(field, "amount" | "quantity" | "quantity_unit"),
        Metrics::Completions | Metrics::InputTokens => false,
    };
    own || value.is_number() || field.starts_with("num_") || field.ends_with("_tokens")
}

/// Every scalar field that is not a measure and not the `object` type tag,
/// nulls kept: a row grouped by a field it has no value for is its own record.
fn raw_group(metrics: Metrics, row: &Object) -> RawGroup {
    identity::raw_group(row, |field, value| {
        field == "object" || is_measure(metrics, field, value)
    })
}

fn dimensions(raw_group: &RawGroup) -> Dimensions {
    let text = |field: &str| identity::text(raw_group, field);
    Dimensions {
        model_raw: text("model"),
        project_id: text("project_id"),
        user_id: text("user_id"),
        api_key_id: text("api_key_id"),
        line_item: text("line_item"),
        attributes: identity::attributes(raw_group, COLUMNS),
        ..Dimensions::default()
    }
}

/// Billed money in dollars (`amount.value`, number or string, exact), plus
/// what the line item says about model and service.
fn cost(row: &Object, dims: &mut Dimensions) -> Result<Measures, JsonError> {
    let amount = match row.get("amount") {
        Some(Json::Object(amount)) => amount,
        _ => {
            return Err(JsonError(
                "field 'amount' is missing (expected {value, currency})".into(),
            ))
        }
    };
    let value = match amount.get("value") {
        Some(value) if !value.is_null() => json::decimal(value, "amount.value")?,
        _ => return Err(JsonError("field 'amount.value' is missing".into())),
    };
    let currency = json::str_field(amount, "currency").trim().to_ascii_uppercase();
    if currency != "USD" {
        let found = if currency.is_empty() {
            "missing".to_string()
        } else {
            format!("'{currency}'")
        };
        return Err(JsonError(format!(
            "field 'amount.currency' is {found}: non-USD billing is unsupported \
             (cost is stored in USD and never converted); open an issue with the currency your organization is billed in"
        )));
    }

    let line_item = line_items::parse(&dims.line_item);
    dims.model_raw = line_item.model_raw.into();
    dims.service = line_item.service.into();
    for (name, value) in line_item.attributes {
        // Raw grouping fields win over what was read out of the label.
        dims.attributes.entry(name.into()).or_insert(value.into());
    }

    Ok(Measures {
        cost: value,
        amount_original: value,
        currency: currency.into(),
        cost_source: CostSource::Billed,
        quantity: json::optional_decimal(row, "quantity")?,
        unit: json::str_field(row, "quantity_unit").into(),
        requests_reported: false,
        ..Measures::default()
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use crate::normalize::schema::RawField;

    use chrono::TimeZone;
    use rust_decimal::Decimal;

    use super::*;
    use crate::normalize::schema::Granularity;

    fn def(endpoint: &str) -> &'static EndpointDef {
        super::super::ENDPOINTS
            .iter()
            .find(|def| def.spec.endpoint == endpoint)
            .unwrap()
    }

    /// A page flattened: its records, the buckets it covered, its cursor.
    struct Parsed {
        records: Vec<FetchedRecord>,
        covered: Vec<DateTime<Utc>>,
        next_page: Option<String>,
    }

    fn parse_fixture(endpoint: &str, text: &str) -> Parsed {
        let page = page(def(endpoint), &Json::parse(text.as_bytes()).unwrap()).unwrap();
        let covered = page.buckets.iter().map(|b| b.start).collect();
        Parsed {
            records: page.buckets.into_iter().flat_map(|b| b.records).collect(),
            covered,
            next_page: page.next,
        }
    }

    fn parse_err(endpoint: &str, text: &str) -> String {
        page(def(endpoint), &Json::parse(text.as_bytes()).unwrap())
            .unwrap_err()
            .0
    }

    fn one_bucket(results: &str) -> String {
        format!(
            r#"{{"object":"page","data":[{{"object":"bucket","start_time":1736899200,"end_time":1736902800,"results":[{results}]}}],"has_more":false,"next_page":null}}"#
        )
    }

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn completions_fixture_maps_tokens_dims_and_identity() {
        let page = parse_fixture(
            "completions",
            include_str!("../../../tests/fixtures/openai/completions_page1.json"),
        );
        assert_eq!(page.next_page.as_deref(), Some("page_AAAAAGeH1sAAAAAAZ4lYgA=="));
        assert_eq!(page.covered, vec![t(1736899200), t(1736902800)]);
        assert_eq!(page.records.len(), 2);

        let r = &page.records[0];
        assert_eq!(r.identity.endpoint, "completions");
        assert_eq!(r.identity.granularity, Granularity::Hour);
        assert_eq!(
            (r.identity.bucket_start, r.identity.bucket_end),
            (t(1736899200), t(1736902800))
        );
        let group: Vec<(&str, &RawField)> = r.identity.raw_group.iter().collect();
        assert_eq!(
            group,
            vec![
                ("api_key_id", &RawField::Null),
                ("batch", &RawField::Null),
                ("model", &RawField::Text("gpt-4o-mini-2024-07-18".into())),
                ("project_id", &RawField::Text("proj_abc123".into())),
                ("service_tier", &RawField::Null),
                ("user_id", &RawField::Null),
            ]
        );
        assert_eq!(
            r.measures.input_tokens, 120_500,
            "input_tokens already holds cached tokens"
        );
        assert_eq!(r.measures.cached_input_tokens, 40_000);
        assert_eq!(r.measures.output_tokens, 9_800);
        assert_eq!(r.measures.requests, 73);
        assert!(r.measures.requests_reported);
        assert_eq!(r.dims.service, "completions");
        assert_eq!(r.dims.model_raw, "gpt-4o-mini-2024-07-18");
        assert_eq!(r.dims.project_id, "proj_abc123");
        assert!(r.dims.attributes.is_empty(), "null grouping fields are not attributes");

        let b = &page.records[1];
        assert_eq!(b.identity.raw_group["batch"], RawField::Bool(true));
        assert_eq!(b.identity.raw_group["user_id"], RawField::Text("user-FAKE01".into()));
        assert_eq!(b.measures.cache_creation_tokens, 2_048);
        assert_eq!(b.dims.api_key_id, "key_FAKE01");
        assert_eq!(b.dims.user_id, "user-FAKE01");
        let attrs: Vec<String> = b.dims.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(attrs, vec!["batch=true", "service_tier=default"]);
        assert!(
            !b.identity.raw_group.contains_key("input_audio_tokens")
                && !b.identity.raw_group.contains_key("output_reasoning_tokens"),
            "measures, known or new, never identify a record"
        );
    }

    #[test]
    fn legacy_result_key_is_read() {
        let page = parse_fixture(
            "completions",
            include_str!("../../../tests/fixtures/openai/completions_page2.json"),
        );
        assert_eq!(page.next_page, None);
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].measures.input_tokens, 500);
        assert_eq!(page.covered, vec![t(1736906400)]);
    }

    #[test]
    fn bucket_without_rows_is_malformed_not_empty() {
        let text = r#"{"object":"page","data":[{"object":"bucket","start_time":1736899200,"end_time":1736902800}],"has_more":false,"next_page":null}"#;
        assert!(parse_err("completions", text).contains("'results'"));
    }

    #[test]
    fn malformed_measure_names_the_field_and_row() {
        let err = parse_err(
            "completions",
            &one_bucket(
                r#"{"object":"organization.usage.completions.result","input_tokens":"abc","output_tokens":1,"num_model_requests":1,"model":"gpt-4o"}"#,
            ),
        );
        assert!(err.contains("'input_tokens'") && err.contains("results[0]"), "{err}");
    }

    #[test]
    fn quantity_endpoints_read_their_unit() {
        let cases = [
            (
                "images",
                r#""images":4,"num_model_requests":2,"size":"1024x1024","source":"image.generation","model":"dall-e-3""#,
                "4",
                "images",
                2,
                true,
            ),
            (
                "audio_speeches",
                r#""characters":1200,"num_model_requests":3,"model":"tts-1""#,
                "1200",
                "characters",
                3,
                true,
            ),
            (
                "audio_transcriptions",
                r#""seconds":95,"num_model_requests":1,"model":"whisper-1""#,
                "95",
                "seconds",
                1,
                true,
            ),
            (
                "vector_stores",
                r#""usage_bytes":1073741824,"project_id":"proj_FAKE""#,
                "1073741824",
                "bytes",
                0,
                false,
            ),
            (
                "code_interpreter_sessions",
                r#""num_sessions":7,"project_id":null"#,
                "7",
                "sessions",
                0,
                false,
            ),
        ];
        for (endpoint, fields, quantity, unit, requests, reported) in cases {
            let page = parse_fixture(endpoint, &one_bucket(&format!(r#"{{"object":"x",{fields}}}"#)));
            let r = &page.records[0];
            assert_eq!(r.measures.quantity, Decimal::from_str(quantity).unwrap(), "{endpoint}");
            assert_eq!(r.measures.unit, unit, "{endpoint}");
            assert_eq!(
                (r.measures.requests, r.measures.requests_reported),
                (requests, reported),
                "{endpoint}"
            );
            assert_eq!(r.dims.service, endpoint);
            assert_eq!(r.identity.endpoint, endpoint);
        }
        let images = parse_fixture(
            "images",
            &one_bucket(
                r#"{"images":1,"num_model_requests":1,"size":"1024x1024","source":"image.generation","model":"dall-e-3"}"#,
            ),
        );
        let attrs: Vec<String> = images.records[0]
            .dims
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(attrs, vec!["size=1024x1024", "source=image.generation"]);
        assert_eq!(def("vector_stores").spec.granularity, Granularity::Day);
    }

    #[test]
    fn embeddings_and_moderations_read_input_tokens() {
        for endpoint in ["embeddings", "moderations"] {
            let page = parse_fixture(
                endpoint,
                &one_bucket(
                    r#"{"input_tokens":321,"num_model_requests":4,"model":"text-embedding-3-small","project_id":null}"#,
                ),
            );
            let r = &page.records[0];
            assert_eq!((r.measures.input_tokens, r.measures.requests), (321, 4));
            assert_eq!(r.identity.raw_group["project_id"], RawField::Null);
        }
    }

    #[test]
    fn costs_fixture_keeps_money_exact_and_reads_line_items() {
        let page = parse_fixture("costs", include_str!("../../../tests/fixtures/openai/costs.json"));
        assert_eq!(page.covered, vec![t(1736899200), t(1736985600)]);
        let records = &page.records;
        assert_eq!(records.len(), 5);

        let input = &records[0];
        assert_eq!(input.identity.granularity, Granularity::Day);
        assert_eq!(input.identity.bucket_end, t(1736985600));
        assert_eq!(input.measures.cost.to_string(), "0.8958740000000000123");
        assert_eq!(input.measures.amount_original, input.measures.cost);
        assert_eq!(input.measures.currency, "USD");
        assert_eq!(input.measures.cost_source, CostSource::Billed);
        assert!(!input.measures.requests_reported);
        assert_eq!(input.measures.quantity, Decimal::from(120_500));
        assert_eq!(input.measures.unit, "tokens");
        assert_eq!(input.dims.model_raw, "gpt-4o-mini-2024-07-18");
        assert_eq!(input.dims.service, "completions");
        assert_eq!(input.dims.line_item, "gpt-4o-mini-2024-07-18, input");
        assert_eq!(input.dims.attributes["token_direction"], "input");
        let group: Vec<&str> = input.identity.raw_group.keys().collect();
        assert_eq!(group, vec!["api_key_id", "line_item", "project_id"]);

        let cached = &records[1];
        assert_eq!(
            cached.measures.cost,
            Decimal::from_str("1.5").unwrap(),
            "string amounts are accepted"
        );
        assert_eq!(cached.dims.attributes["token_direction"], "cached_input");
        assert_eq!(cached.measures.unit, "", "no quantity_unit, no unit");

        let search = &records[2];
        assert_eq!(
            (search.dims.service.as_str(), search.dims.model_raw.as_str()),
            ("web_search", "")
        );
        assert_eq!(search.identity.raw_group["project_id"], RawField::Null);

        let storage = &records[3];
        assert_eq!(storage.dims.service, "vector_stores");
        assert_eq!(storage.measures.unit, "gibibyte_hours");

        let unknown = &records[4];
        assert_eq!(unknown.dims.service, "other");
        assert_eq!(unknown.dims.model_raw, "");
        assert_eq!(unknown.dims.line_item, "Mystery surcharge");
        assert_eq!(unknown.measures.cost, Decimal::from_str("-0.25").unwrap());
    }

    #[test]
    fn non_usd_or_missing_money_is_refused() {
        let eur = parse_err(
            "costs",
            &one_bucket(r#"{"amount":{"value":1.0,"currency":"eur"},"line_item":"gpt-4o, input"}"#),
        );
        assert!(
            eur.contains("'EUR'") && eur.contains("non-USD billing is unsupported"),
            "{eur}"
        );
        let none = parse_err(
            "costs",
            &one_bucket(r#"{"amount":{"value":1.0},"line_item":"gpt-4o, input"}"#),
        );
        assert!(none.contains("amount.currency"), "{none}");
        let missing = parse_err("costs", &one_bucket(r#"{"line_item":"gpt-4o, input"}"#));
        assert!(missing.contains("'amount'"), "{missing}");
        let bad = parse_err("costs", &one_bucket(r#"{"amount":{"value":"1.2.3","currency":"usd"}}"#));
        assert!(bad.contains("amount.value"), "{bad}");
    }
}
