//! A Google Vertex AI account's typed config: the service-account key and the
//! billing-export table, read from the account and checked at load.
//!
//! The key is a service-account JSON key (`"type": "service_account"`),
//! pasted as `credentials.service_account_json` or named by path in
//! `credentials.service_account_file` (read here, at load, so a missing file
//! fails `check-config`, not the first sync). Other Google credentials are
//! recognised and refused with the fix: an OAuth client JSON (`installed` /
//! `web`), an API key (`AIza...`), an access token (`ya29....`), an
//! external-account (workload identity federation) or user JSON.

use serde_json::Value;

use crate::config::secret::Secret;
use crate::providers::platform::settings::SettingsReader;
use crate::providers::AccountView;

/// Where service-account keys are made.
pub const KEYS_HELP: &str = "create one in the Cloud console under IAM & Admin > Service Accounts > (the account) > \
Keys > Add key > Create new key > JSON";

/// Services of the billing export that are Vertex AI and Gemini API spend.
pub const DEFAULT_SERVICES: &[&str] = &["Vertex AI", "Gemini API"];

/// Rows per page of query results (BigQuery caps a page at 10 MB anyway).
const DEFAULT_PAGE_SIZE: u32 = 10_000;

/// `service.description` values to read (comma-separated).
pub const SERVICES: &str = "billing_services";

/// A BigQuery table named `project.dataset.table`: each part checked so it
/// can be quoted with backticks and never changes the query around it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableId {
    pub project: String,
    pub dataset: String,
    pub table: String,
}

impl TableId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim().trim_matches('`');
        let parts: Vec<&str> = text.split('.').collect();
        let [project, dataset, table] = parts.as_slice() else {
            return Err(format!(
                "'{text}' is not project.dataset.table (e.g. my-billing-project.billing_export.gcp_billing_export_v1_012345_6789AB_CDEF01)"
            ));
        };
        let project_ok = (6..=30).contains(&project.len())
            && project.starts_with(|c: char| c.is_ascii_lowercase())
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !project_ok {
            return Err(format!(
                "project '{project}' is not a Google Cloud project id (6-30 characters: a-z, 0-9, '-')"
            ));
        }
        let name_ok = |s: &str, extra: &[char]| {
            !s.is_empty()
                && s.len() <= 1024
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
        };
        if !name_ok(dataset, &[]) {
            return Err(format!("dataset '{dataset}' may only use letters, digits and '_'"));
        }
        if !name_ok(table, &['-']) {
            return Err(format!("table '{table}' may only use letters, digits, '_' and '-'"));
        }
        Ok(Self {
            project: project.to_string(),
            dataset: dataset.to_string(),
            table: table.to_string(),
        })
    }

    /// The table quoted for Standard SQL; safe because no part can hold a backtick.
    pub fn quoted(&self) -> String {
        format!("`{}`.`{}`.`{}`", self.project, self.dataset, self.table)
    }
}

/// The fields of a service-account key this adapter uses. The private key
/// never prints.
#[derive(Clone)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    /// PEM (PKCS#8 `PRIVATE KEY`, as Google issues, or PKCS#1 `RSA PRIVATE KEY`).
    pub private_key: Secret,
    pub token_uri: String,
    pub project_id: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

/// What a Vertex account has.
#[derive(Clone, Debug)]
pub struct VertexConfig {
    pub service_account: ServiceAccount,
    /// The credential the key came from, for messages.
    pub key_field: &'static str,
    pub billing_table: TableId,
    /// Where query jobs run (and are billed): `query_project`, else the key's project.
    pub query_project: String,
    /// BigQuery location of the export dataset (`location`, default `US`).
    pub location: String,
    pub services: Vec<String>,
    pub page_size: u32,
    /// Cloud Monitoring root, or `None` with `monitoring = "off"`.
    pub monitoring_url: Option<String>,
    pub monitoring_project: String,
}

