//! `verify`: per connection and day, the net of `usage_records` must equal
//! `usage_daily` (docs/DESIGN.md rule 1, repair). A difference means an insert
//! whose materialized-view part never landed (or landed twice); it is
//! repaired by inserting the difference into `usage_daily`, which sums it in.
//!
//! Run it only while no sync of the connection is writing: the daemon runs it
//! inside the connection's own actor between syncs, and the `verify` command
//! holds the account locks. Otherwise a read could fall between the two halves
//! of an insert and "repair" a difference that was about to vanish.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::client::{ClickhouseClient, StoreError};
use super::sink::{RowSink, SinkError as WriterError};
use crate::normalize::schema::Dec9;

/// One row of `usage_daily`, field for field in column order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clickhouse::Row)]
pub struct DailyRow {
    /// Days since 1970-01-01 (ClickHouse `Date`).
    pub day: u16,
    pub connection_id: String,
    pub provider: String,
    pub record_type: String,
    pub service: String,
    pub model: String,
    pub model_family: String,
    pub workspace_id: String,
    pub project_id: String,
    pub api_key_id: String,
    pub api_key_hint: String,
    pub cost_source: String,
    pub unit: String,
    pub currency: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_input_tokens: i64,
    pub cache_creation_tokens: i64,
    pub requests: i64,
    pub quantity: Dec9,
    pub cost: Dec9,
    pub estimated_cost: Dec9,
    pub credits: Dec9,
    pub records: i64,
}

const KEY_COLUMNS: &str = "connection_id, provider, record_type, service, model, model_family, workspace_id, \
                           project_id, api_key_id, api_key_hint, cost_source, unit, currency";

type Key = (u16, [String; 13]);

impl DailyRow {
    fn key(&self) -> Key {
        (
            self.day,
            [
                self.connection_id.clone(),
                self.provider.clone(),
                self.record_type.clone(),
                self.service.clone(),
                self.model.clone(),
                self.model_family.clone(),
                self.workspace_id.clone(),
                self.project_id.clone(),
                self.api_key_id.clone(),
                self.api_key_hint.clone(),
                self.cost_source.clone(),
                self.unit.clone(),
                self.currency.clone(),
            ],
        )
    }

    /// `self - other`, measures only (keys from `self`).
    fn minus(&self, other: &DailyRow) -> DailyRow {
        DailyRow {
            input_tokens: self.input_tokens - other.input_tokens,
            output_tokens: self.output_tokens - other.output_tokens,
            cached_input_tokens: self.cached_input_tokens - other.cached_input_tokens,
            cache_creation_tokens: self.cache_creation_tokens - other.cache_creation_tokens,
            requests: self.requests - other.requests,
            quantity: Dec9(self.quantity.0 - other.quantity.0),
            cost: Dec9(self.cost.0 - other.cost.0),
            estimated_cost: Dec9(self.estimated_cost.0 - other.estimated_cost.0),
            credits: Dec9(self.credits.0 - other.credits.0),
            records: self.records - other.records,
            ..self.clone()
        }
    }

    fn is_zero(&self) -> bool {
        self.input_tokens == 0
            && self.output_tokens == 0
            && self.cached_input_tokens == 0
            && self.cache_creation_tokens == 0
            && self.requests == 0
            && self.quantity.is_zero()
            && self.cost.is_zero()
            && self.estimated_cost.is_zero()
            && self.credits.is_zero()
            && self.records == 0
    }

    pub fn date(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(u64::from(self.day))
    }
}

/// The rows to add to `usage_daily` so it equals the net of `usage_records`.
pub fn repairs(from_records: Vec<DailyRow>, from_daily: Vec<DailyRow>) -> Vec<DailyRow> {
    let mut daily: BTreeMap<Key, DailyRow> = from_daily.into_iter().map(|r| (r.key(), r)).collect();
    let mut out = Vec::new();
    for truth in from_records {
        let key = truth.key();
        let diff = match daily.remove(&key) {
            Some(stored) => truth.minus(&stored),
            None => truth,
        };
        if !diff.is_zero() {
            out.push(diff);
        }
    }
    // Rollup rows with no records behind them must go to zero.
    for (_, stored) in daily {
        let zero = DailyRow {
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            cache_creation_tokens: 0,
            requests: 0,
            quantity: Dec9(0),
            cost: Dec9(0),
            estimated_cost: Dec9(0),
            credits: Dec9(0),
            records: 0,
            ..stored.clone()
        };
        let diff = zero.minus(&stored);
        if !diff.is_zero() {
            out.push(diff);
        }
    }
    out
}

