//! How a request gets its credentials: a static header set (API keys), or a
//! bearer token that is fetched, cached until shortly before it expires, and
//! refreshed once when the provider answers 401 (OAuth2 client credentials,
//! service-account JWTs). Adapters never touch credentials themselves.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION};
use reqwest::RequestBuilder;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::providers::ProviderError;

/// A request with its credentials attached, and which credential that was,
/// so that a 401 can name the credential it rejected.
pub struct Authorized {
    pub request: RequestBuilder,
    pub credential: CredentialId,
}

/// Which cached credential a request carried. Concurrent requests can be
/// rejected together; each must only drop the credential it was sent with,
/// never the fresh one another request's refresh just fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CredentialId(u64);

#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    /// Adds the credentials to one request.
    async fn authorize(&self, request: RequestBuilder) -> Result<Authorized, ProviderError>;

    /// Called after a 401 on a request sent with `rejected`: drop that
    /// credential if it is still cached and say whether a fresh one is worth
    /// exactly one more try. Static keys cannot refresh.
    async fn refresh(&self, _rejected: CredentialId) -> bool {
        false
    }
}

/// Fixed headers such as `Authorization: Bearer <key>` or `x-api-key`, all
/// marked sensitive so that neither reqwest nor hyper ever prints them.
#[derive(Clone)]
pub struct StaticHeaders {
    headers: HeaderMap,
}

impl std::fmt::Debug for StaticHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticHeaders(<redacted>)")
    }
}

/// A header value that cannot be built (a newline in a key): named by field,
/// never echoed.
#[derive(Debug, thiserror::Error)]
#[error("{field} contains characters that cannot be sent in an HTTP header (a stray newline or space?)")]
pub struct BadHeader {
    pub field: String,
}

impl StaticHeaders {
    /// `secret_headers` are marked sensitive; `plain` are sent as they are.
    pub fn new(
        secret_headers: &[(&'static str, String, &str)],
        plain: &[(&'static str, &'static str)],
    ) -> Result<Self, BadHeader> {
        let mut headers = HeaderMap::new();
        for (name, value, field) in secret_headers {
            let mut value = HeaderValue::from_str(value).map_err(|_| BadHeader {
                field: (*field).to_string(),
            })?;
            value.set_sensitive(true);
            headers.insert(HeaderName::from_static(name), value);
        }
        for (name, value) in plain {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        Ok(Self { headers })
    }

    /// `Authorization: <scheme> <secret>` (`Bearer`, `Key`, ...).
    pub fn authorization(scheme: &str, secret: &str, field: &str) -> Result<Self, BadHeader> {
        Self::new(&[(AUTHORIZATION.as_str(), format!("{scheme} {secret}"), field)], &[])
    }

    pub fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers
            .insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        self
    }
}

#[async_trait]
impl Authenticator for StaticHeaders {
    async fn authorize(&self, request: RequestBuilder) -> Result<Authorized, ProviderError> {
        Ok(Authorized {
            request: request.headers(self.headers.clone()),
            credential: CredentialId::default(),
        })
    }
}

/// A bearer token and how long it is good for.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires_in: Duration,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("value", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Where fresh tokens come from (a login endpoint, a JWT exchange).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    async fn fetch(&self) -> Result<Token, ProviderError>;
}

/// Renew this long before the provider's expiry, so a token never expires
/// between being attached and being checked.
const EXPIRY_MARGIN: Duration = Duration::from_secs(120);

/// Caches one token from a [`TokenSource`]; concurrent requests share one
/// fetch (the lock is held while fetching).
pub struct CachedToken {
    source: Arc<dyn TokenSource>,
    state: Mutex<TokenState>,
}

#[derive(Default)]
struct TokenState {
    cached: Option<CachedValue>,
    /// Ids handed out so far; each fetched token gets the next one.
    fetched: u64,
}

struct CachedValue {
    value: String,
    valid_until: Instant,
    id: CredentialId,
}

impl CachedToken {
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            state: Mutex::new(TokenState::default()),
        }
    }

    async fn current(&self) -> Result<(String, CredentialId), ProviderError> {
        let mut state = self.state.lock().await;
        if let Some(cached) = state.cached.as_ref() {
            if Instant::now() < cached.valid_until {
                return Ok((cached.value.clone(), cached.id));
            }
        }
        let token = self.source.fetch().await?;
        let lifetime = token
            .expires_in
            .saturating_sub(EXPIRY_MARGIN)
            .max(Duration::from_secs(1));
        state.fetched += 1;
        let id = CredentialId(state.fetched);
        state.cached = Some(CachedValue {
            value: token.value.clone(),
            valid_until: Instant::now() + lifetime,
            id,
        });
        Ok((token.value, id))
    }
}

