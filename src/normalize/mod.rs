//! From adapter records to `usage_records` rows: identity hash, model names,
//! estimated prices, and the summing of records that share a key.

pub mod models;
pub mod pricing;
pub mod record_key;
pub mod schema;

use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use crate::provider::Provider;
use schema::{to_ch_seconds, Dec9, FetchedRecord, RecordType, Text, UsageRow};

/// Turns one account's fetched records into rows (sign +1, version unset).
#[derive(Clone)]
pub struct Normalizer {
    connection_id: Text,
    provider: Provider,
    /// `provider` as its column text, made once.
    provider_text: Text,
    pricing: Arc<pricing::PricingRegistry>,
}

impl Normalizer {
    pub fn new(connection_id: &str, provider: Provider, pricing: Arc<pricing::PricingRegistry>) -> Self {
        Self {
            connection_id: connection_id.into(),
            provider,
            provider_text: provider.as_str().into(),
            pricing,
        }
    }

    /// Rows for `records`, one per record key: records that share a key are
    /// summed first (docs/DESIGN.md rule 1; checked: an overflowing sum is an
    /// error), in first-seen order.
    pub fn rows(&self, mut records: Vec<FetchedRecord>) -> Result<Vec<UsageRow>, String> {
        // The records stay where they are: a summed record's measures go
        // into the first of its key, and only the firsts become rows. Moving
        // every record into a second vector copied hundreds of bytes each.
        let keys: Vec<u64> = records
            .iter()
            .map(|record| record_key::record_key(&self.connection_id, &record.identity))
            .collect();
        let mut first_of: HashMap<u64, usize> = HashMap::with_capacity(records.len());
        let mut summed_away = vec![false; records.len()];
        for (at, &key) in keys.iter().enumerate() {
            match first_of.get(&key) {
                Some(&first) => {
                    let (head, tail) = records.split_at_mut(at);
                    head[first].measures.checked_add(&tail[0].measures)?;
                    summed_away[at] = true;
                }
                None => {
                    first_of.insert(key, at);
                }
            }
        }
        // Normalized once per distinct raw name: an endpoint's rows share a
        // handful of models, and the rules are string work.
        let mut model_names = HashMap::new();
        // Sized exactly: the rows live until they are written, and a vector
        // grown by doubling would hold up to twice their memory.
        let mut rows = Vec::with_capacity(first_of.len());
        rows.extend(
            records
                .into_iter()
                .zip(keys)
                .zip(summed_away)
                .filter(|&(_, summed_away)| !summed_away)
                .map(|((record, key), _)| self.row(key, record, &mut model_names)),
        );
        Ok(rows)
    }

