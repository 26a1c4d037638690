//! `[[webhooks]]` -> [`WebhookConfig`]: an http(s) URL, a non-empty secret,
//! known event names, a bounded timeout and attempt count, unique ids.

use serde::Deserialize;

use super::raw::RawWebhook;
use super::validate::{bounded_duration, check_url, valid_id};
use super::{Secret, WebhookConfig, WebhookEvent};

pub(super) fn validate_webhooks(items: Vec<toml::Value>, problems: &mut Vec<String>) -> Vec<WebhookConfig> {
    let mut out: Vec<WebhookConfig> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let label = match item.get("id").and_then(toml::Value::as_str) {
            Some(id) => format!("webhooks[{index}] (id '{id}')"),
            None => format!("webhooks[{index}]"),
        };
        match RawWebhook::deserialize(item) {
            Ok(raw) => {
                if let Some(webhook) = validate_webhook(&label, raw, problems) {
                    if out.iter().any(|w| w.id == webhook.id) {
                        problems.push(format!(
                            "{label}: id '{}' is used twice; ids must be unique",
                            webhook.id
                        ));
                    }
                    out.push(webhook);
                }
            }
            Err(e) => problems.push(format!("{label}: {e}")),
        }
    }
    out
}

fn validate_webhook(label: &str, raw: RawWebhook, problems: &mut Vec<String>) -> Option<WebhookConfig> {
    let before = problems.len();
    let id = match raw.id.as_deref() {
        Some(id) if valid_id(id) && !id.is_empty() => id.to_string(),
        Some(id) => {
            problems.push(format!(
                "{label}: id '{id}' may only use a-z, 0-9, '-' and '_' (at most 64 characters): it labels metrics"
            ));
            String::new()
        }
        None => {
            problems.push(format!(
                "{label}: id is missing; give every webhook a unique id such as id = \"finops-hook\""
            ));
            String::new()
        }
    };
    let url = match raw.url.as_deref() {
        Some(url) => check_url(&format!("{label}: url"), url, problems),
        None => {
            problems.push(format!("{label}: url is missing; the http(s) URL events are POSTed to"));
            String::new()
        }
    };
    let secret = match raw.secret.as_deref() {
        Some(secret) if !secret.trim().is_empty() => Secret::new(secret),
        Some(_) => {
            problems.push(format!(
                "{label}: secret is empty (is its environment variable set to \"\"?); receivers verify the signature with it"
            ));
            Secret::new("")
        }
        None => {
            problems.push(format!(
                "{label}: secret is missing; add secret = \"${{TOKENTRA_WEBHOOK_SECRET}}\" (or an enc:v1: value)"
            ));
            Secret::new("")
        }
    };
    let events = match raw.events {
        None => WebhookEvent::ALL.to_vec(),
        Some(names) if names.is_empty() => {
            problems.push(format!(
                "{label}: events is empty; list sync.completed and/or sync.failed, or leave it out for both"
            ));
            Vec::new()
        }
        Some(names) => {
            let mut events = Vec::new();
            for name in names {
                match WebhookEvent::parse(&name) {
                    Some(event) if !events.contains(&event) => events.push(event),
                    Some(_) => {}
                    None => problems.push(format!(
                        "{label}: events: '{name}' is not an event; use sync.completed or sync.failed"
                    )),
                }
            }
            events
        }
    };
    let timeout = bounded_duration(&format!("{label}: timeout"), &raw.timeout, (1, 300), problems);
    if !(1..=20).contains(&raw.max_attempts) {
        problems.push(format!(
            "{label}: max_attempts {} is out of range; use a value from 1 to 20",
            raw.max_attempts
        ));
    }
    (problems.len() == before).then_some(WebhookConfig {
        id,
        url,
        secret,
        events,
        timeout,
        max_attempts: raw.max_attempts,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use crate::config::{load_str, ConfigError, WebhookEvent};

    fn load(webhooks: &str) -> Result<crate::config::ValidatedConfig, ConfigError> {
        let env = BTreeMap::from([("HOOK_SECRET".to_string(), "s3cret-value-123".to_string())]);
        load_str(webhooks, Path::new("t.toml"), &env)
    }

    fn problems(webhooks: &str) -> String {
        match load(webhooks) {
            Err(ConfigError::Invalid { problems }) => problems.join("\n"),
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_webhook_takes_its_secret_from_the_environment_and_defaults_to_both_events() {
        let config =
            load("[[webhooks]]\nid = \"h1\"\nurl = \"https://hooks.example.com/t\"\nsecret = \"${HOOK_SECRET}\"\n")
                .unwrap();
        let hook = &config.webhooks[0];
        assert_eq!(hook.secret.expose(), "s3cret-value-123");
        assert_eq!(hook.events, WebhookEvent::ALL.to_vec());
        assert_eq!(hook.timeout, std::time::Duration::from_secs(10));
        assert_eq!(hook.max_attempts, 5);
        assert!(!format!("{config:?}").contains("s3cret"), "Debug shows the secret");
    }

    #[test]
    fn bad_webhooks_are_rejected_with_the_field_and_the_fix() {
        let text = problems(
            "[[webhooks]]\nid = \"a\"\nurl = \"ftp://x\"\nsecret = \"\"\nevents = [\"sync.done\"]\n\
             [[webhooks]]\nid = \"a\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"k\"\nmax_attempts = 0\n\
             [[webhooks]]\nurl = \"https://x.example\"\n",
        );
        for needle in [
            "webhooks[0] (id 'a'): url: 'ftp://x' is not an http(s) URL",
            "webhooks[0] (id 'a'): secret is empty",
            "'sync.done' is not an event",
            "webhooks[1] (id 'a'): max_attempts 0 is out of range",
            "webhooks[2]: id is missing",
            "webhooks[2]: secret is missing",
        ] {
            assert!(text.contains(needle), "missing '{needle}' in:\n{text}");
        }
        let dup = problems(
            "[[webhooks]]\nid = \"a\"\nurl = \"https://x.example\"\nsecret = \"k\"\n\
             [[webhooks]]\nid = \"a\"\nurl = \"https://y.example\"\nsecret = \"k\"\n",
        );
        assert!(dup.contains("id 'a' is used twice"), "{dup}");
    }
}
