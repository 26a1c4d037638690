//! From adapter records to `usage_records` rows: identity hash, model names,
//! estimated prices, and the summing of records that share a key.

pub mod models;
pub mod pricing;
pub mod record_key;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;

use crate::provider::Provider;
use schema::{to_ch_seconds, Dec9, FetchedRecord, RecordType, UsageRow};

/// Turns one account's fetched records into rows (sign +1, version unset).
#[derive(Clone)]
pub struct Normalizer {
    connection_id: String,
    provider: Provider,
    pricing: Arc<pricing::PricingRegistry>,
}

impl Normalizer {
    pub fn new(connection_id: &str, provider: Provider, pricing: Arc<pricing::PricingRegistry>) -> Self {
        Self {
            connection_id: connection_id.to_string(),
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
        let attributes = dims
            .attributes
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        UsageRow {
            connection_id: self.connection_id.clone(),
            provider: self.provider.as_str().to_string(),
            record_type: identity.record_type.as_str().to_string(),
            endpoint: identity.endpoint,
            bucket_start: to_ch_seconds(identity.bucket_start),
            bucket_end: to_ch_seconds(identity.bucket_end),
            granularity: identity.granularity.as_str().to_string(),
            record_key,
            model: model.name,
            model_raw: dims.model_raw,
            model_family: model.family,
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
            cost_source: measures.cost_source.as_str().to_string(),
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
