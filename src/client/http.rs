//! The shared HTTP client of all GitHub traffic: one reqwest client (rustls, timeouts from
//! [`Timeouts`]) that puts the current User-Agent on every request it builds, retries retryable
//! failures per its [`RetryPolicy`] (or sends once, for callers that retry whole operations),
//! turns non-success answers into [`ClientError::Status`] (decoding VSS `WrappedException`,
//! GitHub REST and OAuth error bodies), and attaches the runner's OAuth token with one refresh
//! after a 401.
//!
//! Requests and headers are never logged (they carry tokens); only method, URL (without its
//! query: signed URLs carry credentials there) and status are.

use std::sync::{Arc, RwLock};

use reqwest::header::{AUTHORIZATION, HeaderValue, USER_AGENT};
use reqwest::{Method, Request, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::auth::TokenProvider;
/// The client's retry policy (the one type of `client::retry`, re-exported where callers of the
/// client have always found it).
pub use super::retry::RetryPolicy;
use super::timeouts::Timeouts;
use super::{ClientError, is_retryable_status};
use crate::protocol::lenient;
use crate::protocol::vss::WrappedException;

/// Largest JSON answer read (job messages with many steps are a few MiB at most); a larger one
/// fails with [`ClientError::AnswerTooLarge`] instead of growing memory without bound.
pub const MAX_JSON_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read to describe a failed request.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// Longest error-body excerpt kept in a [`ClientError::Status`] message.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// The User-Agent for runner version `version`:
/// `GitHubActionsRunner-<OS>-<ARCH>/<version> ghrunner-vm/<crate version>`. GitHub's answers
/// depend on one being present (protocol §0.4).
pub fn user_agent_for(version: &str) -> String {
    let os = match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "OSX",
        "windows" => "Windows",
        other => other,
    };
    format!(
        "GitHubActionsRunner-{os}-{}/{version} ghrunner-vm/{}",
        runner_arch(),
        env!("CARGO_PKG_VERSION")
    )
}

/// The User-Agent of an [`HttpClient`] and its clones, kept on the advertised runner version
/// by [`crate::version::VersionPolicy::bind`].
#[derive(Debug, Clone)]
pub struct UserAgent(Arc<RwLock<HeaderValue>>);

impl UserAgent {
    fn new(version: &str) -> UserAgent {
        UserAgent(Arc::new(RwLock::new(Self::value(version))))
    }

    fn value(version: &str) -> HeaderValue {
        HeaderValue::from_str(&user_agent_for(version))
            .unwrap_or_else(|_| HeaderValue::from_static("GitHubActionsRunner ghrunner-vm"))
    }

    /// Advertises `version` from the next request on.
    pub fn set_runner_version(&self, version: &str) {
        let value = Self::value(version);
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }

    /// The header value now.
    pub fn current(&self) -> HeaderValue {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The runner architecture label: `X64`, `X86`, `ARM64` or `ARM`.
pub fn runner_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "X64",
        "x86" => "X86",
        "aarch64" => "ARM64",
        "arm" => "ARM",
        other => other,
    }
}

/// The shared HTTP client. Cheap to clone (clones share the User-Agent).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    retry: RetryPolicy,
    agent: UserAgent,
}

impl HttpClient {
    /// A client with the default User-Agent, timeouts and retry policy.
    pub fn new() -> Result<Self, ClientError> {
        Self::with_retry(RetryPolicy::DEFAULT)
    }

    /// A client with a custom retry policy.
    pub fn with_retry(retry: RetryPolicy) -> Result<Self, ClientError> {
        let baseline = crate::version::BASELINE.to_string();
        let client = reqwest::Client::builder()
            .user_agent(user_agent_for(&baseline))
            .connect_timeout(Timeouts::OFFICIAL.connect)
            .timeout(Timeouts::OFFICIAL.request)
            .build()
            .map_err(ClientError::Build)?;
        Ok(HttpClient {
            client,
            retry,
            agent: UserAgent::new(&baseline),
        })
    }

