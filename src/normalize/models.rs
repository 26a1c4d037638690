//! Model-name normalization: one name per model across snapshots and routes.
//!
//! Providers name one model many ways: dated snapshots (`gpt-4o-2024-08-06`),
//! routing prefixes (`openai/gpt-4o` through OpenRouter or LiteLLM), Bedrock ids
//! (`us.anthropic.claude-3-5-sonnet-20240620-v1:0`), Vertex ids
//! (`claude-sonnet-4@20250514`, `models/gemini-1.5-pro-002`). Dashboards and the
//! pricing registry need one stable name per model, so [`normalize`] maps all of
//! these to the same lower-case name, and a coarse `family` groups related models
//! (`gpt-4o-mini` and `gpt-4o` are both family `gpt-4o`).
//!
//! The raw name is always kept beside the normalized one (`model_raw`), and
//! neither goes into the record identity, so changing these rules never changes a
//! record key: it only changes how rows group in dashboards.
//!
//! Rules, applied in this order and repeated until nothing changes (which makes
//! normalization idempotent: normalizing a normalized name is a no-op):
//! 1. Trim and lower-case.
//! 2. Fine-tunes (`ft:<base>:<org>::<id>`) are kept whole: a fine-tune is its own
//!    model with its own price, so folding it into its base would misprice it.
//!    Its family is the base model's family.
//! 3. Strip routing prefixes from [`ROUTING_PREFIXES`] (`openai/`, `models/`, ...)
//!    and AWS ARNs up to their last `/`. Unknown prefixes (e.g. fal's
//!    `fal-ai/flux/dev`) are kept: for those the whole path is the model.
//! 4. Bedrock ids: an optional region prefix from [`BEDROCK_REGIONS`] followed by a
//!    vendor prefix from [`BEDROCK_VENDORS`] is stripped, then the `:N` throughput
//!    tail, then a `-vN` version that directly follows a date (`-20240620-v1`).
//!    A `-vN` that does not follow a date is part of the model's own name
//!    (`titan-embed-text-v2`) and stays.
//! 5. Snapshot suffixes from [`SNAPSHOT_SUFFIXES`]: `@YYYYMMDD` (Vertex),
//!    `-YYYY-MM-DD`, `-YYYYMMDD`, `-latest`, OpenAI's legacy `-MMDD` on `gpt-`
//!    names (`gpt-4-0613`), and Gemini's `-00N` stable versions.
//!
//! Providers whose "models" are endpoint paths or product names rather than token
//! models (fal, Runway, PiAPI) get only step 1, so `fal-ai/flux/v1.1` stays whole.

use crate::provider::Provider;

/// A normalized model name and its family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelName {
    /// Lower case, no routing prefix, no snapshot suffix: the pricing key.
    pub name: String,
    /// A coarse grouping for dashboards; see [`FAMILIES`].
    pub family: String,
}

/// Prefixes that only say which route or vendor served the model. Stripped
/// repeatedly, so `openrouter/anthropic/claude-sonnet-4` loses both.
pub const ROUTING_PREFIXES: &[&str] = &[
    "openrouter/",
    "openai/",
    "azure/",
    "azure_ai/",
    "anthropic/",
    "bedrock/",
    "bedrock_converse/",
    "vertex_ai/",
    "vertex_ai_beta/",
    "gemini/",
    "publishers/",
    "google/",
    "models/",
    "meta-llama/",
    "meta/",
    "mistralai/",
    "mistral/",
    "x-ai/",
    "xai/",
    "deepseek/",
    "groq/",
    "together_ai/",
    "fireworks_ai/",
    "cohere/",
];

/// Bedrock cross-region inference profile prefixes (`us.anthropic.claude-...`).
/// Only stripped when a [`BEDROCK_VENDORS`] prefix follows.
pub const BEDROCK_REGIONS: &[&str] = &["us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global."];

/// Bedrock model-id vendor prefixes (`anthropic.claude-...`, `meta.llama3-...`).
pub const BEDROCK_VENDORS: &[&str] = &[
    "anthropic.",
    "amazon.",
    "meta.",
    "mistral.",
    "cohere.",
    "ai21.",
    "stability.",
    "deepseek.",
    "qwen.",
    "openai.",
    "writer.",
];

