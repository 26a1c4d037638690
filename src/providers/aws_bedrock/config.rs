//! An AWS Bedrock account's typed config, read purely from the account.
//!
//! Credentials are an IAM access key (`access_key_id` + `secret_access_key`,
//! plus `session_token` for temporary keys) and the `region` Bedrock runs in
//! (CloudWatch metrics are regional; Cost Explorer is global, signed for
//! `us-east-1`). With `role_arn` (and `external_id` when the role's trust
//! policy asks for one) the key only assumes that role through STS and every
//! call runs as the role: the usual cross-account setup.
//!
//! A Bedrock API key (`ABSK...`) is not an IAM key: it only calls
//! `bedrock-runtime`, never Cost Explorer or CloudWatch. It is accepted at
//! load (other accounts of the file keep syncing) and the account's first
//! sync fails, before any request, with [`ABSK_FIX`].

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// The Cost Explorer endpoint (global; the default `base_url`).
pub const DEFAULT_CE_URL: &str = "https://ce.us-east-1.amazonaws.com";

/// What to do when a Bedrock API key is given where an IAM key is needed.
pub const ABSK_FIX: &str = "is an Amazon Bedrock API key (ABSK...), which only calls bedrock-runtime; \
Cost Explorer and CloudWatch need an IAM access key: create one for an IAM user (IAM console > Users > \
Security credentials > Create access key, AKIA...) with ce:GetCostAndUsage and cloudwatch:GetMetricData \
(see docs/providers/aws_bedrock.md) and put it in credentials.access_key_id and credentials.secret_access_key";

/// A typed AWS Bedrock account.
pub struct BedrockConfig {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// The region whose CloudWatch holds the Bedrock metrics.
    pub region: String,
    pub role_arn: Option<String>,
    pub external_id: Option<Secret>,
    /// CloudWatch endpoint override (tests, the simulator).
    pub cloudwatch_url: Option<String>,
    /// STS endpoint override (tests, the simulator).
    pub sts_url: Option<String>,
    /// Marketplace service names billed for Bedrock besides the built-in rule
    /// (names containing "Bedrock", "Claude"), e.g. a new third-party model.
    pub extra_services: Vec<String>,
    /// The credential that is a Bedrock API key, if any (named at sync).
    pub bedrock_api_key_in: Option<&'static str>,
}