    /// The User-Agent this client (and its clones) sends.
    pub fn user_agent(&self) -> UserAgent {
        self.agent.clone()
    }

    /// A request builder for `method url`, carrying the current User-Agent. Every request to
    /// GitHub starts here.
    pub fn request<U: reqwest::IntoUrl>(&self, method: Method, url: U) -> RequestBuilder {
        self.client
            .request(method, url)
            .header(USER_AGENT, self.agent.current())
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Sends a request, retrying transport failures and retryable statuses; returns the last
    /// response whatever its status. A body that cannot be cloned (a stream) is sent once.
    pub async fn execute(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        Ok(self.execute_with_method(request).await?.1)
    }

    async fn execute_with_method(
        &self,
        request: RequestBuilder,
    ) -> Result<(Method, Response), ClientError> {
        self.execute_with(self.retry, request).await
    }

    /// Sends per `retry`: transport failures and retryable statuses are tried again while
    /// attempts are left; a body that cannot be cloned (a stream) is sent once.
    async fn execute_with(
        &self,
        retry: RetryPolicy,
        request: RequestBuilder,
    ) -> Result<(Method, Response), ClientError> {
        let request = request.build().map_err(|source| ClientError::Transport {
            method: Method::GET,
            url: String::from("<invalid request>"),
            source,
        })?;
        let method = request.method().clone();
        if retry.attempts <= 1 || request.try_clone().is_none() {
            return Ok((method, self.execute_once(request).await?));
        }
        let outcome = retry
            .run_while(
                || {
                    let copy = request.try_clone();
                    async move {
                        match copy {
                            Some(copy) => self.execute_once(copy).await,
                            None => unreachable!("the request was cloned before"),
                        }
                    }
                },
                |outcome, attempt| {
                    let again = match outcome {
                        Ok(resp) => is_retryable_status(resp.status()),
                        Err(err) => err.is_retryable(),
                    };
                    if again {
                        let status = outcome.as_ref().ok().map(|r| r.status().as_u16());
                        tracing::debug!(
                            method = %request.method(), url = %redact_url(request.url()), attempt,
                            ?status, "retrying request"
                        );
                    }
                    again
                },
            )
            .await;
        Ok((method, outcome?))
    }

    async fn execute_once(&self, request: Request) -> Result<Response, ClientError> {
        let method = request.method().clone();
        let url = redact_url(request.url());
        match self.client.execute(request).await {
            Ok(resp) => {
                tracing::debug!(%method, %url, status = resp.status().as_u16(), "http response");
                Ok(resp)
            }
            Err(source) => Err(classify(method, url, source)),
        }
    }

    /// Sends a request (with retries) and fails on a non-success status.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let (method, resp) = self.execute_with_method(request).await?;
        error_for_status(&method, resp).await
    }

    /// Sends a request once (no retry: for callers that retry the whole operation, see
    /// [`RetryPolicy::run`]) and fails on a non-success status.
    pub async fn send_once(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let (method, resp) = self.execute_with(RetryPolicy::NONE, request).await?;
        error_for_status(&method, resp).await
    }

    /// Sends a request (with retries) and decodes a JSON answer.
    pub async fn send_json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ClientError> {
        read_json(self.send(request).await?).await
    }

    /// Sends a request with `Authorization: Bearer <access token>`; on a 401 the token is
    /// invalidated, refreshed, and the request retried once.
    pub async fn send_authorized(
        &self,
        tokens: &TokenProvider,
        request: RequestBuilder,
    ) -> Result<Response, ClientError> {
        let retry_copy = request.try_clone();
        let token = tokens.token().await?;
        let (method, resp) = self
            .execute_with_method(with_bearer(request, token.expose()))
            .await?;
        match (resp.status(), retry_copy) {
            (StatusCode::UNAUTHORIZED, Some(copy)) => {
                tracing::debug!(url = %redact_url(resp.url()), "access token refused; refreshing");
                tokens.invalidate_token(&token);
                let token = tokens.token().await?;
                let resp = self.execute(with_bearer(copy, token.expose())).await?;
                error_for_status(&method, resp).await
            }
            _ => error_for_status(&method, resp).await,
        }
    }
}

