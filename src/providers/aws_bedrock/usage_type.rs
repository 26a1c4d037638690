//! Cost Explorer `USAGE_TYPE` values of Bedrock, read into model, token
//! direction, tier and region.
//!
//! Two families (AWS's "Understanding your Amazon Bedrock CUR data" page, and
//! usage types observed on bills):
//!
//! - AWS-billed models (SERVICE `Amazon Bedrock`):
//!   `<REGION>-<Model>-<direction>[-<tier>]`, e.g. `USE1-NovaLite-input-tokens`,
//!   `USE1-NovaLite-input-tokens-priority`,
//!   `USE1-mistral.voxtral-small-24b-2507-mantle-input-tokens-standard`,
//!   `USW2-Claude3.7Sonnet-cache-read-input-token-count`.
//! - Third-party models billed through AWS Marketplace (SERVICE e.g. `Claude
//!   3.5 Sonnet (Amazon Bedrock Edition)`, which names the model):
//!   `<REGION>-MP:<REGION>_<Direction>[_<tier>]-Units`, e.g.
//!   `USE1-MP:USE1_InputTokenCount-Units`, `USE1-MP:USE1_InputTokenCount_Global-Units`,
//!   `USW2-MP:USW2_input_tokens_global_standard-Units`.
//!
//! Anything else (provisioned throughput, model customization, a format AWS
//! adds later) is [`UsageType::Other`]: its money is kept, under the raw
//! usage type, never dropped.

/// Which tokens a usage type bills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Input,
    Output,
    CacheRead,
    CacheWrite,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
            Direction::CacheRead => "cache_read",
            Direction::CacheWrite => "cache_write",
        }
    }
}

/// A usage type read into its parts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UsageType {
    Tokens {
        /// The model as the usage type names it (`NovaLite`); empty for
        /// Marketplace usage types, whose model is the service name.
        model: String,
        direction: Direction,
        /// Service tier / inference profile (`priority`, `global`,
        /// `global_standard`), "" for on-demand standard.
        tier: String,
        /// The AWS region name (`us-east-1`), or the billing code when the
        /// code is not one we know.
        region: String,
        marketplace: bool,
    },
    Other {
        region: String,
    },
}

/// The AWS region of a billing region code (`USE1` -> `us-east-1`).
pub fn region_of(code: &str) -> Option<&'static str> {
    const CODES: &[(&str, &str)] = &[
        ("USE1", "us-east-1"),
        ("USE2", "us-east-2"),
        ("USW1", "us-west-1"),
        ("USW2", "us-west-2"),
        ("UGW1", "us-gov-west-1"),
        ("UGE1", "us-gov-east-1"),
        ("CAN1", "ca-central-1"),
        ("CAN2", "ca-west-1"),
        ("SAE1", "sa-east-1"),
        ("EU", "eu-west-1"),
        ("EUW1", "eu-west-1"),
        ("EUW2", "eu-west-2"),
        ("EUW3", "eu-west-3"),
        ("EUC1", "eu-central-1"),
        ("EUC2", "eu-central-2"),
        ("EUN1", "eu-north-1"),
        ("EUS1", "eu-south-1"),
        ("EUS2", "eu-south-2"),
        ("APN1", "ap-northeast-1"),
        ("APN2", "ap-northeast-2"),
        ("APN3", "ap-northeast-3"),
        ("APS1", "ap-southeast-1"),
        ("APS2", "ap-southeast-2"),
        ("APS3", "ap-south-1"),
        ("APS4", "ap-southeast-3"),
        ("APS5", "ap-south-2"),
        ("APS6", "ap-southeast-4"),
        ("APE1", "ap-east-1"),
        ("MEC1", "me-central-1"),
        ("MES1", "me-south-1"),
        ("ILC1", "il-central-1"),
        ("AFS1", "af-south-1"),
    ];
    CODES.iter().find(|(c, _)| *c == code).map(|(_, r)| *r)
}

/// A billing region code: 2-4 capitals, optionally followed by a digit.
fn is_region_code(text: &str) -> bool {
    let letters = text.trim_end_matches(|c: char| c.is_ascii_digit());
    (2..=4).contains(&letters.len())
        && letters.bytes().all(|b| b.is_ascii_uppercase())
        && text.len() - letters.len() <= 1
}

fn region_name(code: &str) -> String {
    region_of(code).map_or_else(|| code.to_string(), str::to_string)
}

/// Reads one usage type. Never fails: what it cannot read is `Other`.
pub fn parse(usage_type: &str) -> UsageType {
    let (code, rest) = match usage_type.split_once('-') {
        Some((code, rest)) if is_region_code(code) => (code, rest),
        _ => ("", usage_type),
    };
    let region = region_name(code);
    if let Some(mp) = rest.strip_prefix("MP:") {
        return marketplace(mp, region);
    }
    // First-party: the last direction marker wins over model names that
    // happen to contain one.
    const MARKERS: &[(&str, Direction)] = &[
        ("-cache-read-input-token-count", Direction::CacheRead),
        ("-cache-write-input-token-count", Direction::CacheWrite),
        ("-mantle-input-tokens", Direction::Input),
        ("-mantle-output-tokens", Direction::Output),
        ("-input-tokens", Direction::Input),
        ("-output-tokens", Direction::Output),
    ];
    for (marker, direction) in MARKERS {
        if let Some(at) = rest.rfind(marker) {
            let model = &rest[..at];
            let tail = &rest[at + marker.len()..];
            if model.is_empty() || !(tail.is_empty() || tail.starts_with('-')) {
                continue;
            }
            return UsageType::Tokens {
                model: model.to_string(),
                direction: *direction,
                tier: tail.trim_start_matches('-').to_string(),
                region,
                marketplace: false,
            };
        }
    }
    UsageType::Other { region }
}

