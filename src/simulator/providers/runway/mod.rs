//! Runway API: `POST /v1/organization/usage` with `{startDate, beforeDate}`
//! (UTC dates, `beforeDate` exclusive, at most 90 days), answering net
//! credits per model and day; only days with usage are listed.
//!
//! Auth: `Authorization: Bearer <runway_api_key(org)>` and
//! `X-Runway-Version: 2024-11-06` (400 without it, as the API does).
//! Data: per (day, model) the sum over the day's complete hours of whole
//! credits; on an org's refund days a model's net is negative.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{day_of, days_of, object, traffic, OrgDraw, TruthBook, TruthRow, World, DAY, HOUR};
use crate::simulator::runway_api_key;
use crate::simulator::server::Reply;

pub(crate) const NAME: &str = "runway";

/// (model, credits per hour at peak).
const MODELS: [(&str, i64); 4] = [
    ("gen4_turbo", 60),
    ("veo3.1_fast", 140),
    ("gen4_image", 25),
    ("eleven_v3", 9),
];

/// The USD price of a credit the truth is priced at (the adapter's default).
pub(crate) const USD_PER_CREDIT: Decimal = Decimal::from_parts(1, 0, 0, false, 2);

/// Net credits of `model` on the UTC day starting at `day`.
fn credits(world: &World<'_>, org: &str, day: i64, m: usize) -> i64 {
    let draw = OrgDraw::new(world.seed, NAME, org);
    if draw.at(&[-20, m as i64]).is_multiple_of(5) {
        return 0; // a model this org does not use
    }
    let refund_day = draw.at(&[day, m as i64, -1]).is_multiple_of(6);
    let mut net = 0;
    for hour in (day..day + DAY).step_by(HOUR as usize) {
        if !world.has_data(hour) {
            continue;
        }
        let roll = draw.at(&[hour, m as i64]);
        net += if refund_day {
            -((roll % 3) as i64)
        } else {
            MODELS[m].1 * traffic(hour) / 100 * (roll % 100) as i64 / 100
        };
    }
    net
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({ "error": message }))
}

fn usage(world: &World<'_>, org: &str, body: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return error(400, "Request body must be JSON");
    };
    let date = |field: &str| {
        body.get(field)
            .and_then(Value::as_str)
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
            .map(|d| d.and_time(Default::default()).and_utc().timestamp())
    };
    let (Some(start), Some(before)) = (date("startDate"), date("beforeDate")) else {
        return error(400, "startDate and beforeDate must be dates (YYYY-MM-DD)");
    };
    if before <= start || before - start > 90 * DAY {
        return error(400, "The date range must be between 1 and 90 days");
    }
    let mut results = Vec::new();
    for day in days_of(start, before) {
        let used: Vec<Value> = (0..MODELS.len())
            .filter_map(|m| {
                let amount = credits(world, org, day, m);
                (amount != 0).then(|| json!({"model": MODELS[m].0, "amount": amount}))
            })
            .collect();
        if !used.is_empty() {
            results.push(object([
                ("date", Value::from(day_of(day).to_string())),
                ("usedCredits", Value::Array(used)),
            ]));
        }
    }
    let models: Vec<&str> = MODELS.iter().map(|(m, _)| *m).collect();
    Reply::json(
        200,
        object([
            ("models", json!(models)),
            ("results", Value::Array(results)),
            ("apiKeys", json!([])),
            ("resultsByApiKey", json!([])),
        ]),
    )
}

/// Runway in the simulator's registry.
pub(crate) struct Runway;

impl SimulatedProvider for Runway {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::runway_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        let auth = request.header("authorization").unwrap_or_default();
        if !request.org_known || auth != format!("Bearer {}", runway_api_key(request.org)) {
            return Err(error(401, "Invalid API key"));
        }
        if request.header("x-runway-version") != Some("2024-11-06") {
            return Err(error(400, "X-Runway-Version header is required; use 2024-11-06"));
        }
        Ok(())
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "POST" || request.tail != "v1/organization/usage" {
            return error(404, "Not found");
        }
        usage(world, request.org, request.body)
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(429, "Too many requests");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(500, "Internal server error")
    }

    /// Per day and model: net credits in `quantity` (unit `credits`, refunds
    /// negative) and their USD at the default $0.01 a credit in `cost`.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        if let Some(api) = &options.api {
            return Err(format!("runway has one API; api '{api}' does not apply"));
        }
        let mut book = TruthBook::default();
        for day in days_of(start, end) {
            for (m, (model, _)) in MODELS.iter().enumerate() {
                let amount = Decimal::from(credits(world, org, day, m));
                let t = book.entry(day_of(day), model, "credits");
                t.quantity += amount;
                t.cost += amount * USD_PER_CREDIT;
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
    fn refund_days_exist_and_ranges_over_90_days_are_refused() {
        let w = world(NOW);
        let today = floor(NOW, DAY);
        let nets: Vec<i64> = (1..10)
            .flat_map(|d| (0..MODELS.len()).map(move |m| (d, m)))
            .map(|(d, m)| credits(&w, "org-1", today - d * DAY, m))
            .collect();
        assert!(nets.iter().any(|n| *n < 0) && nets.iter().any(|n| *n > 0), "{nets:?}");
        let long = br#"{"startDate":"2024-01-01","beforeDate":"2024-04-01"}"#;
        assert_eq!(usage(&w, "org-1", long).status, 400);
        let ok = br#"{"startDate":"2025-01-10","beforeDate":"2025-01-16"}"#;
        assert_eq!(usage(&w, "org-1", ok).status, 200);
    }
}