/// `request` with `Authorization: Bearer <token>` (marked sensitive); a token that is not a
/// valid header value is left off (the server then answers 401).
pub(crate) fn with_bearer(request: RequestBuilder, token: &str) -> RequestBuilder {
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(mut value) => {
            value.set_sensitive(true);
            request.header(AUTHORIZATION, value)
        }
        // A token with control characters cannot be sent; the server will answer 401.
        Err(_) => request,
    }
}

/// The URL without query and fragment, for errors and logs (signed blob URLs carry their
/// credentials in the query).
pub fn redact_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

fn classify(method: Method, url: String, source: reqwest::Error) -> ClientError {
    if source.is_timeout() {
        ClientError::Timeout {
            method,
            url,
            source,
        }
    } else if source.is_connect() {
        ClientError::Unreachable { url, source }
    } else {
        ClientError::Transport {
            method,
            url,
            source,
        }
    }
}

/// Passes a success response through; turns any other into [`ClientError::Status`] with the
/// server's message and VSS `typeKey`.
pub async fn error_for_status(method: &Method, resp: Response) -> Result<Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let url = redact_url(resp.url());
    // At most the first MAX_ERROR_BODY_BYTES: enough to describe the error.
    let body = read_capped(resp, MAX_ERROR_BODY_BYTES, &url)
        .await
        .or_else(|e| match e {
            Capped::TooLarge(partial) => Ok(partial),
            Capped::Failed(err) => Err(err),
        })
        .unwrap_or_default();
    Err(describe_error_body(&body).into_error(method.clone(), url, status))
}

/// What an error body says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// VSS `typeKey`.
    pub type_key: Option<String>,
    /// The message.
    pub message: Option<String>,
    /// VSS `errorCode` (e.g. 1 on an `AccessDeniedException` for a deprecated runner version).
    pub error_code: Option<u64>,
}

impl ErrorBody {
    /// The [`ClientError::Status`] of a request that got this body.
    pub fn into_error(self, method: Method, url: String, status: StatusCode) -> ClientError {
        ClientError::Status {
            method,
            url,
            status,
            type_key: self.type_key,
            message: self.message,
            error_code: self.error_code,
        }
    }
}

/// Reads an error body: a VSS `WrappedException`, a GitHub REST `{"message"}`, an OAuth
/// `{"error","error_description"}`, or the start of a text body.
pub fn describe_error_body(body: &[u8]) -> ErrorBody {
    if let Ok(value) = lenient::from_slice::<serde_json::Value>(body) {
        if let Ok(wrapped) = serde_json::from_value::<WrappedException>(value.clone())
            && (wrapped.type_key.is_some() || wrapped.message.is_some())
        {
            return ErrorBody {
                type_key: wrapped.type_key,
                message: wrapped.message,
                error_code: wrapped.error_code,
            };
        }
        let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        if let Some(msg) = field("error_description").or_else(|| field("error")) {
            return ErrorBody {
                message: Some(msg),
                ..ErrorBody::default()
            };
        }
    }
    let text = String::from_utf8_lossy(lenient::strip_bom(body));
    let text = text.trim();
    ErrorBody {
        message: (!text.is_empty()).then(|| text.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()),
        ..ErrorBody::default()
    }
}

/// Decodes a JSON response body (BOM stripped).
pub async fn read_json<T: DeserializeOwned>(resp: Response) -> Result<T, ClientError> {
    let url = redact_url(resp.url());
    let too_large = || ClientError::AnswerTooLarge {
        url: url.clone(),
        limit: MAX_JSON_ANSWER_BYTES,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_JSON_ANSWER_BYTES as u64)
    {
        return Err(too_large());
    }
    let body = read_capped(resp, MAX_JSON_ANSWER_BYTES, &url)
        .await
        .map_err(|e| match e {
            Capped::TooLarge(_) => too_large(),
            Capped::Failed(err) => err,
        })?;
    lenient::from_slice(&body).map_err(|source| ClientError::Decode { url, source })
}

