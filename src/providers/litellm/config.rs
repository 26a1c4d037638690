//! A LiteLLM proxy account's typed config, read purely from the account.
//!
//! The base URL is user input that receives the key: besides the platform's
//! rules (http(s) only; plain http only to loopback or with
//! `allow_insecure_http = true`), link-local addresses (169.254.0.0/16,
//! fe80::/10) and cloud metadata endpoints (169.254.169.254,
//! metadata.google.internal, fd00:ec2::254, 100.100.100.200) are refused
//! unless the account sets `allow_private_base_url = true`: a proxy is never
//! there, and a key sent there can leak to whatever answers. Private LAN
//! addresses (10/8, 192.168/16, ...) are where proxies usually run and stay
//! allowed.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Value;

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// The setting that lets a base URL point at a link-local or metadata address.
pub const ALLOW_PRIVATE: &str = "allow_private_base_url";
/// Rows per page of `/user/daily/activity` (LiteLLM accepts 1..=1000).
pub const PAGE_SIZE: &str = "page_size";

/// What a LiteLLM account has.
#[derive(Debug)]
pub struct LiteLlmConfig {
    /// The proxy's own URL, without a trailing slash.
    pub base_url: String,
    /// A master key or a virtual key allowed to read spend.
    pub api_key: Secret,
    pub page_size: u32,
}

impl LiteLlmConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let label = format!("account '{}'", account.id);
        let raw = reader.credential("api_key");
        let mut base_url = account.base_url.trim().trim_end_matches('/').to_string();
        let api_key = if raw.expose().trim_start().starts_with('{') {
            match pasted(raw.expose()) {
                Ok((key, pasted_url)) => {
                    if let Some(url) = pasted_url {
                        let url = url.trim().trim_end_matches('/').to_string();
                        if base_url.is_empty() {
                            base_url = url;
                        } else if url != base_url {
                            reader.problems.push(format!(
                                "{label}: the baseUrl in credentials.api_key (pasted JSON) is '{url}' but base_url is \
                                 '{base_url}'; make them the same proxy URL"
                            ));
                        }
                    }
                    key
                }
                Err(problem) => {
                    reader.problems.push(format!(
                        "{label}: credentials.api_key looks like pasted JSON but {problem}; \
                         use {{\"apiKey\": \"sk-...\", \"baseUrl\": \"https://litellm.example.com\"}} or the bare key"
                    ));
                    Secret::new("")
                }
            }
        } else {
            raw
        };
        let allow_private = match reader.string(ALLOW_PRIVATE).as_deref().map(str::trim) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                reader
                    .problems
                    .push(format!("{label}: {ALLOW_PRIVATE} = '{other}' is not true or false"));
                false
            }
        };
        if let Err(problem) = check_base_url(&base_url, allow_private) {
            reader.problems.push(format!("{label}: base_url {problem}"));
        }
        let page_size = reader.number(PAGE_SIZE, 1000_u32, 1, 1000);
        reader.finish(Self {
            base_url,
            api_key,
            page_size,
        })
    }
}

/// The pasted JSON form `{"apiKey": ..., "baseUrl": ...}`; errors name
/// fields, never values.
fn pasted(text: &str) -> Result<(Secret, Option<String>), String> {
    let value: Value = serde_json::from_str(text).map_err(|_| "it is not valid JSON".to_string())?;
    let obj = value.as_object().ok_or("it is not a JSON object")?;
    let key = match obj.get("apiKey") {
        Some(Value::String(s)) if !s.trim().is_empty() => Secret::new(s.trim()),
        Some(_) => return Err("field 'apiKey' is not a non-empty string".into()),
        None => return Err("field 'apiKey' is missing".into()),
    };
    let url = match obj.get("baseUrl") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("field 'baseUrl' is not a string".into()),
    };
    Ok((key, url))
}

/// Host names of cloud metadata services.
const METADATA_HOSTS: &[&str] = &["metadata.google.internal", "metadata.goog", "metadata"];

