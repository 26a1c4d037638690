//! The AWS SDK's HTTP, routed through the platform: every request the SDK
//! clients (Cost Explorer, CloudWatch, STS) send goes through the account's
//! [`ProviderHttp`], so it is counted, rate limited, retried by the same rules
//! as every other adapter's (429 / 5xx / cut bodies, `Retry-After`), its size
//! capped and its error text redacted. The SDK's own retries are off (one
//! retry loop, not two multiplying each other); its signing, serialization
//! and parsing stay the SDK's.
//!
//! A non-2xx answer never reaches the SDK: it becomes a [`ProviderError`]
//! carried inside the SDK's dispatch error and taken out again by
//! [`provider_error`], so the adapter returns the platform's typed failure
//! (auth, throttled, ...) rather than an SDK error string.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Mutex;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

use crate::providers::platform::retry::{default_verdict, retry_after, RetryClassifier, Verdict};
use crate::providers::{FailureKind, ProviderError, ProviderHttp};

/// The SDK's HTTP client for one account.
#[derive(Clone)]
pub struct PlatformHttpClient {
    http: ProviderHttp,
}

impl PlatformHttpClient {
    pub fn new(http: ProviderHttp) -> Self {
        Self { http }
    }
}

impl fmt::Debug for PlatformHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlatformHttpClient({})", self.http.account())
    }
}

impl HttpClient for PlatformHttpClient {
    fn http_connector(&self, _: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for PlatformHttpClient {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let http = self.http.clone();
        HttpConnectorFuture::new(async move { send(&http, request).await })
    }
}

/// The three wire protocols the clients speak, told apart by the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wire {
    /// Cost Explorer: awsJson1.1.
    Json,
    /// CloudWatch: Smithy RPC v2 CBOR.
    Cbor,
    /// STS: awsQuery (form in, XML out).
    Query,
}

impl Wire {
    fn of(request: &HttpRequest) -> Wire {
        let content_type = request.headers().get("content-type").unwrap_or_default();
        if content_type.contains("cbor") || request.headers().contains_key("smithy-protocol") {
            Wire::Cbor
        } else if content_type.contains("json") {
            Wire::Json
        } else {
            Wire::Query
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Wire::Json => "application/x-amz-json-1.1",
            Wire::Cbor => "application/cbor",
            Wire::Query => "text/xml",
        }
    }

    /// A 2xx body that is not complete is a cut transfer: retried.
    fn decoder(self) -> fn(bytes::Bytes) -> Result<bytes::Bytes, String> {
        match self {
            Wire::Json => |body| {
                serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                    .map(|_| body.clone())
                    .map_err(|e| format!("response body is not complete JSON ({} bytes): {e}", body.len()))
            },
            Wire::Cbor => |body| {
                let mut decoder = minicbor::Decoder::new(&body);
                match decoder.skip() {
                    Ok(()) if decoder.position() == body.len() => Ok(body.clone()),
                    Ok(()) => Err(format!(
                        "response body has {} bytes after its CBOR value",
                        body.len() - decoder.position()
                    )),
                    Err(e) => Err(format!(
                        "response body is not complete CBOR ({} bytes): {e}",
                        body.len()
                    )),
                }
            },
            Wire::Query => |body| {
                let text = String::from_utf8_lossy(&body);
                if text.trim_end().ends_with("Response>") {
                    Ok(body.clone())
                } else {
                    Err(format!(
                        "response body is not a complete XML answer ({} bytes)",
                        body.len()
                    ))
                }
            },
        }
    }
}