    /// `model_names` maps raw model names to their normalized name and family.
    fn row(&self, record_key: u64, record: FetchedRecord, model_names: &mut HashMap<Text, (Text, Text)>) -> UsageRow {
        let FetchedRecord {
            identity,
            dims,
            measures,
        } = record;
        let (model, model_family) = match model_names.get(dims.model_raw.as_str()) {
            Some(known) => known.clone(),
            None => {
                let normalized = models::normalize(self.provider, &dims.model_raw);
                let known = (Text::from(normalized.name), Text::from(normalized.family));
                model_names.insert(dims.model_raw.clone(), known.clone());
                known
            }
        };
        let estimated = match (identity.record_type, measures.provider_estimate) {
            (_, Some(estimate)) => estimate,
            (RecordType::Usage, None) => self
                .pricing
                .estimate(self.provider, &model, identity.bucket_start, &measures)
                .unwrap_or_default(),
            _ => Default::default(),
        };
        // `name=value` lines, in name order, sized once.
        let length: usize = dims
            .attributes
            .iter()
            .map(|(name, value)| name.len() + value.len() + 2)
            .sum();
        let mut attributes = Text::with_capacity(length.saturating_sub(1));
        for (name, value) in &dims.attributes {
            if !attributes.is_empty() {
                attributes.push('\n');
            }
            attributes.push_str(name);
            attributes.push('=');
            attributes.push_str(value);
        }
        let mut row = UsageRow {
            connection_id: self.connection_id.clone(),
            provider: self.provider_text.clone(),
            record_type: identity.record_type.text(),
            endpoint: identity.endpoint,
            bucket_start: to_ch_seconds(identity.bucket_start),
            bucket_end: to_ch_seconds(identity.bucket_end),
            granularity: identity.granularity.text(),
            record_key,
            model,
            model_raw: dims.model_raw,
            model_family,
            service: dims.service,
            workspace_id: dims.workspace_id,
            project_id: dims.project_id,
            api_key_id: dims.api_key_id,
            api_key_hint: dims.api_key_hint,
            user_id: dims.user_id,
            region: dims.region,
            resource_id: dims.resource_id,
            line_item: dims.line_item,
            attributes,
            input_tokens: measures.input_tokens,
            output_tokens: measures.output_tokens,
            cached_input_tokens: measures.cached_input_tokens,
            cache_creation_tokens: measures.cache_creation_tokens,
            requests: measures.requests,
            requests_reported: i8::from(measures.requests_reported),
            quantity: Dec9::from_decimal(measures.quantity),
            unit: measures.unit,
            cost: Dec9::from_decimal(measures.cost),
            estimated_cost: Dec9::from_decimal(estimated),
            credits: Dec9::from_decimal(measures.credits),
            cost_source: measures.cost_source.text(),
            currency: measures.currency,
            amount_original: Dec9::from_decimal(measures.amount_original),
            sign: 1,
            version: 0,
            synced_at: 0,
            content_hash: 0,
        };
        // Taken once here: the bucket digests, the diff and the stamping all
        // need it (`UsageRow::digest`).
        row.content_hash = row.fingerprint();
        row
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::schema::{Dimensions, Granularity, Measures, RawField, RawGroup, RecordIdentity};
    use super::*;

    fn record(model: &str, workspace: &str, input_tokens: i64, cost: &str) -> FetchedRecord {
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        FetchedRecord {
            identity: RecordIdentity {
                record_type: RecordType::Usage,
                endpoint: "completions".into(),
                granularity: Granularity::Day,
                bucket_start: start,
                bucket_end: start + chrono::Duration::days(1),
                raw_group: RawGroup::from([
                    ("model", RawField::Text(model.into())),
                    ("workspace_id", RawField::Text(workspace.into())),
                ]),
            },
            dims: Dimensions {
                model_raw: model.into(),
                workspace_id: workspace.into(),
                ..Dimensions::default()
            },
            measures: Measures {
                input_tokens,
                cost: cost.parse().unwrap(),
                ..Measures::default()
            },
        }
    }

    fn normalizer() -> Normalizer {
        Normalizer::new("acct", Provider::OpenAi, Arc::new(pricing::PricingRegistry::default()))
    }

    #[test]
    fn records_that_share_a_key_become_one_row_in_first_seen_order() {
        let rows = normalizer()
            .rows(vec![
                record("gpt-4o-2024-08-06", "ws-b", 10, "0.1"),
                record("gpt-4o-mini", "ws-a", 1, "0.000000001"),
                record("gpt-4o-2024-08-06", "ws-b", 5, "0.2"),
                record("gpt-4o-2024-08-06", "ws-a", 7, "0"),
                record("gpt-4o-2024-08-06", "ws-b", 1, "0.0000000004"),
            ])
            .unwrap();
        let seen: Vec<(&str, &str, i64, Dec9)> = rows
            .iter()
            .map(|r| (r.model_raw.as_str(), r.workspace_id.as_str(), r.input_tokens, r.cost))
            .collect();
        // 0.1 + 0.2 + 0.0000000004 = 0.3000000004: 0.300000000 at 9 places.
        let summed = Dec9(300_000_000);
        assert_eq!(
            seen,
            [
                ("gpt-4o-2024-08-06", "ws-b", 16, summed),
                ("gpt-4o-mini", "ws-a", 1, Dec9(1)),
                ("gpt-4o-2024-08-06", "ws-a", 7, Dec9(0)),
            ]
        );
        let keys: std::collections::HashSet<u64> = rows.iter().map(|r| r.record_key).collect();
        assert_eq!(keys.len(), 3, "one row per key");
        // Each row carries the fingerprint of its summed content, taken once.
        assert!(rows
            .iter()
            .all(|r| r.content_hash != 0 && r.content_hash == r.fingerprint()));
    }

    #[test]
    fn an_overflowing_sum_is_an_error_not_a_row() {
        let result = normalizer().rows(vec![record("m", "w", i64::MAX, "0"), record("m", "w", 1, "0")]);
        assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn every_row_gets_its_own_models_normalized_name() {
        let raw = [
            "gpt-4o-2024-08-06",
            "GPT-4o-mini ",
            "gpt-4o-2024-08-06",
            "ft:gpt-4o-mini-2024-07-18:org::x",
        ];
        let records = raw
            .iter()
            .enumerate()
            .map(|(i, m)| record(m, &format!("w{i}"), 1, "0"))
            .collect();
        let rows = normalizer().rows(records).unwrap();
        assert_eq!(rows.len(), raw.len());
        for (row, raw) in rows.iter().zip(raw) {
            let direct = models::normalize(Provider::OpenAi, raw);
            assert_eq!(
                (row.model.as_str(), row.model_family.as_str()),
                (direct.name.as_str(), direct.family.as_str())
            );
        }
        assert_eq!(rows[0].model, "gpt-4o");
    }
}
