//! Reading OpenAI cost `line_item` strings.
//!
//! The Costs API has no model field: grouping by `line_item` is what splits a
//! bill per model, and the model, token direction and tier are packed into one
//! free-text label. Labels seen in public clients of the API:
//!
//! - `gpt-4o-mini-2024-07-18, input` / `, output` / `, cached input` / `, cache writes`
//! - `priority | gpt-5.6-sol, output, long context` (tier prefix, context flag)
//! - `gpt-audio-mini-2025-12-15 audio, input` (a modality word after the model)
//! - `web search tool calls`, `Vector storage` (no model at all)
//!
//! The text is not a contract, so parsing only ever *adds* descriptive columns:
//! the raw `line_item` stays in the record identity and the `line_item` column,
//! and a label this module does not understand becomes service `other` with no
//! model rather than an error (the money is still counted).

use std::collections::BTreeMap;

/// What a line item label says about the spend behind it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineItem {
    /// The model exactly as spelled in the label; empty for non-model items.
    pub model_raw: String,
    /// The product line, named like the usage endpoints so cost and usage rows
    /// group together (`completions`, `embeddings`, `web_search`, ...).
    pub service: &'static str,
    /// Derived details: `token_direction`, `batch`, `service_tier`,
    /// `long_context`, `modality`, `detail`.
    pub attributes: BTreeMap<&'static str, String>,
}

/// Service of labels this module cannot place.
pub const OTHER: &str = "other";

/// Token directions by the (lower-case) phrase after the model's comma.
const DIRECTIONS: &[(&str, &str)] = &[
    ("input", "input"),
    ("output", "output"),
    ("cached input", "cached_input"),
    ("cache read", "cached_input"),
    ("cache reads", "cached_input"),
    ("cache write", "cache_write"),
    ("cache writes", "cache_write"),
    ("cache creation", "cache_write"),
];

/// Non-model labels by a phrase they contain (lower-case), first match wins.
/// Storage and code interpreter use the usage endpoints' service names.
const TOOLS: &[(&str, &str)] = &[
    ("web search", "web_search"),
    ("file search", "file_search"),
    ("code interpreter", "code_interpreter_sessions"),
    ("container", "code_interpreter_sessions"),
    ("vector stor", "vector_stores"),
    ("storage", "storage"),
];

/// Reads one label. Never fails: see the module doc.
pub fn parse(line_item: &str) -> LineItem {
    model_item(line_item).unwrap_or_else(|| tool_item(line_item))
}

/// `[tier | ]model[ modality], direction[, flag...]`, or `None` when the label
/// names no token direction or its head is not a model name.
fn model_item(label: &str) -> Option<LineItem> {
    let mut attributes = BTreeMap::new();
    let mut rest = label.trim();
    if let Some((prefix, after)) = rest.split_once(" | ") {
        let tier = prefix.trim().to_ascii_lowercase();
        if tier.is_empty() || tier.contains([' ', ',']) {
            return None;
        }
        if tier == "batch" {
            attributes.insert("batch", "true".to_string());
        } else {
            attributes.insert("service_tier", tier);
        }
        rest = after;
    }

    let mut segments = rest.split(',').map(str::trim);
    let head = segments.next()?;
    let mut direction = None;
    let mut details = Vec::new();
    for segment in segments {
        let lower = segment.to_ascii_lowercase();
        // "batch input", "input (batch)", a bare "batch": batch is a flag on
        // the direction, never a direction of its own.
        let words: Vec<&str> = lower
            .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
            .filter(|w| !w.is_empty())
            .collect();
        let is_batch = words.contains(&"batch");
        let phrase = words
            .iter()
            .filter(|w| **w != "batch")
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if is_batch {
            attributes.insert("batch", "true".to_string());
        }
        match DIRECTIONS.iter().find(|(text, _)| *text == phrase) {
            Some((_, dir)) if direction.is_none() => direction = Some(*dir),
            // Two directions in one label: not a shape we know.
            Some(_) => return None,
            None if phrase == "long context" => {
                attributes.insert("long_context", "true".to_string());
            }
            None if phrase.is_empty() => {}
            None => details.push(segment.to_string()),
        }
    }
    let direction = direction?;

    let mut head_words = head.split_whitespace();
    let model = head_words.next()?;
    if !is_model_name(model) {
        return None;
    }
    let modality = head_words.collect::<Vec<_>>().join(" ");
    if !modality.is_empty() {
        attributes.insert("modality", modality.to_ascii_lowercase());
    }
    if !details.is_empty() {
        attributes.insert("detail", details.join(", "));
    }
    attributes.insert("token_direction", direction.to_string());
    let service = if model.to_ascii_lowercase().contains("embedding") {
        "embeddings"
    } else {
        "completions"
    };
    Some(LineItem {
        model_raw: model.to_string(),
        service,
        attributes,
    })
}

