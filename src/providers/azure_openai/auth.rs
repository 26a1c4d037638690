//! The service principal's token and Azure's throttling rules.
//!
//! Token: OAuth2 client credentials at `{login_url}/{tenant}/oauth2/v2.0/token`
//! with scope `https://management.azure.com/.default`. The platform's
//! [`CachedToken`](crate::providers::platform::CachedToken) caches it until
//! shortly before `expires_in` and refreshes it once when ARM answers 401.
//! Entra ID answers a wrong tenant, client id or secret with 400/401 and an
//! `AADSTS` code: those fail the account at once (retrying cannot help),
//! with the fix in the message.
//!
//! Throttling: ARM and Cost Management answer 429 with
//! `x-ms-ratelimit-microsoft.costmanagement-{qpu,entity,tenant,clienttype}-retry-after`
//! (seconds), sometimes `Retry-After`; the longest of them is waited.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::config::secret::Secret;
use crate::providers::platform::retry::{default_verdict, parse_wait, retry_after, RetryClassifier, Verdict};
use crate::providers::platform::{ProviderHttp, Token, TokenSource};
use crate::providers::{FailureKind, ProviderError};

/// The ARM audience every token is asked for (also when `base_url` points
/// elsewhere, as in tests: the token is for Azure Resource Manager).
pub(super) const SCOPE: &str = "https://management.azure.com/.default";

/// Shown with a refused login.
pub(super) const LOGIN_HINT: &str = "Entra ID refused the service principal. Check credentials.tenant_id (Directory \
(tenant) ID), credentials.client_id (Application (client) ID) and that credentials.client_secret is the client \
secret's Value from Entra ID > App registrations > your app > Certificates & secrets (not its Secret ID, not an \
Azure OpenAI API key, not expired)";

/// Shown with a 401/403 from the management API.
pub(super) const MANAGEMENT_HINT: &str = "Azure refused the service principal's token. Assign the app registration \
(credentials.client_id) the Cost Management Reader role (cost) and the Monitoring Reader or Reader role (OpenAI \
accounts, deployments, token metrics) on the subscription or the resource group, in Access control (IAM); role \
assignments take up to 10 minutes to apply";

/// Fetches tokens from the login endpoint through its own [`ProviderHttp`]
/// (retries, redaction of the secret).
pub(super) struct EntraLogin {
    pub http: ProviderHttp,
    pub url: String,
    pub client_id: String,
    pub client_secret: Secret,
}

#[async_trait]
impl TokenSource for EntraLogin {
    async fn fetch(&self) -> Result<Token, ProviderError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            ("scope", SCOPE),
        ];
        let body = self
            .http
            .get_json("oauth2/v2.0/token", |client| client.post(&self.url).form(&form))
            .await?;
        super::parse::token(body.json()).map_err(|e| self.http.malformed("oauth2/v2.0/token", e.0))
    }
}

/// Entra ID's answers: a 400 (`invalid_client`, `unauthorized_client`,
/// unknown tenant) is a credential problem like a 401, never a retry.
pub(super) struct LoginClassifier;

impl RetryClassifier for LoginClassifier {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, _body: &str) -> Verdict {
        match status {
            StatusCode::BAD_REQUEST => Verdict::Fail(FailureKind::Auth),
            _ => default_verdict(status, headers),
        }
    }
}

/// ARM and Cost Management: standard verdicts, with the wait taken from
/// every throttling header Azure documents.
pub(super) struct AzureClassifier;

impl RetryClassifier for AzureClassifier {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, _body: &str) -> Verdict {
        match default_verdict(status, headers) {
            Verdict::Retry { kind, wait } => Verdict::Retry {
                kind,
                wait: wait.max(self.retry_after(headers)),
            },
            other => other,
        }
    }

    fn retry_after(&self, headers: &HeaderMap) -> Option<Duration> {
        azure_wait(headers)
    }
}

/// The longest wait any `x-ms-ratelimit-*-retry-after` or `Retry-After`
/// header asks for.
pub(super) fn azure_wait(headers: &HeaderMap) -> Option<Duration> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-ms-ratelimit-") && name.ends_with("-retry-after")
        })
        .filter_map(|(_, value)| value.to_str().ok().and_then(|v| parse_wait(v.trim())))
        .chain(retry_after(headers))
        .max()
}