impl VertexConfig {
    pub fn read(account: AccountView<'_>) -> Result<Self, Vec<String>> {
        let mut reader = SettingsReader::new(&account);
        let label = format!("account '{}'", account.id);
        let (key_field, text) = match (
            reader.optional_credential("service_account_json"),
            reader.optional_credential("service_account_file"),
        ) {
            (Some(json), _) => ("credentials.service_account_json", Some(json)),
            (None, Some(path)) => {
                let path = path.expose().trim().to_string();
                match std::fs::read_to_string(&path) {
                    Ok(text) => ("credentials.service_account_file", Some(Secret::new(text))),
                    Err(e) => {
                        reader.problems.push(format!(
                            "{label}: credentials.service_account_file '{path}' cannot be read ({e}); give the path of \
                             the service account's JSON key file"
                        ));
                        ("credentials.service_account_file", None)
                    }
                }
            }
            (None, None) => {
                reader.problems.push(format!(
                    "{label}: set credentials.service_account_json (the pasted JSON key) or \
                     credentials.service_account_file (its path)"
                ));
                ("credentials.service_account_json", None)
            }
        };
        let service_account = text.and_then(|text| match service_account(text.expose()) {
            Ok(sa) => Some(sa),
            Err(problem) => {
                reader.problems.push(format!("{label}: {key_field} {problem}"));
                None
            }
        });
        let billing_table = match reader.string("billing_table") {
            None => {
                reader.problems.push(format!(
                    "{label}: billing_table is missing; set it to the Cloud Billing export table, \
                     billing_table = \"my-billing-project.billing_export.gcp_billing_export_v1_XXXXXX_XXXXXX_XXXXXX\""
                ));
                None
            }
            Some(text) => match TableId::parse(&text) {
                Ok(t) => Some(t),
                Err(problem) => {
                    reader.problems.push(format!("{label}: billing_table {problem}"));
                    None
                }
            },
        };
        let project_setting = |reader: &mut SettingsReader<'_>, key: &str| -> Option<String> {
            let text = reader.string(key)?.trim().to_string();
            match TableId::parse(&format!("{text}.d.t")) {
                Ok(_) => Some(text),
                Err(_) => {
                    reader.problems.push(format!(
                        "{label}: {key} '{text}' is not a Google Cloud project id (6-30 characters: a-z, 0-9, '-')"
                    ));
                    None
                }
            }
        };
        let query_project = project_setting(&mut reader, "query_project");
        let monitoring_project = project_setting(&mut reader, "monitoring_project");
        let location = reader.string("location").unwrap_or_else(|| "US".to_string());
        if location.is_empty() || !location.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            reader.problems.push(format!(
                "{label}: location '{location}' is not a BigQuery location (e.g. US, EU, europe-west1)"
            ));
        }
        let services: Vec<String> = match reader.string(SERVICES) {
            None => DEFAULT_SERVICES.iter().map(|s| s.to_string()).collect(),
            Some(text) => text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        };
        if services.is_empty() {
            reader.problems.push(format!(
                "{label}: {SERVICES} is empty; list service descriptions such as \"Vertex AI, Gemini API\""
            ));
        }
        let page_size = reader.number("page_size", DEFAULT_PAGE_SIZE, 1, 100_000);
        let monitoring = reader.choice("monitoring", "on", &["on", "off"]);
        let monitoring_url = reader
            .string("monitoring_url")
            .unwrap_or_else(|| "https://monitoring.googleapis.com".to_string())
            .trim()
            .trim_end_matches('/')
            .to_string();
        if let Err(problem) = https_or_loopback(&monitoring_url) {
            reader.problems.push(format!("{label}: monitoring_url {problem}"));
        }
        let (Some(sa), Some(billing_table)) = (service_account, billing_table) else {
            return Err(reader.problems);
        };
        if let Err(problem) = https_or_loopback(&sa.token_uri) {
            reader
                .problems
                .push(format!("{label}: the token_uri of {key_field} {problem}"));
        }
        let query_project = query_project.unwrap_or_else(|| sa.project_id.clone());
        let monitoring_project = monitoring_project.unwrap_or_else(|| sa.project_id.clone());
        reader.finish(Self {
            service_account: sa,
            key_field,
            billing_table,
            query_project,
            location,
            services,
            page_size,
            monitoring_url: (monitoring == "on").then_some(monitoring_url),
            monitoring_project,
        })
    }
}

/// URLs the key or tokens are sent to: https, or http to loopback (tests).
fn https_or_loopback(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|_| format!("'{text}' is not a URL"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("'{text}' must be an https URL")),
    }
}

/// Reads a service-account key; the problem names what is wrong and the fix,
/// never a value of the key.
pub fn service_account(text: &str) -> Result<ServiceAccount, String> {
    let trimmed = text.trim();
    let fix = format!("use a service account's JSON key instead: {KEYS_HELP}");
    if trimmed.starts_with("AIza") {
        return Err(format!(
            "is a Google API key, which cannot read the billing export or Cloud Monitoring; {fix}"
        ));
    }
    if trimmed.starts_with("ya29.") {
        return Err(format!("is an OAuth access token, which expires within an hour; {fix}"));
    }
    let value: Value = serde_json::from_str(trimmed)
        .map_err(|_| format!("is not valid JSON (a service-account key file is); {fix}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| format!("is not a JSON object; {fix}"))?;
    if obj.contains_key("installed") || obj.contains_key("web") {
        return Err(format!(
            "is an OAuth client JSON (client_secret_*.json), which signs in a person, not a service; {fix}"
        ));
    }
    let kind = obj.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "service_account" {
        let what = match kind {
            "external_account" => "a workload identity federation config (external_account)".to_string(),
            "authorized_user" => "a user's application-default credentials (authorized_user)".to_string(),
            "" => "a JSON without \"type\": \"service_account\"".to_string(),
            other => format!("a '{other}' credential"),
        };
        return Err(format!("is {what}, not a service-account key; {fix}"));
    }
    let field = |name: &str| -> Result<String, String> {
        match obj.get(name).and_then(Value::as_str).map(str::trim) {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err(format!(
                "has no '{name}'; download the key again (the whole JSON file, unedited): {KEYS_HELP}"
            )),
        }
    };
    let private_key = field("private_key")?;
    super::auth::signing_key(&private_key).map_err(|problem| format!("has a private_key that {problem}; {fix}"))?;
    Ok(ServiceAccount {
        client_email: field("client_email")?,
        private_key_id: obj
            .get("private_key_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        private_key: Secret::new(private_key),
        token_uri: obj
            .get("token_uri")
            .and_then(Value::as_str)
            .unwrap_or("https://oauth2.googleapis.com/token")
            .to_string(),
        project_id: field("project_id")?,
    })
}
