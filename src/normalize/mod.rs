//! From adapter records to `usage_records` rows: identity hash, model names,
//! estimated prices, and the summing of records that share a key.

pub mod models;
pub mod pricing;
pub mod record_key;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use crate::provider::Provider;
use schema::{to_ch_seconds, Dec9, FetchedRecord, RecordType, Text, UsageRow};

/// Turns one account's fetched records into rows (sign +1, version unset).
#[derive(Clone)]
pub struct Normalizer {
    connection_id: Text,
    provider: Provider,
    pricing: Arc<pricing::PricingRegistry>,
}

impl Normalizer {
    pub fn new(connection_id: &str, provider: Provider, pricing: Arc<pricing::PricingRegistry>) -> Self {
        Self {
            connection_id: connection_id.into(),
            provider,
            pricing,
        }
    }

    /// Rows for `records`, one per record key: records that share a key are
    /// summed first (docs/DESIGN.md rule 1; checked: an overflowing sum is an
    /// error), in first-seen order.
    pub fn rows(&self, records: Vec<FetchedRecord>) -> Result<Vec<UsageRow>, String> {
        let mut index: HashMap<u64, usize> = HashMap::with_capacity(records.len());
        let mut merged: Vec<(u64, FetchedRecord)> = Vec::with_capacity(records.len());
        for record in records {
            let key = record_key::record_key(&self.connection_id, &record.identity);
            match index.get(&key) {
                Some(&at) => merged[at].1.measures.checked_add(&record.measures)?,
                None => {
                    index.insert(key, merged.len());
                    merged.push((key, record));
                }
            }
        }
        Ok(merged.into_iter().map(|(key, record)| self.row(key, record)).collect())
    }

    fn row(&self, record_key: u64, record: FetchedRecord) -> UsageRow {
        let FetchedRecord {
            identity,
            dims,
            measures,
        } = record;
        let model = models::normalize(self.provider, &dims.model_raw);
        let estimated = match (identity.record_type, measures.provider_estimate) {
            (_, Some(estimate)) => estimate,
            (RecordType::Usage, None) => self
                .pricing
                .estimate(self.provider, &model.name, identity.bucket_start, &measures)
                .unwrap_or_default(),
            _ => Default::default(),
        };
        // `name=value` lines, in name order.
        let mut attributes = Text::default();
        for (name, value) in &dims.attributes {
            if !attributes.is_empty() {
                attributes.push('\n');
            }
            attributes.push_str(name);
            attributes.push('=');
            attributes.push_str(value);
        }
        UsageRow {
            connection_id: self.connection_id.clone(),
            provider: Text::const_new(self.provider.as_str()),
            record_type: Text::const_new(identity.record_type.as_str()),
            endpoint: identity.endpoint,
            bucket_start: to_ch_seconds(identity.bucket_start),
            bucket_end: to_ch_seconds(identity.bucket_end),
            granularity: Text::const_new(identity.granularity.as_str()),
            record_key,
            model: model.name.into(),
            model_raw: dims.model_raw,
            model_family: model.family.into(),
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
            cost_source: Text::const_new(measures.cost_source.as_str()),
            currency: measures.currency,
            amount_original: Dec9::from_decimal(measures.amount_original),
            sign: 1,
            version: 0,
            synced_at: 0,
            // Set by the diff when the row is written.
            content_hash: 0,
        }
    }
}