/// One kind of trailing snapshot marker, tried in order on every pass.
#[derive(Clone, Copy, Debug)]
pub enum SnapshotSuffix {
    /// `@YYYYMMDD` (Vertex AI publisher model versions).
    AtCompactDate,
    /// `-YYYY-MM-DD` (OpenAI snapshots).
    DashedDate,
    /// `-YYYYMMDD` (Anthropic snapshots).
    CompactDate,
    /// A fixed alias such as `-latest`.
    Literal(&'static str),
    /// `-MMDD`, only on names starting with the given prefix (OpenAI's legacy
    /// `gpt-4-0613`); elsewhere four digits are too often part of the name.
    MonthDayOn(&'static str),
    /// `-00N`, only on names starting with the given prefix (Gemini's stable
    /// versions `gemini-1.5-pro-002`; `text-embedding-004` keeps its number).
    StableVersionOn(&'static str),
}

/// The snapshot markers [`normalize`] strips, in the order it tries them.
pub const SNAPSHOT_SUFFIXES: &[SnapshotSuffix] = &[
    SnapshotSuffix::AtCompactDate,
    SnapshotSuffix::DashedDate,
    SnapshotSuffix::CompactDate,
    SnapshotSuffix::Literal("-latest"),
    SnapshotSuffix::MonthDayOn("gpt-"),
    SnapshotSuffix::StableVersionOn("gemini-"),
];

/// How a family rule names the family once it matches.
#[derive(Clone, Copy, Debug)]
pub enum FamilyName {
    /// Always this family.
    Fixed(&'static str),
    /// `<stem>-<major>[.<minor>]` read right after the matched prefix, with an
    /// optional `-` before the version: `gemini-1.5-pro` -> `gemini-1.5`,
    /// `llama3-1-70b` -> `llama-3.1`. Without a version: just `<stem>`.
    Versioned(&'static str),
    /// `<stem>-<next word>`: `mistral-large-2407` -> `mistral-large`.
    NextWord(&'static str),
}

/// One row of [`FAMILIES`]: matches names that start with `prefix` and contain
/// `contains` (empty = anything).
#[derive(Clone, Copy, Debug)]
pub struct FamilyRule {
    pub prefix: &'static str,
    pub contains: &'static str,
    pub family: FamilyName,
}

const fn rule(prefix: &'static str, contains: &'static str, family: FamilyName) -> FamilyRule {
    FamilyRule {
        prefix,
        contains,
        family,
    }
}

/// Family rules, first match wins, so more specific prefixes come first
/// (`gpt-4o` and `gpt-4.1` before `gpt-4`). A name no rule matches falls back to
/// its text before the first `-` that is followed by a digit (`dall-e-3` ->
/// `dall-e`, `whisper-1` -> `whisper`), or the whole name.
pub const FAMILIES: &[FamilyRule] = &[
    rule("gpt-4o", "", FamilyName::Fixed("gpt-4o")),
    rule("chatgpt-4o", "", FamilyName::Fixed("gpt-4o")),
    rule("gpt-4.1", "", FamilyName::Fixed("gpt-4.1")),
    rule("gpt-4.5", "", FamilyName::Fixed("gpt-4.5")),
    rule("gpt-4", "", FamilyName::Fixed("gpt-4")),
    rule("gpt-3.5", "", FamilyName::Fixed("gpt-3.5")),
    rule("gpt-5", "", FamilyName::Fixed("gpt-5")),
    rule("gpt-image", "", FamilyName::Fixed("gpt-image")),
    rule("o1", "", FamilyName::Fixed("o1")),
    rule("o3", "", FamilyName::Fixed("o3")),
    rule("o4", "", FamilyName::Fixed("o4")),
    rule("text-embedding-3-", "", FamilyName::Fixed("text-embedding-3")),
    rule("text-embedding-ada", "", FamilyName::Fixed("text-embedding-ada")),
    rule("claude", "sonnet", FamilyName::Fixed("claude-sonnet")),
    rule("claude", "haiku", FamilyName::Fixed("claude-haiku")),
    rule("claude", "opus", FamilyName::Fixed("claude-opus")),
    rule("gemini", "", FamilyName::Versioned("gemini")),
    rule("llama", "", FamilyName::Versioned("llama")),
    rule("mistral", "", FamilyName::NextWord("mistral")),
];

/// The normalized name and family of `raw` as reported by `provider`.
pub fn normalize(provider: Provider, raw: &str) -> ModelName {
    let mut name = raw.trim().to_lowercase();
    if !has_token_models(provider) {
        let family = fallback_family(&name).to_string();
        return ModelName { name, family };
    }
    // Every step only shortens the name, so this ends; repeating until nothing
    // changes makes `normalize(normalize(x).name) == normalize(x)`.
    while fine_tune_base(&name).is_none() {
        let next = normalize_once(&name);
        if next == name {
            break;
        }
        name = next;
    }
    let family = match fine_tune_base(&name) {
        Some(base) => normalize(provider, base).family,
        None => family_of(&name),
    };
    ModelName { name, family }
}

/// fal, Runway and PiAPI report endpoint paths or product names, not token
/// models: their names must not be cut at `/` or `-`.
fn has_token_models(provider: Provider) -> bool {
    !matches!(provider, Provider::Fal | Provider::Runway | Provider::PiApi)
}

/// `ft:gpt-4o-mini-2024-07-18:org::id` -> `gpt-4o-mini-2024-07-18`.
fn fine_tune_base(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("ft:")?;
    Some(rest.split(':').next().unwrap_or(rest))
}

fn normalize_once(name: &str) -> String {
    let mut s = name.trim();
    if s.starts_with("arn:") {
        if let Some((_, last)) = s.rsplit_once('/') {
            s = last;
        }
    }
    while let Some(rest) = ROUTING_PREFIXES.iter().find_map(|p| s.strip_prefix(p)) {
        s = rest;
    }
    let mut out = match strip_bedrock_vendor(s) {
        Some(model) => strip_bedrock_version(model),
        None => s.to_string(),
    };
    while let Some(shorter) = strip_one_snapshot_suffix(&out) {
        out = shorter.to_string();
    }
    out.trim().to_string()
}

/// `us.anthropic.claude-...` -> `claude-...`; `None` if not a Bedrock id.
fn strip_bedrock_vendor(s: &str) -> Option<&str> {
    strip_vendor(s).or_else(|| {
        BEDROCK_REGIONS
            .iter()
            .find_map(|r| s.strip_prefix(r))
            .and_then(strip_vendor)
    })
}

fn strip_vendor(s: &str) -> Option<&str> {
    BEDROCK_VENDORS.iter().find_map(|v| s.strip_prefix(v))
}

/// `claude-3-5-sonnet-20240620-v1:0` -> `claude-3-5-sonnet-20240620` (the date
/// goes later); `titan-embed-text-v2:0` -> `titan-embed-text-v2`.
fn strip_bedrock_version(model: &str) -> String {
    let model = model.split(':').next().unwrap_or(model);
    if let Some((head, version)) = model.rsplit_once("-v") {
        let is_version = !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit());
        if is_version && (dashed_date_suffix(head).is_some() || compact_date_suffix(head, b'-').is_some()) {
            return head.to_string();
        }
    }
    model.to_string()
}

fn strip_one_snapshot_suffix(s: &str) -> Option<&str> {
    SNAPSHOT_SUFFIXES.iter().find_map(|suffix| match *suffix {
        SnapshotSuffix::AtCompactDate => compact_date_suffix(s, b'@'),
        SnapshotSuffix::DashedDate => dashed_date_suffix(s),
        SnapshotSuffix::CompactDate => compact_date_suffix(s, b'-'),
        SnapshotSuffix::Literal(lit) => s.strip_suffix(lit),
        SnapshotSuffix::MonthDayOn(prefix) => {
            let head = digits_suffix(s, 4)?;
            let digits = &s.as_bytes()[head.len() + 1..];
            (s.starts_with(prefix) && head.len() > prefix.len() && is_month_day(digits)).then_some(head)
        }
        SnapshotSuffix::StableVersionOn(prefix) => {
            let head = digits_suffix(s, 3)?;
            (s.starts_with(prefix) && head.len() > prefix.len() && s.as_bytes()[head.len() + 1] == b'0').then_some(head)
        }
    })
}

/// The text before `-` + exactly `n` trailing ASCII digits, if `s` ends so.
fn digits_suffix(s: &str, n: usize) -> Option<&str> {
    let bytes = s.as_bytes();
    if bytes.len() < n + 2 {
        return None;
    }
    let split = bytes.len() - n - 1;
    let ok = bytes[split] == b'-' && bytes[split + 1..].iter().all(u8::is_ascii_digit);
    ok.then(|| &s[..split])
}

/// `<head><sep>YYYYMMDD` -> `<head>`, for a plausible date and non-empty head.
fn compact_date_suffix(s: &str, sep: u8) -> Option<&str> {
    let bytes = s.as_bytes();
    if bytes.len() < 10 {
        return None;
    }
    let split = bytes.len() - 9;
    let digits = &bytes[split + 1..];
    let ok = bytes[split] == sep
        && digits.iter().all(u8::is_ascii_digit)
        && digits.starts_with(b"20")
        && is_month_day(&digits[4..]);
    ok.then(|| &s[..split])
}

/// `<head>-YYYY-MM-DD` -> `<head>`, for a plausible date and non-empty head.
fn dashed_date_suffix(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    if bytes.len() < 12 {
        return None;
    }
    let split = bytes.len() - 11;
    let d = &bytes[split + 1..];
    let digits = |r: std::ops::Range<usize>| d[r].iter().all(u8::is_ascii_digit);
    let ok = bytes[split] == b'-'
        && digits(0..4)
        && d.starts_with(b"20")
        && d[4] == b'-'
        && d[7] == b'-'
        && digits(5..7)
        && digits(8..10)
        && is_month_day(&[d[5], d[6], d[8], d[9]]);
    ok.then(|| &s[..split])
}

/// `MMDD` digits with a month 01-12 and a day 01-31.
fn is_month_day(mmdd: &[u8]) -> bool {
    let num = |a: u8, b: u8| u32::from(a - b'0') * 10 + u32::from(b - b'0');
    mmdd.len() == 4
        && mmdd.iter().all(u8::is_ascii_digit)
        && (1..=12).contains(&num(mmdd[0], mmdd[1]))
        && (1..=31).contains(&num(mmdd[2], mmdd[3]))
}

fn family_of(name: &str) -> String {
    for rule in FAMILIES {
        let Some(rest) = name.strip_prefix(rule.prefix) else {
            continue;
        };
        if !rule.contains.is_empty() && !name.contains(rule.contains) {
            continue;
        }
        // `o1` must not claim `o1x`, but `gpt-5` does claim `gpt-5.1`.
        let boundary = rest.is_empty()
            || !rule.prefix.as_bytes()[rule.prefix.len() - 1].is_ascii_digit()
            || rest.starts_with(['-', '.']);
        if !boundary {
            continue;
        }
        return match rule.family {
            FamilyName::Fixed(family) => family.to_string(),
            FamilyName::Versioned(stem) => match leading_version(rest) {
                Some(version) => format!("{stem}-{version}"),
                None => stem.to_string(),
            },
            FamilyName::NextWord(stem) => match rest.strip_prefix('-').and_then(|r| r.split('-').next()) {
                Some(word) if !word.is_empty() => format!("{stem}-{word}"),
                _ => stem.to_string(),
            },
        };
    }
    fallback_family(name).to_string()
}

/// `-1.5-pro` -> `1.5`; `3-1-70b` -> `3.1`; `3-70b` -> `3`; `-4-scout` -> `4`;
/// `-pro` -> None. A `-N` minor counts only as one digit followed by `-` or the
/// end, so a size like `-70b` or `-8192` is not read as a version.
fn leading_version(rest: &str) -> Option<String> {
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let major_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    if major_len == 0 {
        return None;
    }
    let (major, after) = rest.split_at(major_len);
    let minor = if let Some(tail) = after.strip_prefix('.') {
        let len = tail.bytes().take_while(u8::is_ascii_digit).count();
        (len > 0).then(|| &tail[..len])
    } else if let Some(tail) = after.strip_prefix('-') {
        let b = tail.as_bytes();
        let single_digit = !b.is_empty() && b[0].is_ascii_digit() && (b.len() == 1 || b[1] == b'-');
        single_digit.then(|| &tail[..1])
    } else {
        None
    };
    Some(match minor {
        Some(minor) => format!("{major}.{minor}"),
        None => major.to_string(),
    })
}

/// The text before the first `-` followed by a digit, or the whole name (also
/// when that text would be empty).
fn fallback_family(name: &str) -> &str {
    let bytes = name.as_bytes();
    (2..bytes.len())
        .find(|&i| bytes[i - 1] == b'-' && bytes[i].is_ascii_digit())
        .map_or(name, |i| &name[..i - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (provider, raw, normalized name, family).
    const CASES: &[(Provider, &str, &str, &str)] = &[
        // OpenAI snapshots and aliases.
        (Provider::OpenAi, "gpt-4o-mini-2024-07-18", "gpt-4o-mini", "gpt-4o"),
        (Provider::OpenAi, "gpt-4o-2024-08-06", "gpt-4o", "gpt-4o"),
        (Provider::OpenAi, "gpt-4o", "gpt-4o", "gpt-4o"),
        (Provider::OpenAi, "chatgpt-4o-latest", "chatgpt-4o", "gpt-4o"),
        (
            Provider::OpenAi,
            "gpt-4o-audio-preview-2024-12-17",
            "gpt-4o-audio-preview",
            "gpt-4o",
        ),
        (Provider::OpenAi, "gpt-4.1-2025-04-14", "gpt-4.1", "gpt-4.1"),
        (Provider::OpenAi, "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini", "gpt-4.1"),
        (Provider::OpenAi, "gpt-4.1-nano", "gpt-4.1-nano", "gpt-4.1"),
        (Provider::OpenAi, "gpt-4-0613", "gpt-4", "gpt-4"),
        (Provider::OpenAi, "gpt-4-turbo-2024-04-09", "gpt-4-turbo", "gpt-4"),
        (Provider::OpenAi, "gpt-3.5-turbo-0125", "gpt-3.5-turbo", "gpt-3.5"),
        (Provider::OpenAi, "gpt-5-2025-08-07", "gpt-5", "gpt-5"),
        (Provider::OpenAi, "gpt-5-mini-2025-08-07", "gpt-5-mini", "gpt-5"),
        (Provider::OpenAi, "gpt-5.1", "gpt-5.1", "gpt-5"),
        (Provider::OpenAi, "o1-2024-12-17", "o1", "o1"),
        (Provider::OpenAi, "o1-preview-2024-09-12", "o1-preview", "o1"),
        (Provider::OpenAi, "o3-mini-2025-01-31", "o3-mini", "o3"),
        (Provider::OpenAi, "o3-2025-04-16", "o3", "o3"),
        (Provider::OpenAi, "o4-mini-2025-04-16", "o4-mini", "o4"),
        (
            Provider::OpenAi,
            "text-embedding-3-small",
            "text-embedding-3-small",
            "text-embedding-3",
        ),
        (
            Provider::OpenAi,
            "text-embedding-3-large",
            "text-embedding-3-large",
            "text-embedding-3",
        ),
        (
            Provider::OpenAi,
            "text-embedding-ada-002",
            "text-embedding-ada-002",
            "text-embedding-ada",
        ),
        (
            Provider::OpenAi,
            "omni-moderation-latest",
            "omni-moderation",
            "omni-moderation",
        ),
        (Provider::OpenAi, "dall-e-3", "dall-e-3", "dall-e"),
        (Provider::OpenAi, "whisper-1", "whisper-1", "whisper"),
        (Provider::OpenAi, "tts-1-hd", "tts-1-hd", "tts"),
        (Provider::OpenAi, "gpt-image-1", "gpt-image-1", "gpt-image"),
        (Provider::OpenAi, "  GPT-4o-Mini-2024-07-18  ", "gpt-4o-mini", "gpt-4o"),
        (Provider::OpenAi, "", "", ""),
        (Provider::OpenAi, "   ", "", ""),
        // Fine-tunes stay whole; family from the base.
        (
            Provider::OpenAi,
            "ft:gpt-4o-mini-2024-07-18:acme::AbC123",
            "ft:gpt-4o-mini-2024-07-18:acme::abc123",
            "gpt-4o",
        ),
        // Anthropic.
        (
            Provider::Anthropic,
            "claude-sonnet-4-20250514",
            "claude-sonnet-4",
            "claude-sonnet",
        ),
        (
            Provider::Anthropic,
            "claude-3-5-haiku-20241022",
            "claude-3-5-haiku",
            "claude-haiku",
        ),
        (
            Provider::Anthropic,
            "claude-3-5-sonnet-latest",
            "claude-3-5-sonnet",
            "claude-sonnet",
        ),
        (
            Provider::Anthropic,
            "claude-3-7-sonnet-20250219",
            "claude-3-7-sonnet",
            "claude-sonnet",
        ),
        (
            Provider::Anthropic,
            "claude-opus-4-1-20250805",
            "claude-opus-4-1",
            "claude-opus",
        ),
        (
            Provider::Anthropic,
            "claude-opus-4-20250514",
            "claude-opus-4",
            "claude-opus",
        ),
        (
            Provider::Anthropic,
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
            "claude-haiku",
        ),
        (
            Provider::Anthropic,
            "claude-sonnet-4-5",
            "claude-sonnet-4-5",
            "claude-sonnet",
        ),
        (
            Provider::Anthropic,
            "claude-3-haiku-20240307",
            "claude-3-haiku",
            "claude-haiku",
        ),
        (Provider::Anthropic, "claude-2.1", "claude-2.1", "claude"),
        // Bedrock ids.
        (
            Provider::AwsBedrock,
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "claude-3-5-sonnet",
            "claude-sonnet",
        ),
        (
            Provider::AwsBedrock,
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "claude-3-5-sonnet",
            "claude-sonnet",
        ),
        (
            Provider::AwsBedrock,
            "eu.anthropic.claude-sonnet-4-20250514-v1:0",
            "claude-sonnet-4",
            "claude-sonnet",
        ),
        (
            Provider::AwsBedrock,
            "anthropic.claude-3-haiku-20240307-v1:0:200k",
            "claude-3-haiku",
            "claude-haiku",
        ),
        (
            Provider::AwsBedrock,
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            "claude-3-7-sonnet",
            "claude-sonnet",
        ),
        (
            Provider::AwsBedrock,
            "amazon.titan-embed-text-v2:0",
            "titan-embed-text-v2",
            "titan-embed-text-v2",
        ),
        (Provider::AwsBedrock, "anthropic.claude-v2:1", "claude-v2", "claude-v2"),
        (
            Provider::AwsBedrock,
            "meta.llama3-1-70b-instruct-v1:0",
            "llama3-1-70b-instruct-v1",
            "llama-3.1",
        ),
        (
            Provider::AwsBedrock,
            "mistral.mistral-large-2402-v1:0",
            "mistral-large-2402-v1",
            "mistral-large",
        ),
        (
            Provider::AwsBedrock,
            "amazon.nova-lite-v1:0",
            "nova-lite-v1",
            "nova-lite-v1",
        ),
        // Vertex / Gemini.
        (
            Provider::GoogleVertex,
            "claude-sonnet-4@20250514",
            "claude-sonnet-4",
            "claude-sonnet",
        ),
        (
            Provider::GoogleVertex,
            "claude-3-5-sonnet-v2@20241022",
            "claude-3-5-sonnet-v2",
            "claude-sonnet",
        ),
        (
            Provider::GoogleVertex,
            "publishers/anthropic/models/claude-opus-4@20250514",
            "claude-opus-4",
            "claude-opus",
        ),
        (
            Provider::GoogleVertex,
            "models/gemini-1.5-pro-002",
            "gemini-1.5-pro",
            "gemini-1.5",
        ),
        (
            Provider::GoogleVertex,
            "gemini-2.0-flash-001",
            "gemini-2.0-flash",
            "gemini-2.0",
        ),
        (Provider::GoogleVertex, "gemini-2.5-pro", "gemini-2.5-pro", "gemini-2.5"),
        (
            Provider::GoogleVertex,
            "gemini-3-pro-preview",
            "gemini-3-pro-preview",
            "gemini-3",
        ),
        (Provider::GoogleVertex, "gemini-pro", "gemini-pro", "gemini"),
        (
            Provider::GoogleVertex,
            "text-embedding-004",
            "text-embedding-004",
            "text-embedding",
        ),
        // Routed names (OpenRouter, LiteLLM, Azure).
        (Provider::OpenRouter, "openai/gpt-4.1", "gpt-4.1", "gpt-4.1"),
        (Provider::OpenRouter, "openai/gpt-4.1-2025-04-14", "gpt-4.1", "gpt-4.1"),
        (
            Provider::OpenRouter,
            "anthropic/claude-sonnet-4",
            "claude-sonnet-4",
            "claude-sonnet",
        ),
        (
            Provider::OpenRouter,
            "meta-llama/llama-3.1-8b-instruct",
            "llama-3.1-8b-instruct",
            "llama-3.1",
        ),
        (
            Provider::OpenRouter,
            "meta-llama/llama-4-scout",
            "llama-4-scout",
            "llama-4",
        ),
        (
            Provider::OpenRouter,
            "mistralai/mistral-large-latest",
            "mistral-large",
            "mistral-large",
        ),
        (
            Provider::OpenRouter,
            "deepseek/deepseek-r1",
            "deepseek-r1",
            "deepseek-r1",
        ),
        (
            Provider::OpenRouter,
            "mistralai/mixtral-8x7b-instruct",
            "mixtral-8x7b-instruct",
            "mixtral",
        ),
        (
            Provider::LiteLlm,
            "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
            "claude-3-haiku",
            "claude-haiku",
        ),
        (Provider::LiteLlm, "groq/llama3-70b-8192", "llama3-70b-8192", "llama-3"),
        (Provider::LiteLlm, "azure/gpt-4o-mini", "gpt-4o-mini", "gpt-4o"),
        (Provider::AzureOpenAi, "gpt-4o-2024-11-20", "gpt-4o", "gpt-4o"),
        // Non-token providers: only trimmed and lower-cased.
        (Provider::Fal, "fal-ai/flux/dev", "fal-ai/flux/dev", "fal-ai/flux/dev"),
        (
            Provider::Fal,
            "fal-ai/flux-pro/v1.1",
            "fal-ai/flux-pro/v1.1",
            "fal-ai/flux-pro/v1.1",
        ),
        (Provider::Runway, "gen4_turbo", "gen4_turbo", "gen4_turbo"),
        (Provider::Runway, "veo3.1_fast", "veo3.1_fast", "veo3.1_fast"),
        (
            Provider::PiApi,
            "Midjourney-2024-07-18",
            "midjourney-2024-07-18",
            "midjourney",
        ),
        // Look-alikes that must not be cut.
        (Provider::OpenAi, "gpt-4-9999", "gpt-4-9999", "gpt-4"),
        (Provider::OpenAi, "my-model-19991231", "my-model-19991231", "my-model"),
        (Provider::OpenAi, "-2024-07-18", "-2024-07-18", "-2024"),
    ];

    #[test]
    fn normalizes_every_table_case() {
        let mut failures = Vec::new();
        for &(provider, raw, name, family) in CASES {
            let got = normalize(provider, raw);
            let want = ModelName {
                name: name.to_string(),
                family: family.to_string(),
            };
            if got != want {
                failures.push(format!("{provider} {raw:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn table_cases_are_idempotent() {
        for &(provider, raw, _, _) in CASES {
            let once = normalize(provider, raw);
            assert_eq!(normalize(provider, &once.name), once, "{provider} {raw:?}");
        }
    }

    #[test]
    fn every_family_rule_is_reachable() {
        // A rule shadowed by an earlier one would silently never apply.
        for (i, rule) in FAMILIES.iter().enumerate() {
            let probe = if rule.contains.is_empty() {
                format!("{}-x", rule.prefix.trim_end_matches('-'))
            } else {
                format!("{}-{}-x", rule.prefix, rule.contains)
            };
            let first = FAMILIES
                .iter()
                .position(|r| probe.starts_with(r.prefix) && probe.contains(r.contains))
                .unwrap();
            assert_eq!(first, i, "rule {i} ({}) is shadowed for {probe:?}", rule.prefix);
        }
    }

    fn model_like() -> impl Strategy<Value = String> {
        let parts = prop::sample::select(vec![
            "openai/",
            "us.",
            "anthropic.",
            "models/",
            "ft:",
            "arn:x/",
            "gpt-4o",
            "claude-sonnet-4",
            "gemini-1.5",
            "-mini",
            "-2024-07-18",
            "-20250514",
            "@20250514",
            "-latest",
            "-v1",
            ":0",
            "-002",
            "-0613",
            " ",
            "-",
            "GPT",
            "llama3-1",
            "/",
            ".",
        ]);
        prop::collection::vec(parts, 0..8).prop_map(|v| v.concat())
    }

    proptest! {
        #[test]
        fn normalization_is_idempotent(raw in model_like(), any in "[ -~]{0,30}", uni in "\\PC{0,20}") {
            for raw in [raw, any, uni] {
                for provider in Provider::ALL {
                    let once = normalize(provider, &raw);
                    prop_assert_eq!(&normalize(provider, &once.name), &once);
                    prop_assert_eq!(once.name.trim(), once.name.as_str());
                    prop_assert_eq!(once.name.to_lowercase(), once.name.clone());
                }
            }
        }
    }
}
