//! Service-account OAuth: an RS256-signed JWT assertion exchanged at the
//! key's `token_uri` for an access token (RFC 7523 `jwt-bearer` grant, as
//! google-auth does it), behind the platform's [`TokenSource`] so the token
//! is cached until shortly before it expires and refreshed once on a 401.
//!
//! Signing uses `ring` (already the TLS stack's crypto): PKCS#8 keys as
//! Google issues them, PKCS#1 keys too. The private key never leaves this
//! module and never prints.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::json;

use super::config::ServiceAccount;
use crate::providers::json::Json;
use crate::providers::platform::retry::default_verdict;
use crate::providers::platform::{RetryClassifier, Token, TokenSource, Verdict};
use crate::providers::{FailureKind, ProviderError, ProviderHttp};

/// Read-only scopes: the billing export (BigQuery) and token counts
/// (Cloud Monitoring).
pub const SCOPES: &str =
    "https://www.googleapis.com/auth/bigquery.readonly https://www.googleapis.com/auth/monitoring.read";

/// Lifetime asked for the assertion; Google accepts at most one hour.
const ASSERTION_SECONDS: i64 = 3_600;

/// The signing key of a PEM private key; the problem never quotes the key.
pub fn signing_key(pem: &str) -> Result<RsaKeyPair, String> {
    let (label, der) = pem_body(pem).ok_or("is not a PEM block (-----BEGIN PRIVATE KEY----- ...)")?;
    match label.as_str() {
        "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).map_err(|e| format!("is not an RSA key ({e})")),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).map_err(|e| format!("is not an RSA key ({e})")),
        other => Err(format!("is a '{other}' PEM block, not a private key")),
    }
}

