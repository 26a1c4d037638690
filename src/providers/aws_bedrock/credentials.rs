//! The credentials every SDK call is signed with: the account's IAM key, or
//! (with `role_arn`) the temporary credentials of that role from STS
//! `AssumeRole`, cached until shortly before they expire and fetched again
//! once when AWS says they expired ([`AccountCredentials::invalidate`]).
//!
//! The SDK clients are built with no identity cache of their own, so this is
//! the one place credentials are cached and the refresh-once rule holds.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

use super::transport::{provider_error, Carried};
use crate::providers::{Provider, ProviderError};

/// Assumed-role credentials are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// How long an assumed role's session lasts (STS's minimum is 15 minutes).
const SESSION_SECONDS: i32 = 3_600;

struct Role {
    arn: String,
    external_id: Option<String>,
    sts: aws_sdk_sts::Client,
}

struct Inner {
    account: String,
    base: Credentials,
    role: Option<Role>,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

/// One account's credentials, shared by its SDK clients.
#[derive(Clone)]
pub struct AccountCredentials(Arc<Inner>);

impl fmt::Debug for AccountCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountCredentials")
            .field("account", &self.0.account)
            .field("assumes_role", &self.0.role.is_some())
            .finish_non_exhaustive()
    }
}

impl AccountCredentials {
    /// `sts` is a client signed with `base`; `None` when there is no role.
    pub fn new(account: &str, base: Credentials, role: Option<(String, Option<String>, aws_sdk_sts::Client)>) -> Self {
        Self(Arc::new(Inner {
            account: account.to_string(),
            base,
            role: role.map(|(arn, external_id, sts)| Role { arn, external_id, sts }),
            cached: tokio::sync::Mutex::new(None),
        }))
    }

    /// Drops cached role credentials, so the next call assumes the role
    /// again. Static keys cannot be refreshed: `false`.
    pub async fn invalidate(&self) -> bool {
        if self.0.role.is_none() {
            return false;
        }
        *self.0.cached.lock().await = None;
        true
    }

    async fn current(&self) -> Result<Credentials, ProviderError> {
        let Some(role) = &self.0.role else {
            return Ok(self.0.base.clone());
        };
        let mut cached = self.0.cached.lock().await;
        if let Some(creds) = cached.as_ref() {
            let fresh = creds
                .expiry()
                .is_none_or(|expiry| SystemTime::now() + RENEW_BEFORE < expiry);
            if fresh {
                return Ok(creds.clone());
            }
        }
        let creds = self.assume(role).await?;
        *cached = Some(creds.clone());
        Ok(creds)
    }

    async fn assume(&self, role: &Role) -> Result<Credentials, ProviderError> {
        let answer = role
            .sts
            .assume_role()
            .role_arn(&role.arn)
            .role_session_name("tokentra-sync")
            .set_external_id(role.external_id.clone())
            .duration_seconds(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| {
                provider_error(&e).unwrap_or_else(|| ProviderError::Auth {
                    account: self.0.account.clone(),
                    provider: Provider::AwsBedrock,
                    status: 0,
                    hint: format!(
                        "STS AssumeRole of credentials.role_arn failed: {}",
                        aws_smithy_types::error::display::DisplayErrorContext(&e)
                    ),
                })
            })?;
        let malformed = |what: &str| ProviderError::Malformed {
            account: self.0.account.clone(),
            endpoint: "AssumeRole".to_string(),
            detail: format!("the AssumeRole answer has no {what}"),
        };
        let creds = answer.credentials().ok_or_else(|| malformed("Credentials"))?;
        let expiry = SystemTime::try_from(*creds.expiration()).map_err(|_| malformed("valid Expiration"))?;
        tracing::debug!(account = %self.0.account, "assumed the account's role through STS");
        Ok(Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_string()),
            Some(expiry),
            "tokentra-assume-role",
        ))
    }
}

impl ProvideCredentials for AccountCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            self.current()
                .await
                .map_err(|e| CredentialsError::provider_error(Box::new(Carried::new(e))))
        })
    }
}