/// The operation a request calls (`GetCostAndUsage`, `GetMetricData`,
/// `AssumeRole`), named in errors and logs.
pub fn operation(request: &HttpRequest) -> String {
    if let Some(target) = request.headers().get("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let uri = request.uri();
    if let Some(at) = uri.find("/operation/") {
        return uri[at + "/operation/".len()..]
            .split(['?', '/'])
            .next()
            .unwrap_or_default()
            .to_string();
    }
    let body = request.body().bytes().unwrap_or_default();
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("aws")
        .to_string()
}

async fn send(http: &ProviderHttp, request: HttpRequest) -> Result<HttpResponse, ConnectorError> {
    let wire = Wire::of(&request);
    let endpoint = operation(&request);
    let method = reqwest::Method::from_bytes(request.method().as_bytes())
        .map_err(|e| ConnectorError::other(Box::new(e), None))?;
    let url = request.uri().to_string();
    let mut headers = HeaderMap::new();
    for (name, value) in request.headers().iter() {
        let (Ok(name), Ok(mut value)) = (
            reqwest::header::HeaderName::from_bytes(name.as_bytes()),
            reqwest::header::HeaderValue::from_str(value),
        ) else {
            continue;
        };
        if name == reqwest::header::AUTHORIZATION || name.as_str() == "x-amz-security-token" {
            value.set_sensitive(true);
        }
        headers.append(name, value);
    }
    let body = bytes::Bytes::copy_from_slice(request.body().bytes().unwrap_or_default());
    let answer = http
        .send(
            &endpoint,
            |client| {
                client
                    .request(method.clone(), &url)
                    .headers(headers.clone())
                    .body(body.clone())
            },
            wire.decoder(),
        )
        .await
        .map_err(|e| ConnectorError::other(Box::new(Carried::new(e)), None))?;
    let mut response = HttpResponse::new(
        aws_smithy_runtime_api::http::StatusCode::try_from(200).expect("200 is a status"),
        SdkBody::from(answer),
    );
    response.headers_mut().insert("content-type", wire.content_type());
    if wire == Wire::Cbor {
        response.headers_mut().insert("smithy-protocol", "rpc-v2-cbor");
    }
    Ok(response)
}

/// A [`ProviderError`] travelling through the SDK's error types.
pub struct Carried(Mutex<Option<ProviderError>>);

impl Carried {
    pub fn new(error: ProviderError) -> Self {
        Self(Mutex::new(Some(error)))
    }

    fn describe(&self) -> String {
        match &*self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => e.to_string(),
            None => "(taken)".to_string(),
        }
    }
}

impl fmt::Debug for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Display for Carried {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl StdError for Carried {}

/// The platform's error inside an SDK error, if one is there (taken out:
/// each error is read once).
pub fn provider_error(error: &(dyn StdError + 'static)) -> Option<ProviderError> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(carried) = e.downcast_ref::<Carried>() {
            return carried.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        current = e.source();
    }
    None
}

/// AWS's error codes: throttling is often a 400 (`ThrottlingException`,
/// Cost Explorer's `LimitExceededException`), and credential problems come
/// as 400 or 403 with a code naming them.
#[derive(Clone, Copy, Debug, Default)]
pub struct AwsClassifier;

const THROTTLING: &[&str] = &[
    "Throttling",
    "LimitExceededException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
];

const AUTH: &[&str] = &[
    "ExpiredToken",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AccessDenied",
    "NotAuthorized",
];

impl RetryClassifier for AwsClassifier {
    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &str) -> Verdict {
        if (status == StatusCode::BAD_REQUEST || status == StatusCode::TOO_MANY_REQUESTS)
            && THROTTLING.iter().any(|code| body.contains(code))
        {
            return Verdict::Retry {
                kind: FailureKind::Throttled,
                wait: retry_after(headers),
            };
        }
        if (status == StatusCode::BAD_REQUEST || status == StatusCode::FORBIDDEN)
            && AUTH.iter().any(|code| body.contains(code))
        {
            return Verdict::Fail(FailureKind::Auth);
        }
        default_verdict(status, headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_bedrock_classifier_reads_aws_error_codes() {
        let none = HeaderMap::new();
        let c = AwsClassifier;
        assert!(matches!(
            c.classify(
                StatusCode::BAD_REQUEST,
                &none,
                r#"{"__type":"LimitExceededException","message":"Rate exceeded"}"#
            ),
            Verdict::Retry {
                kind: FailureKind::Throttled,
                ..
            }
        ));
        assert_eq!(
            c.classify(StatusCode::BAD_REQUEST, &none, "<Code>ExpiredToken</Code>"),
            Verdict::Fail(FailureKind::Auth)
        );
        assert_eq!(
            c.classify(StatusCode::FORBIDDEN, &none, r#"{"__type":"AccessDeniedException"}"#),
            Verdict::Fail(FailureKind::Auth)
        );
        assert_eq!(
            c.classify(
                StatusCode::BAD_REQUEST,
                &none,
                r#"{"__type":"InvalidNextTokenException"}"#
            ),
            Verdict::Fail(FailureKind::Request)
        );
        assert!(matches!(
            c.classify(StatusCode::SERVICE_UNAVAILABLE, &none, ""),
            Verdict::Retry {
                kind: FailureKind::ProviderServer,
                ..
            }
        ));
    }
}
