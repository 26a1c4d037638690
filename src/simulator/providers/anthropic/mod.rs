//! Anthropic Admin API: the legacy usage and cost reports ([`legacy`]) and the
//! beta Usage and Cost Analytics API ([`analytics`]), over one seeded dataset.
//!
//! Every request needs `x-api-key: <anthropic_api_key(org)>` and
//! `anthropic-version: 2023-06-01`; the analytics endpoints also the
//! `anthropic-beta` header.

mod analytics;
mod data;
mod legacy;
mod names;

use serde_json::json;

use super::{SimRequest, SimulatedProvider, TruthOptions};
use crate::simulator::anthropic_api_key;
use crate::simulator::data::{TruthRow, World};
use crate::simulator::query::Params;
use crate::simulator::server::Reply;

/// The provider's name in URLs, truth queries and seeds.
pub(crate) const NAME: &str = "anthropic";

/// The API version the simulator accepts in `anthropic-version`.
pub(crate) const API_VERSION: &str = "2023-06-01";

/// Anthropic in the simulator's registry.
pub(crate) struct Anthropic;

pub(super) fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

pub(super) fn bad_request(message: impl AsRef<str>) -> Reply {
    error(400, "invalid_request_error", message.as_ref())
}

impl SimulatedProvider for Anthropic {
    fn name(&self) -> &'static str {
        NAME
    }

    fn base_path(&self, org: &str) -> String {
        format!("/{NAME}/{org}")
    }

    fn account_credentials(&self, org: &str) -> Vec<(&'static str, String)> {
        vec![("api_key", super::super::anthropic_api_key(org))]
    }

    fn authorize(&self, request: &SimRequest<'_>) -> Result<(), Reply> {
        let key = anthropic_api_key(request.org);
        if request.org_known && request.header("x-api-key") == Some(crate::simulator::expired_api_key(&key).as_str()) {
            return Err(error(
                401,
                "authentication_error",
                "This API key has expired or was revoked.",
            ));
        }
        if !request.org_known || request.header("x-api-key") != Some(key.as_str()) {
            return Err(error(401, "authentication_error", "invalid x-api-key"));
        }
        match request.header("anthropic-version") {
            None => Err(bad_request("anthropic-version: header is required")),
            Some(v) if v != API_VERSION => Err(bad_request(format!("anthropic-version: unknown version '{v}'"))),
            Some(_) => Ok(()),
        }
    }

    fn route(&self, world: &World<'_>, request: &SimRequest<'_>) -> Reply {
        let params = Params::parse(request.query);
        legacy::route(world, request.org, request.method, request.tail, &params)
            .or_else(|| names::route(world, request.org, request.method, request.tail, &params))
            .or_else(|| analytics::route(world, request, &params))
            .unwrap_or_else(|| error(404, "not_found_error", "Not found"))
    }

    fn rate_limited(&self, retry_after: u64) -> Reply {
        let mut reply = error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit. Please try again later.",
        );
        reply.retry_after = Some(retry_after);
        reply
    }

    fn server_error(&self) -> Reply {
        error(500, "api_error", "Internal server error")
    }

    fn expired_credentials(&self) -> Reply {
        error(401, "authentication_error", "This API key has expired or was revoked.")
    }

    /// `api`: `legacy` (default) or `analytics`, as in the account's config;
    /// only analytics accounts get request counts.
    fn truth(
        &self,
        world: &World<'_>,
        org: &str,
        start: i64,
        end: i64,
        options: &TruthOptions,
    ) -> Result<Vec<TruthRow>, String> {
        let analytics = match options.api.as_deref() {
            None | Some("legacy") => false,
            Some("analytics") => true,
            Some(other) => return Err(format!("anthropic api must be 'legacy' or 'analytics', not '{other}'")),
        };
        Ok(data::truth(world, org, start, end, analytics))
    }
}