/// The label and decoded body of the first PEM block of `text`.
fn pem_body(text: &str) -> Option<(String, Vec<u8>)> {
    // Pasted keys sometimes keep the JSON's escaped newlines.
    let text = text.replace("\\n", "\n");
    let start = text.find("-----BEGIN ")?;
    let rest = &text[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_string();
    let body_and_end = &rest[label_end + 5..];
    let end = body_and_end.find(&format!("-----END {label}-----"))?;
    let b64: String = body_and_end[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some((label, der))
}

/// A signed JWT assertion for `account`, issued at `now` (Unix seconds).
pub fn assertion(account: &ServiceAccount, key: &RsaKeyPair, scopes: &str, now: i64) -> Result<String, String> {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": account.private_key_id});
    let claims = json!({
        "iss": account.client_email,
        "scope": scopes,
        "aud": account.token_uri,
        "iat": now,
        "exp": now + ASSERTION_SECONDS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "signing the JWT assertion failed".to_string())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// Fresh tokens from the key's `token_uri`.
pub struct JwtSource {
    pub account: ServiceAccount,
    pub key: Arc<RsaKeyPair>,
    /// The token endpoint's own client (it cannot use the cached token).
    pub http: ProviderHttp,
}

impl std::fmt::Debug for JwtSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSource")
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for JwtSource {
    async fn fetch(&self) -> Result<Token, ProviderError> {
        let now = chrono::Utc::now().timestamp();
        let jwt = assertion(&self.account, &self.key, SCOPES, now).map_err(|detail| ProviderError::Config {
            account: self.http.account().to_string(),
            detail,
        })?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &jwt)
            .finish();
        let uri = &self.account.token_uri;
        let answer = self
            .http
            .get_json("token", |client| {
                client
                    .post(uri)
                    .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body.clone())
            })
            .await?;
        token(answer.json()).map_err(|detail| self.http.malformed("token", detail))
    }
}

/// Reads `{"access_token", "expires_in", "token_type"}`.
pub fn token(answer: &Json) -> Result<Token, String> {
    let value = answer
        .get("access_token")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the token endpoint's answer has no access_token")?;
    let expires_in = match answer.get("expires_in") {
        Some(Json::Number(n)) => n.as_u64(),
        Some(Json::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or("the token endpoint's answer has no whole expires_in")?;
    Ok(Token {
        value: value.to_string(),
        expires_in: Duration::from_secs(expires_in.min(86_400)),
    })
}

/// The token endpoint answers a bad assertion with 400 `invalid_grant`
/// (a deleted or disabled key, a wrong signature, a skewed clock) and an
/// unknown client with 401 `invalid_client`: credentials, not requests,
/// so they fail as auth errors with the key's fix.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokenClassifier;

impl RetryClassifier for TokenClassifier {
    fn classify(&self, status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap, body: &str) -> Verdict {
        let oauth_refusal = [
            "invalid_grant",
            "invalid_client",
            "unauthorized_client",
            "invalid_scope",
        ]
        .iter()
        .any(|code| body.contains(code));
        if status.is_client_error() && oauth_refusal {
            Verdict::Fail(FailureKind::Auth)
        } else {
            default_verdict(status, headers)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    /// A throwaway RSA key made by `openssl genpkey` for this test run only.
    pub(crate) fn test_key_pem() -> String {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("openssl is installed (it generates the test keys)");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn account(pem: &str) -> ServiceAccount {
        ServiceAccount {
            client_email: "sync@proj-123456.iam.gserviceaccount.com".into(),
            private_key_id: "kid-1".into(),
            private_key: crate::config::Secret::new(pem),
            token_uri: "https://oauth2.googleapis.com/token".into(),
            project_id: "proj-123456".into(),
        }
    }

    #[test]
    fn vertex_assertion_is_rs256_with_google_claims_and_verifies_with_the_public_key() {
        let pem = test_key_pem();
        let key = signing_key(&pem).unwrap();
        let sa = account(&pem);
        let jwt = assertion(&sa, &key, SCOPES, 1_700_000_000).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT", "kid": "kid-1"}));
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "sync@proj-123456.iam.gserviceaccount.com");
        assert_eq!(claims["aud"], "https://oauth2.googleapis.com/token");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let public = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public().as_ref().to_vec());
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(public.verify(signed.as_bytes(), &signature).is_ok());
        // Another key's public half refuses it.
        let other = signing_key(&test_key_pem()).unwrap();
        let wrong = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, other.public().as_ref().to_vec());
        assert!(wrong.verify(signed.as_bytes(), &signature).is_err());
        assert!(!format!("{sa:?}").contains("PRIVATE"));
    }

    #[test]
    fn vertex_keys_in_json_escaped_form_load_and_garbage_is_named_without_echo() {
        let pem = test_key_pem();
        assert!(signing_key(&pem.replace('\n', "\\n")).is_ok());
        let err = signing_key("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").unwrap_err();
        assert!(err.contains("not an RSA key"), "{err}");
        assert!(signing_key("hello").unwrap_err().contains("not a PEM block"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----";
        assert!(signing_key(cert).unwrap_err().contains("CERTIFICATE"));
    }

    #[test]
    fn vertex_token_answers_and_refusals() {
        let t = token(&Json::from(
            json!({"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}),
        ))
        .unwrap();
        assert_eq!(t.expires_in, Duration::from_secs(3599));
        assert!(token(&Json::from(json!({"expires_in": 3599}))).is_err());
        assert!(token(&Json::from(json!({"access_token": "ya29.x"}))).is_err());
        let none = reqwest::header::HeaderMap::new();
        let c = TokenClassifier;
        let body = r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#;
        assert_eq!(
            c.classify(reqwest::StatusCode::BAD_REQUEST, &none, body),
            Verdict::Fail(FailureKind::Auth)
        );
        assert_eq!(
            c.classify(reqwest::StatusCode::BAD_REQUEST, &none, "{}"),
            Verdict::Fail(FailureKind::Request)
        );
        assert!(matches!(
            c.classify(reqwest::StatusCode::SERVICE_UNAVAILABLE, &none, body),
            Verdict::Retry { .. }
        ));
    }
}
