//! The simulated token endpoint: service accounts registered with their key
//! (the public half is kept), and the `jwt-bearer` grant verified as Google
//! does: RS256 signature with the registered key, `kid`, `iss`, `aud`,
//! lifetime and scope.
//!
//! Registration is process-wide (a test, or `simulate
//! --google-service-account FILE` in the demo, registers the key it made),
//! keyed by the service account's email.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, RwLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use crate::simulator::server::Reply;

struct Registered {
    public_key: Vec<u8>,
    key_id: String,
    token_uri: String,
}

static ACCOUNTS: LazyLock<RwLock<HashMap<String, Registered>>> = LazyLock::new(Default::default);

/// Tokens issued so far, so each is distinct.
static ISSUED: AtomicU64 = AtomicU64::new(0);

/// Registers a service-account key JSON (as [`service_account_json`] makes
/// it): its tokens are granted from now on. Returns the account's email.
pub fn register_service_account(json: &str) -> Result<String, String> {
    let sa = crate::providers::google_vertex::service_account(json).map_err(|p| format!("the key JSON {p}"))?;
    let public_key = crate::providers::google_vertex::public_key_der(sa.private_key.expose())?;
    ACCOUNTS.write().unwrap_or_else(|p| p.into_inner()).insert(
        sa.client_email.clone(),
        Registered {
            public_key,
            key_id: sa.private_key_id.clone(),
            token_uri: sa.token_uri.clone(),
        },
    );
    Ok(sa.client_email)
}

/// A service-account key JSON for `org` of the simulator at `base_url`,
/// shaped like the file the Cloud console downloads.
pub fn service_account_json(
    base_url: &str,
    org: &str,
    client_email: &str,
    key_id: &str,
    private_key_pem: &str,
) -> String {
    json!({
        "type": "service_account",
        "project_id": super::project(org),
        "private_key_id": key_id,
        "private_key": private_key_pem,
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{}/{}/{org}/token", base_url.trim_end_matches('/'), super::NAME),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

fn refuse(error: &str, description: &str) -> Reply {
    Reply::json(400, json!({"error": error, "error_description": description}))
}

fn part(text: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).ok()?).ok()
}

/// Answers `POST token` for `org` at `now` (Unix seconds).
pub(super) fn grant(org: &str, body: &[u8], now: i64) -> Reply {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        return refuse("unsupported_grant_type", "Invalid grant_type: ");
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("invalid_request", "Missing required parameter: assertion");
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return refuse("invalid_grant", "Invalid JWT: not three parts");
    };
    let (Some(header), Some(claims), Ok(signature)) = (
        part(header_b64),
        part(claims_b64),
        URL_SAFE_NO_PAD.decode(signature_b64),
    ) else {
        return refuse("invalid_grant", "Invalid JWT: cannot be decoded");
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return refuse("invalid_grant", "Invalid JWT: alg must be RS256");
    }
    let text = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let accounts = ACCOUNTS.read().unwrap_or_else(|p| p.into_inner());
    let email = text("iss");
    let Some(account) = accounts.get(&email) else {
        return refuse("invalid_grant", "Invalid grant: account not found");
    };
    let expected_tail = format!("/{}/{org}/token", super::NAME);
    if text("aud") != account.token_uri || !account.token_uri.ends_with(&expected_tail) {
        return refuse("invalid_grant", "Invalid JWT: Failed audience check.");
    }
    let (iat, exp) = (
        claims.get("iat").and_then(Value::as_i64).unwrap_or(0),
        claims.get("exp").and_then(Value::as_i64).unwrap_or(0),
    );
    if exp - iat <= 0 || exp - iat > 3600 || iat > now + 300 || exp < now {
        return refuse(
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your \
             iat and exp values in the JWT claim.",
        );
    }
    let scope = text("scope");
    if !scope.contains("auth/bigquery") && !scope.contains("auth/cloud-platform") {
        return refuse("invalid_scope", "The scope does not allow BigQuery.");
    }
    let signed = format!("{header_b64}.{claims_b64}");
    let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &account.public_key);
    let kid_ok = header.get("kid").and_then(Value::as_str) == Some(account.key_id.as_str());
    if !kid_ok || key.verify(signed.as_bytes(), &signature).is_err() {
        return refuse("invalid_grant", "Invalid JWT Signature.");
    }
    let local: String = email
        .split('@')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let n = ISSUED.fetch_add(1, Ordering::Relaxed);
    Reply::json(
        200,
        json!({"access_token": format!("ya29.FAKE-sim-{org}-{local}-{n}"), "expires_in": 3599, "token_type": "Bearer"}),
    )
}