/// Why [`read_capped`] stopped.
enum Capped {
    /// Over the limit: the first `limit` bytes.
    TooLarge(Vec<u8>),
    /// The body could not be read.
    Failed(ClientError),
}

/// Reads a response body chunk by chunk, stopping at `limit` bytes.
async fn read_capped(mut resp: Response, limit: usize, url: &str) -> Result<Vec<u8>, Capped> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    body.extend_from_slice(&chunk[..limit - body.len()]);
                    return Err(Capped::TooLarge(body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(source) => {
                return Err(Capped::Failed(ClientError::Transport {
                    method: Method::GET,
                    url: url.to_owned(),
                    source,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_names_the_runner_and_us_and_follows_the_version() {
        let ua = user_agent_for("2.336.0");
        assert!(ua.starts_with("GitHubActionsRunner-"), "{ua}");
        assert!(ua.contains("/2.336.0 ghrunner-vm/"), "{ua}");
        let http = HttpClient::new().unwrap();
        let clone = http.clone();
        http.user_agent().set_runner_version("2.339.1");
        let request = clone
            .request(Method::GET, "http://127.0.0.1/")
            .build()
            .unwrap();
        let sent = request.headers()[USER_AGENT].to_str().unwrap().to_owned();
        assert!(sent.contains("/2.339.1 ghrunner-vm/"), "{sent}");
    }

    #[test]
    fn error_bodies_are_described() {
        let body = describe_error_body(
            br#"{"$id":"1","message":"taken","typeKey":"TaskAgentSessionConflictException"}"#,
        );
        assert_eq!(
            body.type_key.as_deref(),
            Some("TaskAgentSessionConflictException")
        );
        assert_eq!(body.message.as_deref(), Some("taken"));
        let body = describe_error_body(
            br#"{"message":"Runner version v2.330.0 is deprecated","typeKey":"AccessDeniedException","errorCode":1}"#,
        );
        assert_eq!(body.error_code, Some(1));
        let body = describe_error_body(br#"{"error":"invalid_client","error_description":"gone"}"#);
        assert_eq!(body.message.as_deref(), Some("gone"));
        let body = describe_error_body(b"plain failure\n");
        assert_eq!(body.message.as_deref(), Some("plain failure"));
        assert_eq!(describe_error_body(b""), ErrorBody::default());
    }

    #[test]
    fn redact_drops_the_signature() {
        let url = reqwest::Url::parse("https://acct.blob/c/b?sv=1&sig=secret#frag").unwrap();
        assert_eq!(redact_url(&url), "https://acct.blob/c/b");
    }

    /// Serves one raw HTTP/1.1 answer with a chunked body of `size` bytes of `x`.
    async fn serve_once(status: &'static str, size: usize) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 4096];
            let _ = conn.read(&mut request).await;
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            let _ = conn.write_all(head.as_bytes()).await;
            for _ in 0..size / 1024 {
                let _ = conn.write_all(b"400\r\n").await;
                let _ = conn.write_all(&[b'x'; 1024]).await;
                let _ = conn.write_all(b"\r\n").await;
            }
            let _ = conn.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/answer")
    }

    #[tokio::test]
    async fn answers_are_read_up_to_a_limit() {
        let url = serve_once("200 OK", 8 * 1024).await;
        let resp = reqwest::get(&url).await.unwrap();
        match read_capped(resp, 4096, &url).await {
            Err(Capped::TooLarge(partial)) => assert_eq!(partial.len(), 4096),
            _ => panic!("an 8 KiB body is over a 4 KiB limit"),
        }
        let url = serve_once("200 OK", 2 * 1024).await;
        let resp = reqwest::get(&url).await.unwrap();
        assert!(matches!(read_capped(resp, 4096, &url).await, Ok(b) if b.len() == 2048));
        // An error body longer than the limit still gives a Status error, from its start.
        let url = serve_once("500 Internal Server Error", 256 * 1024).await;
        let resp = reqwest::get(&url).await.unwrap();
        let err = error_for_status(&Method::GET, resp).await.unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(err.to_string().contains("xxxx"), "{err}");
    }
}
