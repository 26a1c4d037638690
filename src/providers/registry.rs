//! The registry: one descriptor per provider, one line each. A provider's
//! folder defines its descriptor (defaults, credential keys, measure rules,
//! typed-config check, constructor); nothing else in the crate needs to know
//! which providers exist.

use std::sync::Arc;
use std::time::Duration;

use super::platform::MeasurePolicy;
use super::{AccountView, ProviderAdapter, ProviderError, RetryPolicy};
use crate::provider::Provider;

/// Which credential keys an account of a provider takes.
#[derive(Clone, Copy, Debug)]
pub struct CredentialKeys {
    pub required: &'static [&'static str],
    pub optional: &'static [&'static str],
    /// Exactly one of these must be set (a key inline or a key file).
    pub one_of: &'static [&'static str],
    /// Credentials that identify the billed organization: two accounts with
    /// the same values would count one bill twice.
    pub identity: &'static [&'static str],
}

impl CredentialKeys {
    pub const API_KEY: CredentialKeys = CredentialKeys {
        required: &["api_key"],
        optional: &[],
        one_of: &[],
        identity: &["api_key"],
    };

    pub fn all(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.required.iter().chain(self.optional).chain(self.one_of).copied()
    }
}

/// What an adapter is built with besides its account.
#[derive(Clone, Debug, Default)]
pub struct BuildContext {
    pub retry: RetryPolicy,
}

/// A provider's constructor.
pub type BuildFn = fn(AccountView<'_>, &BuildContext) -> Result<Arc<dyn ProviderAdapter>, ProviderError>;

/// The provider-specific code behind a descriptor.
#[derive(Clone, Copy)]
pub struct AdapterHooks {
    /// Reads the account into the provider's typed config, purely: the
    /// problems `check-config` reports, each naming account, field and fix.
    pub check: fn(AccountView<'_>) -> Result<(), Vec<String>>,
    pub build: BuildFn,
}

/// A credential format that is the wrong key type for this API, and what to
/// use instead: `test-connection` names it when the provider refuses a key.
#[derive(Clone, Copy, Debug)]
pub struct KeyHint {
    pub credential: &'static str,
    pub prefix: &'static str,
    pub diagnosis: &'static str,
}

/// Everything the rest of the crate knows about one provider.
pub struct ProviderDescriptor {
    pub provider: Provider,
    /// The API root as the provider's own SDK uses it; `None` when the user
    /// must give one (a LiteLLM proxy is their own server).
    pub default_base_url: Option<&'static str>,
    /// Usage APIs are cheap and fresh (5m); billing APIs are slow or charge
    /// per call (60m).
    pub default_interval: Duration,
    /// Shortest lookback that still catches the provider's late data.
    pub min_lookback: Duration,
    pub credentials: CredentialKeys,
    /// Account keys besides the common ones (`cloudwatch_url`, ...).
    pub settings: &'static [&'static str],
    pub measures: MeasurePolicy,
    /// Client-side request rate per credential.
    pub requests_per_second: u32,
    /// Wrong key types recognisable by their format.
    pub key_hints: &'static [KeyHint],
    pub adapter: AdapterHooks,
}

pub const DAY: Duration = Duration::from_secs(86_400);
pub const USAGE_INTERVAL: Duration = Duration::from_secs(300);
pub const BILLING_INTERVAL: Duration = Duration::from_secs(3_600);

/// Every provider's descriptor: adding a provider is one line here.
static REGISTRY: [&ProviderDescriptor; 10] = [
    &super::openai::DESCRIPTOR,
    &super::anthropic::DESCRIPTOR,
    &super::aws_bedrock::DESCRIPTOR,
    &super::azure_openai::DESCRIPTOR,
    &super::google_vertex::DESCRIPTOR,
    &super::openrouter::DESCRIPTOR,
    &super::litellm::DESCRIPTOR,
    &super::fal::DESCRIPTOR,
    &super::runway::DESCRIPTOR,
    &super::piapi::DESCRIPTOR,
];

pub fn descriptor(provider: Provider) -> &'static ProviderDescriptor {
    REGISTRY
        .iter()
        .find(|d| d.provider == provider)
        .copied()
        .expect("every provider has a descriptor (checked by a test)")
}

/// The diagnosis of a credential of the wrong type, if its format tells.
pub fn wrong_key_type(
    provider: Provider,
    credentials: &std::collections::BTreeMap<String, crate::config::Secret>,
) -> Option<&'static str> {
    descriptor(provider).key_hints.iter().find_map(|hint| {
        credentials
            .get(hint.credential)
            .filter(|value| value.expose().starts_with(hint.prefix))
            .map(|_| hint.diagnosis)
    })
}

/// A provider's typed config for `build`: the same reading `check` did at
/// load, its problems as one config error of the account.
pub fn read_config<T>(
    account: AccountView<'_>,
    read: fn(AccountView<'_>) -> Result<T, Vec<String>>,
) -> Result<T, ProviderError> {
    read(account).map_err(|problems| ProviderError::Config {
        account: account.id.to_string(),
        detail: problems.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_has_exactly_one_descriptor() {
        for provider in Provider::ALL {
            let count = REGISTRY.iter().filter(|d| d.provider == provider).count();
            assert_eq!(count, 1, "{provider}");
        }
    }
}
