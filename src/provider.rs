//! Which provider a thing belongs to: the identity every layer shares
//! (config, providers, normalize, metrics, store). A leaf module on purpose:
//! it depends on nothing else in the crate, so no layer has to reach into
//! `providers` just to name a provider. What a provider *does* (defaults,
//! credentials, the adapter) lives in its folder under `providers/`, listed
//! once in `providers::registry`.

use std::fmt;

/// The providers tokentra-sync knows, by their config name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Provider {
    OpenAi,
    Anthropic,
    AwsBedrock,
    AzureOpenAi,
    GoogleVertex,
    OpenRouter,
    LiteLlm,
    Fal,
    Runway,
    PiApi,
}

impl Provider {
    pub const ALL: [Provider; 10] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::AwsBedrock,
        Provider::AzureOpenAi,
        Provider::GoogleVertex,
        Provider::OpenRouter,
        Provider::LiteLlm,
        Provider::Fal,
        Provider::Runway,
        Provider::PiApi,
    ];

    /// The name used in config files, tables and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::Anthropic => "anthropic",
            Provider::AwsBedrock => "aws_bedrock",
            Provider::AzureOpenAi => "azure_openai",
            Provider::GoogleVertex => "google_vertex",
            Provider::OpenRouter => "openrouter",
            Provider::LiteLlm => "litellm",
            Provider::Fal => "fal",
            Provider::Runway => "runway",
            Provider::PiApi => "piapi",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// Every config name, for "use one of ..." messages.
    pub fn names() -> String {
        Self::ALL.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
