//! Descriptors of providers that are configured but not implemented yet:
//! their accounts are accepted only with `enabled = false`, so a config can
//! be written ahead of the release that syncs them. Each moves to its own
//! folder when its adapter lands.

use std::time::Duration;

use super::platform::MeasurePolicy;
use super::registry::{CredentialKeys, ProviderDescriptor, BILLING_INTERVAL, DAY};
use crate::provider::Provider;

const fn planned(
    provider: Provider,
    default_base_url: Option<&'static str>,
    default_interval: Duration,
    min_lookback_days: u64,
    credentials: CredentialKeys,
    settings: &'static [&'static str],
) -> ProviderDescriptor {
    ProviderDescriptor {
        provider,
        default_base_url,
        default_interval,
        min_lookback: Duration::from_secs(min_lookback_days * DAY.as_secs()),
        credentials,
        settings,
        measures: MeasurePolicy {
            negative_money: true,
            negative_quantities: true,
        },
        requests_per_second: 5,
        key_hints: &[],
        adapter: None,
    }
}

pub static AWS_BEDROCK: ProviderDescriptor = planned(
    Provider::AwsBedrock,
    Some("https://ce.us-east-1.amazonaws.com"),
    BILLING_INTERVAL,
    3,
    CredentialKeys {
        required: &["access_key_id", "secret_access_key", "region"],
        optional: &["session_token", "role_arn", "external_id"],
        one_of: &[],
        identity: &["access_key_id", "role_arn"],
    },
    &["cloudwatch_url"],
);
