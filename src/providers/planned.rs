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

pub static AZURE_OPENAI: ProviderDescriptor = planned(
    Provider::AzureOpenAi,
    Some("https://management.azure.com"),
    BILLING_INTERVAL,
    3,
    CredentialKeys {
        required: &["tenant_id", "client_id", "client_secret", "subscription_id"],
        optional: &["resource_group"],
        one_of: &[],
        identity: &["tenant_id", "subscription_id", "resource_group"],
    },
    &["login_url"],
);

pub static GOOGLE_VERTEX: ProviderDescriptor = planned(
    Provider::GoogleVertex,
    Some("https://bigquery.googleapis.com/bigquery/v2"),
    BILLING_INTERVAL,
    3,
    CredentialKeys {
        required: &[],
        optional: &[],
        one_of: &["service_account_json", "service_account_file"],
        identity: &["service_account_json", "service_account_file"],
    },
    &["monitoring_url", "billing_table"],
);