/// What one verify of one connection found.
#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub connection_id: String,
    pub groups_checked: usize,
    /// Repair rows written, one per (day, dimensions) that differed.
    pub repairs: Vec<DailyRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("verify of '{connection}': {source}")]
    Store {
        connection: String,
        #[source]
        source: StoreError,
    },
    #[error("verify of '{connection}': {source}")]
    Writer {
        connection: String,
        #[source]
        source: WriterError,
    },
}

/// Verifies and repairs one connection's days in `[since, until)`.
pub async fn verify_connection(
    client: &ClickhouseClient,
    writer: &dyn RowSink,
    connection_id: &str,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<VerifyReport, VerifyError> {
    let store_err = |source| VerifyError::Store {
        connection: connection_id.to_string(),
        source,
    };
    let measures = |prefix: &str| {
        [
            "input_tokens",
            "output_tokens",
            "cached_input_tokens",
            "cache_creation_tokens",
            "requests",
            "quantity",
            "cost",
            "estimated_cost",
            "credits",
        ]
        .iter()
        .map(|m| format!("sum({m}{prefix}) AS {m}"))
        .collect::<Vec<_>>()
        .join(", ")
    };
    // Grouping keys are a Date and strings only (a Decimal key crashes 18.16).
    let records_sql = format!(
        "SELECT toDate(bucket_start, 'UTC') AS day, {KEY_COLUMNS}, {}, sum(toInt64(sign)) AS records \
         FROM usage_records \
         WHERE connection_id = ? AND bucket_start >= toDateTime(?) AND bucket_start < toDateTime(?) \
         GROUP BY day, {KEY_COLUMNS}",
        measures(" * sign")
    );
    let daily_sql = format!(
        "SELECT day, {KEY_COLUMNS}, {}, sum(records) AS records \
         FROM usage_daily \
         WHERE connection_id = ? AND day >= toDate(?) AND day < toDate(?) \
         GROUP BY day, {KEY_COLUMNS}",
        measures("")
    );
    let since_s = since.timestamp().max(0) as u32;
    let until_s = until.timestamp().max(0) as u32;
    let records_query = client
        .query(&records_sql)
        .bind(connection_id)
        .bind(since_s)
        .bind(until_s);
    let from_records: Vec<DailyRow> = client
        .fetch_all("verify read of usage_records", records_query)
        .await
        .map_err(store_err)?;
    let daily_query = client
        .query(&daily_sql)
        .bind(connection_id)
        .bind(since.date_naive().to_string())
        .bind(until.date_naive().to_string());
    let from_daily: Vec<DailyRow> = client
        .fetch_all("verify read of usage_daily", daily_query)
        .await
        .map_err(store_err)?;
    let groups_checked = from_records.len().max(from_daily.len());
    let fixes = repairs(from_records, from_daily);
    if !fixes.is_empty() {
        tracing::warn!(
            connection = connection_id,
            groups = fixes.len(),
            "usage_daily differed from usage_records; inserting the difference"
        );
        writer
            .write_daily(fixes.clone())
            .await
            .map_err(|source| VerifyError::Writer {
                connection: connection_id.to_string(),
                source,
            })?;
    }
    Ok(VerifyReport {
        connection_id: connection_id.to_string(),
        groups_checked,
        repairs: fixes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(day: u16, model: &str, tokens: i64, cost: i128, records: i64) -> DailyRow {
        DailyRow {
            day,
            connection_id: "c".into(),
            model: model.into(),
            input_tokens: tokens,
            cost: Dec9(cost),
            records,
            ..Default::default()
        }
    }

    #[test]
    fn equal_sides_need_no_repair() {
        let a = vec![row(1, "m", 10, 5, 1)];
        assert!(repairs(a.clone(), a).is_empty());
    }

    #[test]
    fn a_missing_view_insert_is_added_back() {
        let fixes = repairs(vec![row(1, "m", 10, 5, 2)], vec![row(1, "m", 4, 2, 1)]);
        assert_eq!(fixes, vec![row(1, "m", 6, 3, 1)]);
    }

    #[test]
    fn a_doubled_view_insert_is_taken_out() {
        let fixes = repairs(vec![row(1, "m", 10, 5, 1)], vec![row(1, "m", 20, 10, 2)]);
        assert_eq!(fixes, vec![row(1, "m", -10, -5, -1)]);
    }

    #[test]
    fn rollup_rows_without_records_are_zeroed_and_new_ones_added() {
        let fixes = repairs(vec![row(2, "new", 3, 1, 1)], vec![row(1, "ghost", 7, 9, 1)]);
        assert_eq!(fixes, vec![row(2, "new", 3, 1, 1), row(1, "ghost", -7, -9, -1)]);
    }
}