/// Refuses what is not an http(s) URL, and link-local or metadata hosts
/// unless `allow_private`. The error says what and how to override.
pub fn check_base_url(text: &str, allow_private: bool) -> Result<(), String> {
    let url = url::Url::parse(text)
        .map_err(|_| format!("'{text}' is not a URL; use the proxy's own URL, e.g. https://litellm.example.com"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "'{text}' has scheme '{}'; only http and https are allowed",
            url.scheme()
        ));
    }
    let refused = match url.host() {
        None => return Err(format!("'{text}' has no host")),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            METADATA_HOSTS.contains(&d.as_str()).then_some("a cloud metadata host")
        }
        Some(url::Host::Ipv4(ip)) => v4_reason(ip),
        Some(url::Host::Ipv6(ip)) => v6_reason(ip),
    };
    match refused {
        Some(what) if !allow_private => Err(format!(
            "'{text}' points at {what}, where no LiteLLM proxy runs and the key could leak; \
             use the proxy's URL, or set {ALLOW_PRIVATE} = true for this account if it really is there"
        )),
        _ => Ok(()),
    }
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        Some("a cloud metadata address")
    } else if ip.is_link_local() {
        Some("a link-local address (169.254.0.0/16)")
    } else {
        None
    }
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    if ip == "fd00:ec2::254".parse::<Ipv6Addr>().expect("a literal address") {
        Some("a cloud metadata address")
    } else if ip.segments()[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address (fe80::/10)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const KEY: &str = "sk-FAKE-TEST-litellm-master-0123456789";

    fn read(base_url: &str, key: &str, settings: &[(&str, &str)]) -> Result<LiteLlmConfig, Vec<String>> {
        let creds = BTreeMap::from([("api_key".to_string(), Secret::new(key))]);
        let settings: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        LiteLlmConfig::read(AccountView {
            id: "proxy",
            base_url,
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn litellm_base_url_guard_refuses_link_local_and_metadata_unless_opted_in() {
        for url in [
            "http://169.254.169.254/latest",
            "http://169.254.10.20:4000",
            "http://[fe80::1]:4000",
            "http://[fd00:ec2::254]",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://[::ffff:169.254.169.254]",
        ] {
            let problems = read(url, KEY, &[]).unwrap_err();
            assert!(
                problems[0].contains("account 'proxy'") && problems[0].contains(ALLOW_PRIVATE),
                "{url}: {problems:?}"
            );
            assert!(read(url, KEY, &[(ALLOW_PRIVATE, "true")]).is_ok(), "{url}");
        }
        // Where proxies really run.
        for url in [
            "https://litellm.example.com",
            "http://127.0.0.1:4000",
            "http://10.0.0.5:4000",
        ] {
            assert!(read(url, KEY, &[]).is_ok(), "{url}");
        }
        assert!(read("https://x.example", KEY, &[(ALLOW_PRIVATE, "yes")]).unwrap_err()[0].contains("true or false"));
    }

    #[test]
    fn litellm_non_http_schemes_are_refused_even_with_the_opt_in() {
        for url in [
            "file:///etc/passwd",
            "ftp://proxy.example.com",
            "gopher://169.254.169.254",
        ] {
            let problems = read(url, KEY, &[(ALLOW_PRIVATE, "true")]).unwrap_err();
            assert!(problems[0].contains("only http and https"), "{url}: {problems:?}");
        }
    }

    #[test]
    fn litellm_pasted_json_gives_key_and_url_and_never_prints_the_key() {
        let json = format!(r#"{{"apiKey": "{KEY}", "baseUrl": "https://litellm.example.com/"}}"#);
        let c = read("", &json, &[]).unwrap();
        assert_eq!(
            (c.api_key.expose(), c.base_url.as_str()),
            (KEY, "https://litellm.example.com")
        );
        let c = read("https://litellm.example.com", &json, &[]).unwrap();
        assert_eq!(c.page_size, 1000);
        let problems = read("https://other.example.com", &json, &[]).unwrap_err();
        assert!(
            problems[0].contains("baseUrl") && !problems[0].contains(KEY),
            "{problems:?}"
        );
        let metadata = format!(r#"{{"apiKey": "{KEY}", "baseUrl": "http://169.254.169.254"}}"#);
        assert!(read("", &metadata, &[]).unwrap_err()[0].contains("metadata"));
        let problems = read("https://x.example", r#"{"baseUrl": "https://x.example"}"#, &[]).unwrap_err();
        assert!(problems[0].contains("'apiKey' is missing"), "{problems:?}");
        assert!(read("https://x.example", KEY, &[(PAGE_SIZE, "5000")]).is_err());
    }
}