#[async_trait]
impl Authenticator for CachedToken {
    async fn authorize(&self, request: RequestBuilder) -> Result<Authorized, ProviderError> {
        let (token, credential) = self.current().await?;
        let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| ProviderError::Malformed {
            account: String::new(),
            endpoint: "token".into(),
            detail: "the token endpoint returned a token that cannot be sent in a header".into(),
        })?;
        value.set_sensitive(true);
        Ok(Authorized {
            request: request.header(AUTHORIZATION, value),
            credential,
        })
    }

    async fn refresh(&self, rejected: CredentialId) -> bool {
        let mut state = self.state.lock().await;
        if state.cached.as_ref().is_some_and(|cached| cached.id == rejected) {
            state.cached = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Counting(AtomicU32, Duration);

    #[async_trait]
    impl TokenSource for Counting {
        async fn fetch(&self) -> Result<Token, ProviderError> {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(Token {
                value: format!("tok-{n}"),
                expires_in: self.1,
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_cached_until_shortly_before_expiry_and_refreshed_on_demand() {
        let source = Arc::new(Counting(AtomicU32::new(0), Duration::from_secs(3600)));
        let auth = CachedToken::new(source.clone());
        assert_eq!(auth.current().await.unwrap().0, "tok-1");
        assert_eq!(auth.current().await.unwrap().0, "tok-1");
        assert_eq!(source.0.load(Ordering::SeqCst), 1);
        // Within the margin of expiry: renewed.
        tokio::time::advance(Duration::from_secs(3600) - EXPIRY_MARGIN + Duration::from_secs(1)).await;
        let (value, second) = auth.current().await.unwrap();
        assert_eq!(value, "tok-2");
        // A 401 drops the cached token.
        assert!(auth.refresh(second).await);
        assert_eq!(auth.current().await.unwrap().0, "tok-3");
    }

    #[tokio::test]
    async fn a_401_only_drops_the_token_it_was_sent_with() {
        let source = Arc::new(Counting(AtomicU32::new(0), Duration::from_secs(3600)));
        let auth = CachedToken::new(source.clone());
        let (_, first) = auth.current().await.unwrap();
        // Two requests sent with the first token are both rejected: the
        // first refresh drops it, the second must keep the fresh one.
        assert!(auth.refresh(first).await);
        let (value, _) = auth.current().await.unwrap();
        assert_eq!(value, "tok-2");
        assert!(auth.refresh(first).await);
        assert_eq!(auth.current().await.unwrap().0, "tok-2");
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn static_keys_cannot_refresh_and_bad_values_name_the_field() {
        let auth = StaticHeaders::authorization("Bearer", "sk-FAKE-TEST", "credentials.api_key").unwrap();
        assert!(!auth.refresh(CredentialId::default()).await);
        assert!(!format!("{auth:?}").contains("sk-FAKE"));
        let err = StaticHeaders::authorization("Bearer", "sk-FAKE\nTEST", "credentials.api_key").unwrap_err();
        assert!(err.to_string().contains("credentials.api_key"));
        assert!(!err.to_string().contains("sk-FAKE"));
    }
}
