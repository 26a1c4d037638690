//! Model-name normalization (placeholder until the registry lands).

use crate::providers::Provider;

/// A normalized model name and its family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelName {
    pub name: String,
    pub family: String,
}

pub fn normalize(_provider: Provider, raw: &str) -> ModelName {
    ModelName {
        name: raw.to_string(),
        family: String::new(),
    }
}
