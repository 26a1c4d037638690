//! PiAPI: `GET /account/info` (`x-api-key: <piapi_api_key(org)>`), the only
//! documented billing signal: the account's remaining balance.
//!
//! The balance is a per-org constant scaled by the latest restatement of the
//! current UTC day (`POST /_sim/restate` with provider `piapi`): a factor
//! below 1 is spend, above 1 a top-up. So a test moves the balance exactly
//! when it wants to, without waiting for a clock.
//!
//! Truth: derived spend depends on when readings were taken, which only the
//! test knows, so [`SimulatedProvider::truth`] refuses (the test computes
//! the expected falls from the balances it set).

use rust_decimal::Decimal;
use serde_json::{json, Number, Value};

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::data::{floor, OrgDraw, Row, TruthRow, World, DAY};
use crate::simulator::piapi_api_key;
use crate::simulator::server::Reply;

pub(crate) const NAME: &str = "piapi";

/// The balance of `org` now, in micro-dollars before scaling.
fn base_micros(world: &World<'_>, org: &str) -> i64 {
    200_000_000 + (OrgDraw::new(world.seed, NAME, org).at(&[-30]) % 100_000_000) as i64
}

/// The balance of `org` now, in USD (exact).
pub(crate) fn balance(world: &World<'_>, org: &str) -> Decimal {
    let rows = world.restate(
        NAME,
        org,
        floor(world.now, DAY),
        vec![Row::usage(vec![], vec![base_micros(world, org)])],
    );
    Decimal::new(rows[0].vals[0], 6)
}

fn error(status: u16, message: &str) -> Reply {
    Reply::json(status, json!({"code": status, "data": {}, "message": message}))
}

/// PiAPI in the simulator's registry.
pub(crate) struct PiApi;

impl SimulatedProvider for PiApi {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::piapi_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        match request.header("x-api-key") {
            Some(key) if request.org_known && key == piapi_api_key(request.org) => Ok(()),
            _ => Err(error(401, "Unauthorized: invalid or missing x-api-key")),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        if request.method != "GET" || request.tail != "account/info" {
            return error(404, "not found");
        }
        let usd = balance(world, request.org);
        let number = Number::from_str_exact(&usd.to_string());
        Reply::json(
            200,
            json!({"code": 200, "data": {
                "account_name": format!("FAKE {}", request.org),
                "account_id": format!("FAKE-acct-{}", request.org),
                "credits": (usd * Decimal::from(100)).trunc().to_string().parse::<i64>().unwrap_or(0),
                "equivalent_in_usd": number,
            }, "message": "success"}),
        )
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(429, "too many requests");
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(500, "internal server error")
    }

    fn truth(
        &self,
        _world: &World<'_>,
        _org: &str,
        _start: i64,
        _end: i64,
        _options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        Err("piapi spend is derived from the readings a test takes; compute it from the balances set".into())
    }
}

trait ExactNumber {
    fn from_str_exact(text: &str) -> Value;
}

impl ExactNumber for Number {
    fn from_str_exact(text: &str) -> Value {
        use std::str::FromStr;
        Number::from_str(text).map(Value::Number).unwrap_or(Value::Null)
    }
}