/// `USE1_InputTokenCount_Global-Units`, `USW2_input_tokens_global_standard-Units`.
fn marketplace(text: &str, region: String) -> UsageType {
    let body = text.strip_suffix("-Units").unwrap_or(text);
    // The dimension repeats the region code: `USE1_...`.
    let body = match body.split_once('_') {
        Some((code, rest)) if is_region_code(code) => rest,
        _ => body,
    };
    let words: Vec<String> = split_words(body);
    let joined = words.concat();
    let (direction, used) = if joined.starts_with("cachereadinputtoken") {
        (Direction::CacheRead, 4)
    } else if joined.starts_with("cachewriteinputtoken") || joined.starts_with("cachecreationinputtoken") {
        (Direction::CacheWrite, 4)
    } else if joined.starts_with("inputtoken") {
        (Direction::Input, 2)
    } else if joined.starts_with("outputtoken") {
        (Direction::Output, 2)
    } else {
        return UsageType::Other { region };
    };
    // Words after the direction: an optional `count`, then the tier.
    let mut rest = &words[used.min(words.len())..];
    if rest.first().is_some_and(|w| w == "count") {
        rest = &rest[1..];
    }
    UsageType::Tokens {
        model: String::new(),
        direction,
        tier: rest.join("_"),
        region,
        marketplace: true,
    }
}

/// `InputTokenCount_Global` and `input_tokens_global` as lower-case words:
/// `[input, token(s), count, global]`, with `tokens` read as `token`.
fn split_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in text.split(['_', '-']) {
        let mut current = String::new();
        for c in part.chars() {
            if c.is_ascii_uppercase() && !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            current.push(c.to_ascii_lowercase());
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    for w in &mut words {
        if w == "tokens" {
            *w = "token".to_string();
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(model: &str, direction: Direction, tier: &str, region: &str, marketplace: bool) -> UsageType {
        UsageType::Tokens {
            model: model.into(),
            direction,
            tier: tier.into(),
            region: region.into(),
            marketplace,
        }
    }

    #[test]
    fn aws_bedrock_first_party_usage_types() {
        use Direction::*;
        assert_eq!(
            parse("USE1-NovaLite-input-tokens"),
            tokens("NovaLite", Input, "", "us-east-1", false)
        );
        assert_eq!(
            parse("USE1-NovaLite-output-tokens-priority"),
            tokens("NovaLite", Output, "priority", "us-east-1", false)
        );
        assert_eq!(
            parse("USE1-TitanEmbeddingV2-Text-input-tokens"),
            tokens("TitanEmbeddingV2-Text", Input, "", "us-east-1", false)
        );
        assert_eq!(
            parse("USE1-mistral.voxtral-small-24b-2507-mantle-input-tokens-standard"),
            tokens("mistral.voxtral-small-24b-2507", Input, "standard", "us-east-1", false)
        );
        assert_eq!(
            parse("USW2-Claude3.7Sonnet-cache-read-input-token-count"),
            tokens("Claude3.7Sonnet", CacheRead, "", "us-west-2", false)
        );
        assert_eq!(
            parse("EU-Claude3.7Sonnet-cache-write-input-token-count"),
            tokens("Claude3.7Sonnet", CacheWrite, "", "eu-west-1", false)
        );
        assert_eq!(
            parse("XYZ9-NovaPro-input-tokens"),
            tokens("NovaPro", Input, "", "XYZ9", false),
            "an unknown region code is kept raw"
        );
    }

    #[test]
    fn aws_bedrock_marketplace_usage_types() {
        use Direction::*;
        assert_eq!(
            parse("USE1-MP:USE1_InputTokenCount-Units"),
            tokens("", Input, "", "us-east-1", true)
        );
        assert_eq!(
            parse("USE1-MP:USE1_OutputTokenCount_Global-Units"),
            tokens("", Output, "global", "us-east-1", true)
        );
        assert_eq!(
            parse("USW2-MP:USW2_input_tokens_global_standard-Units"),
            tokens("", Input, "global_standard", "us-west-2", true)
        );
        assert_eq!(
            parse("USE1-MP:USE1_CacheWriteInputTokenCount-Units"),
            tokens("", CacheWrite, "", "us-east-1", true)
        );
        assert_eq!(
            parse("APN1-MP:APN1_cache_read_input_tokens_standard-Units"),
            tokens("", CacheRead, "standard", "ap-northeast-1", true)
        );
    }

    #[test]
    fn aws_bedrock_unknown_usage_types_are_other_never_lost() {
        for raw in [
            "USE1-ProvisionedThroughput-NovaPro-ModelUnits",
            "USE1-MP:USE1_ImagesGenerated-Units",
            "",
            "-",
            "USE1--input-tokens",
            "Credit",
            "USE1-NovaLite-input-tokensX",
        ] {
            assert!(matches!(parse(raw), UsageType::Other { .. }), "{raw}");
        }
    }
}