/// Model ids are one token of letters, digits and `-._:` (fine-tuned models
/// look like `ft:gpt-4o-mini-2024-07-18:org:name:id`) with a letter and a
/// digit or hyphen (`o1`, `gpt-4o`, `davinci-002`), which plain words lack.
fn is_model_name(word: &str) -> bool {
    word.chars().any(|c| c.is_ascii_alphabetic())
        && word.chars().any(|c| c.is_ascii_digit() || c == '-')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'))
}

fn tool_item(label: &str) -> LineItem {
    let lower = label.to_ascii_lowercase();
    let service = TOOLS
        .iter()
        .find(|(phrase, _)| lower.contains(phrase))
        .map_or(OTHER, |(_, service)| *service);
    LineItem {
        model_raw: String::new(),
        service,
        attributes: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (label, model_raw, service, attributes as "k=v" sorted)
    const CASES: &[(&str, &str, &str, &[&str])] = &[
        (
            "gpt-4o-mini-2024-07-18, input",
            "gpt-4o-mini-2024-07-18",
            "completions",
            &["token_direction=input"],
        ),
        (
            "gpt-4o-mini-2024-07-18, output",
            "gpt-4o-mini-2024-07-18",
            "completions",
            &["token_direction=output"],
        ),
        (
            "gpt-4o-mini-2024-07-18, cached input",
            "gpt-4o-mini-2024-07-18",
            "completions",
            &["token_direction=cached_input"],
        ),
        (
            "gpt-4.1-2025-04-14, cache writes",
            "gpt-4.1-2025-04-14",
            "completions",
            &["token_direction=cache_write"],
        ),
        (
            "gpt-4o-2024-08-06, batch input",
            "gpt-4o-2024-08-06",
            "completions",
            &["batch=true", "token_direction=input"],
        ),
        (
            "gpt-4o-2024-08-06, batch output",
            "gpt-4o-2024-08-06",
            "completions",
            &["batch=true", "token_direction=output"],
        ),
        (
            "gpt-4o-2024-08-06, input, batch",
            "gpt-4o-2024-08-06",
            "completions",
            &["batch=true", "token_direction=input"],
        ),
        (
            "gpt-4o-mini-2024-07-18, cached input (batch)",
            "gpt-4o-mini-2024-07-18",
            "completions",
            &["batch=true", "token_direction=cached_input"],
        ),
        (
            "batch | gpt-4o-mini-2024-07-18, output",
            "gpt-4o-mini-2024-07-18",
            "completions",
            &["batch=true", "token_direction=output"],
        ),
        (
            "priority | gpt-5.6-sol, output, long context",
            "gpt-5.6-sol",
            "completions",
            &["long_context=true", "service_tier=priority", "token_direction=output"],
        ),
        (
            "gpt-audio-mini-2025-12-15 audio, input",
            "gpt-audio-mini-2025-12-15",
            "completions",
            &["modality=audio", "token_direction=input"],
        ),
        (
            "gpt-image-1 image, output",
            "gpt-image-1",
            "completions",
            &["modality=image", "token_direction=output"],
        ),
        (
            "text-embedding-3-small, input",
            "text-embedding-3-small",
            "embeddings",
            &["token_direction=input"],
        ),
        (
            "ft:gpt-4o-mini-2024-07-18:acme:support:AbC123, input",
            "ft:gpt-4o-mini-2024-07-18:acme:support:AbC123",
            "completions",
            &["token_direction=input"],
        ),
        (
            "gpt-4o-2024-08-06, output, regional",
            "gpt-4o-2024-08-06",
            "completions",
            &["detail=regional", "token_direction=output"],
        ),
        ("web search tool calls", "", "web_search", &[]),
        ("Web Search Tool Calls", "", "web_search", &[]),
        ("file search tool calls", "", "file_search", &[]),
        ("Code Interpreter sessions", "", "code_interpreter_sessions", &[]),
        ("Vector storage", "", "vector_stores", &[]),
        ("File storage", "", "storage", &[]),
        // Shapes we do not know keep no model and land in `other`.
        ("whisper-1, audio", "", "other", &[]),
        ("Fine-tuning training", "", "other", &[]),
        ("", "", "other", &[]),
        ("gpt-4o, input, output", "", "other", &[]),
        ("Two words, input", "", "other", &[]),
        ("some promo | gpt-4o, input", "", "other", &[]),
        ("$$$, input", "", "other", &[]),
    ];

    #[test]
    fn line_item_table() {
        for (label, model, service, attrs) in CASES {
            let parsed = parse(label);
            let got: Vec<String> = parsed.attributes.iter().map(|(k, v)| format!("{k}={v}")).collect();
            assert_eq!(
                (parsed.model_raw.as_str(), parsed.service, got),
                (
                    *model,
                    *service,
                    attrs.iter().map(|s| s.to_string()).collect::<Vec<_>>()
                ),
                "label {label:?}"
            );
        }
    }
}
