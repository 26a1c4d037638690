//! Machinery every adapter shares, written once: HTTP (pool, auth, retry,
//! rate limit, size cap, redirects), the paging loop with its guards, checks
//! on measures, redaction, lenient JSON readers and typed account settings.

pub mod auth;
pub mod guards;
pub mod http;
pub mod identity;
pub mod json;
pub mod paging;
pub mod redact;
pub mod retry;
pub mod settings;
pub mod tree;

pub use auth::{Authenticator, Authorized, CachedToken, CredentialId, StaticHeaders, Token, TokenSource};
pub use guards::MeasurePolicy;
pub use http::{HttpSetup, HttpStats, ProviderHttp, RequestRate, RetryPolicy};
pub use paging::{Page, PageBucket, PageError, Pager, Spread};
pub use redact::Redactor;
pub use retry::{RetryClassifier, StandardClassifier, Verdict};
