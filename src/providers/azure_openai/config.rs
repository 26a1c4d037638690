//! An Azure OpenAI account's typed config, read purely from the account: a
//! service principal (tenant, client id, client secret), the subscription
//! (and optionally one resource group) to read, and the login endpoint.
//!
//! Key types are told apart by their format where they can be: an Azure
//! OpenAI resource key (32 hex characters, from the resource's "Keys and
//! Endpoint" page) and a client secret's *ID* (a GUID) are both refused here
//! with the fix, because Entra ID would only answer "invalid client secret".

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// The Entra ID (Azure AD) login root; `login_url` overrides it (tests).
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// The setting that overrides the login root.
pub const LOGIN_URL: &str = "login_url";
/// Rows per Cost Management result page (`$top`).
pub const COST_PAGE_SIZE: &str = "cost_page_size";
/// Cost Management pages hold up to 5,000 rows; fewer pages are fewer
/// queries against its quota (about 12 per 10 s per scope).
pub const DEFAULT_COST_PAGE_SIZE: u32 = 5000;

/// What an Azure account has.
#[derive(Debug)]
pub struct AzureConfig {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub subscription_id: String,
    pub resource_group: Option<String>,
    /// Management root (the account's `base_url`), no trailing slash.
    pub management_url: String,
    /// Login root, no trailing slash.
    pub login_url: String,
    /// Rows per cost query page, sent as `$top`.
    pub cost_page_size: u32,
}

impl AzureConfig {
    /// The scope queries and listings run on: the subscription, or one of
    /// its resource groups.
    pub fn scope(&self) -> String {
        match &self.resource_group {
            Some(rg) => format!("subscriptions/{}/resourceGroups/{rg}", self.subscription_id),
            None => format!("subscriptions/{}", self.subscription_id),
        }
    }

    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let label = format!("account '{}'", account.id);
        let tenant_id = reader.credential("tenant_id").expose().trim().to_string();
        let client_id = reader.credential("client_id").expose().trim().to_string();
        let client_secret = reader.credential("client_secret");
        let subscription_id = reader.credential("subscription_id").expose().trim().to_string();
        let resource_group = reader
            .optional_credential("resource_group")
            .map(|rg| rg.expose().trim().to_string());
        if !client_id.is_empty() && !is_guid(&client_id) {
            reader.problems.push(format!(
                "{label}: credentials.client_id '{client_id}' is not a GUID; use the app registration's \
                 \"Application (client) ID\" from Entra ID > App registrations > your app > Overview"
            ));
        }
        if !subscription_id.is_empty() && !is_guid(&subscription_id) {
            reader.problems.push(format!(
                "{label}: credentials.subscription_id '{subscription_id}' is not a GUID; use the \"Subscription ID\" \
                 from Subscriptions in the Azure portal"
            ));
        }
        if !tenant_id.is_empty() && !is_tenant(&tenant_id) {
            reader.problems.push(format!(
                "{label}: credentials.tenant_id '{tenant_id}' is neither a GUID nor a domain; use the \
                 \"Directory (tenant) ID\" from the app registration's Overview"
            ));
        }
        if let Some(rg) = &resource_group {
            if rg.is_empty() || rg.contains('/') || rg.len() > 90 {
                reader.problems.push(format!(
                    "{label}: credentials.resource_group '{rg}' is not a resource group name (no '/', at most 90 \
                     characters)"
                ));
            }
        }
        if let Some(problem) = wrong_secret_type(client_secret.expose().trim()) {
            reader.problems.push(format!(
                "{label}: credentials.client_secret ({}) {problem}",
                client_secret.hint()
            ));
        }
        let login_url = reader
            .string(LOGIN_URL)
            .unwrap_or_else(|| DEFAULT_LOGIN_URL.to_string())
            .trim()
            .trim_end_matches('/')
            .to_string();
        if let Err(problem) = check_login_url(&login_url) {
            reader.problems.push(format!("{label}: {LOGIN_URL} {problem}"));
        }
        let management_url = account.base_url.trim().trim_end_matches('/').to_string();
        let cost_page_size = reader.number(COST_PAGE_SIZE, DEFAULT_COST_PAGE_SIZE, 1, 5000);
        reader.finish(Self {
            tenant_id,
            client_id,
            client_secret,
            subscription_id,
            resource_group,
            management_url,
            login_url,
            cost_page_size,
        })
    }
}

/// Why a client secret is recognisably the wrong credential, with the fix.
pub fn wrong_secret_type(secret: &str) -> Option<&'static str> {
    if secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(
            "looks like an Azure OpenAI resource key (32 hex characters from the resource's Keys and Endpoint \
             page); usage and cost need a service principal instead: create an app registration in Entra ID, add \
             a client secret under Certificates & secrets and put its Value here",
        )
    } else if is_guid(secret) {
        Some(
            "is a GUID: that is the client secret's Secret ID (or the client id), not the secret; copy the \
             secret's Value column from Entra ID > App registrations > your app > Certificates & secrets (shown \
             only when it is created; create a new one if it is hidden)",
        )
    } else {
        None
    }
}

fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts.iter().zip([8, 4, 4, 4, 12]).all(|(p, n)| p.len() == n)
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_tenant(text: &str) -> bool {
    is_guid(text)
        || (text.contains('.')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'))
}

/// The login root receives the client secret: http(s) only, and plain http
/// only to loopback (the simulator).
fn check_login_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| format!("'{text}' is not a URL; use {DEFAULT_LOGIN_URL}"))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "'{text}' is plain http: the client secret would travel unencrypted; use https ({DEFAULT_LOGIN_URL})"
        )),
        other => Err(format!("'{text}' has scheme '{other}'; use {DEFAULT_LOGIN_URL}")),
    }
}