impl std::fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("access_key_id", &self.access_key_id.hint())
            .field("region", &self.region)
            .field("role_arn", &self.role_arn)
            .field("secrets", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl BedrockConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let access_key_id = reader.credential("access_key_id");
        let secret_access_key = reader.credential("secret_access_key");
        let session_token = reader.optional_credential("session_token");
        let region_secret = reader.credential("region");
        let region = region_secret.expose().trim().to_string();
        if !region.is_empty() && !is_region(&region) {
            reader.problems.push(format!(
                "account '{}': credentials.region = '{region}' is not an AWS region name; use the region Bedrock \
                 runs in, e.g. us-east-1",
                account.id
            ));
        }
        let role_arn = reader
            .optional_credential("role_arn")
            .map(|r| r.expose().trim().to_string());
        if let Some(arn) = &role_arn {
            if !(arn.starts_with("arn:aws") && arn.contains(":iam::") && arn.contains(":role/")) {
                reader.problems.push(format!(
                    "account '{}': credentials.role_arn = '{arn}' is not an IAM role ARN; use \
                     arn:aws:iam::<account-id>:role/<name>",
                    account.id
                ));
            }
        }
        let external_id = reader.optional_credential("external_id");
        if external_id.is_some() && role_arn.is_none() {
            reader.problems.push(format!(
                "account '{}': credentials.external_id is only used to assume credentials.role_arn; add the role ARN \
                 or remove external_id",
                account.id
            ));
        }
        let url = |reader: &mut SettingsReader<'_>, key: &str| {
            let text = reader.string(key)?.trim().trim_end_matches('/').to_string();
            match url::Url::parse(&text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(text),
                _ => {
                    reader.problems.push(format!(
                        "account '{}': {key} = '{text}' is not an http(s) URL; remove it to use AWS's endpoint",
                        account.id
                    ));
                    None
                }
            }
        };
        let cloudwatch_url = url(&mut reader, "cloudwatch_url");
        let sts_url = url(&mut reader, "sts_url");
        let extra_services = reader
            .string("extra_services")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let bedrock_api_key_in = [
            ("credentials.access_key_id", &access_key_id),
            ("credentials.secret_access_key", &secret_access_key),
        ]
        .into_iter()
        .find(|(_, v)| v.expose().trim_start().starts_with("ABSK"))
        .map(|(field, _)| field);
        reader.finish(Self {
            access_key_id,
            secret_access_key,
            session_token,
            region,
            role_arn,
            external_id,
            cloudwatch_url,
            sts_url,
            extra_services,
            bedrock_api_key_in,
        })
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `ap-southeast-5`: letters and
/// dashes ending in a number.
fn is_region(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const AKID: &str = "AKIAFAKETESTKEY00001";
    const SECRET: &str = "fakeTestSecretKey/0123456789abcdefghijklmn";

    fn read(creds: &[(&str, &str)], settings: &[(&str, &str)]) -> Result<BedrockConfig, Vec<String>> {
        let creds: BTreeMap<String, Secret> = creds.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect();
        let settings: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        BedrockConfig::read(AccountView {
            id: "bedrock",
            base_url: DEFAULT_CE_URL,
            credentials: &creds,
            settings: &settings,
        })
    }

    #[test]
    fn aws_bedrock_config_reads_keys_role_and_endpoints() {
        let c = read(
            &[
                ("access_key_id", AKID),
                ("secret_access_key", SECRET),
                ("region", "eu-central-1"),
                ("role_arn", "arn:aws:iam::123456789012:role/tokentra-read"),
                ("external_id", "ext-1"),
            ],
            &[
                ("cloudwatch_url", "http://127.0.0.1:9/cw/"),
                ("extra_services", "Acme LLM (Bedrock), Other"),
            ],
        )
        .unwrap();
        assert_eq!(c.region, "eu-central-1");
        assert_eq!(
            c.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/tokentra-read")
        );
        assert_eq!(c.cloudwatch_url.as_deref(), Some("http://127.0.0.1:9/cw"));
        assert_eq!(c.extra_services, ["Acme LLM (Bedrock)", "Other"]);
        assert!(c.bedrock_api_key_in.is_none());
        assert!(!format!("{c:?}").contains(SECRET));
    }

    #[test]
    fn aws_bedrock_config_names_bad_fields_and_spots_a_bedrock_api_key() {
        let problems = read(
            &[
                ("access_key_id", AKID),
                ("secret_access_key", SECRET),
                ("region", "Frankfurt"),
                ("role_arn", "team-role"),
            ],
            &[("sts_url", "not a url")],
        )
        .unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("credentials.region") && problems[0].contains("us-east-1"));
        assert!(problems[1].contains("credentials.role_arn") && problems[1].contains("arn:aws:iam::"));
        assert!(problems[2].contains("sts_url"));
        let problems = read(
            &[
                ("access_key_id", AKID),
                ("secret_access_key", SECRET),
                ("region", "us-east-1"),
                ("external_id", "x"),
            ],
            &[],
        )
        .unwrap_err();
        assert!(problems[0].contains("external_id"), "{problems:?}");
        // A Bedrock API key is accepted at load and named at sync.
        let c = read(
            &[
                ("access_key_id", "ABSK-FAKE-TEST-bedrock-api-key"),
                ("secret_access_key", SECRET),
                ("region", "us-east-1"),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.bedrock_api_key_in, Some("credentials.access_key_id"));
    }
}
