//! The broker (`ServerUrlV2`) and run-service calls (protocol-transport.md §4.3, §5.2, §6.1):
//! broker session create / delete, message poll and acknowledge; run-service `acquirejob`
//! (runner token), `renewjob` and `completejob` (job token).
//!
//! Both services answer errors with `{"source","errorKind","statusCode","errorMessage"}`,
//! decoded into [`ServiceError::Service`] so the listener can act on the error kind.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::http::{HttpClient, read_json};
use super::session::{PollStatus, RunnerIdentity, join_url, parse_poll_body, poll_query};
use super::{ClientError, TokenProvider};
use crate::protocol::lifecycle::{
    AcquireJobRequest, CompleteJobRequest, RenewJobRequest, RenewJobResponse,
};
use crate::protocol::message::{BrokerErrorBody, BrokerErrorKind, TaskAgentMessage};
use crate::protocol::session::TaskAgentSession;

const JSON_UTF8: &str = "application/json; charset=utf-8";

/// A failed broker or run-service call.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Transport failure, or a status without a service error document.
    #[error("service call failed")]
    Client(#[from] ClientError),
    /// The service answered an error document.
    #[error("service answered {status} ({kind}): {message}", kind = body.error_kind, message = body.error_message)]
    Service {
        /// HTTP status.
        status: StatusCode,
        /// The error document.
        body: BrokerErrorBody,
    },
}

impl ServiceError {
    /// The HTTP status, if the service answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ServiceError::Client(err) => err.status(),
            ServiceError::Service { status, .. } => Some(*status),
        }
    }

    /// The broker error kind, if any.
    pub fn kind(&self) -> Option<BrokerErrorKind> {
        match self {
            ServiceError::Service { body, .. } => Some(body.kind()),
            ServiceError::Client(_) => None,
        }
    }

    /// Whether a retry may succeed (transport errors, 408, 429, 5xx).
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::Client(err) => err.is_retryable(),
            ServiceError::Service { status, .. } => super::is_retryable_status(*status),
        }
    }
}

/// Sends `request`; non-2xx answers become [`ServiceError`]. With `tokens`, the runner's
/// access token is attached and refreshed once after a 401.
async fn send(
    http: &HttpClient,
    tokens: Option<&TokenProvider>,
    request: RequestBuilder,
) -> Result<Response, ServiceError> {
    let Some(tokens) = tokens else {
        return check(http.execute(request).await?).await;
    };
    let retry = request.try_clone();
    let token = tokens.token().await?;
    let resp = http.execute(request.bearer_auth(token.expose())).await?;
    match (resp.status(), retry) {
        (StatusCode::UNAUTHORIZED, Some(retry)) => {
            tracing::debug!("access token refused by the broker; refreshing");
            tokens.invalidate_token(&token);
            let token = tokens.token().await?;
            check(http.execute(retry.bearer_auth(token.expose())).await?).await
        }
        _ => check(resp).await,
    }
}

async fn check(resp: Response) -> Result<Response, ServiceError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let method = Method::GET;
    let raw = resp.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<BrokerErrorBody>(&raw) {
        Ok(body) if !body.source.is_empty() || !body.error_kind.is_empty() => {
            Err(ServiceError::Service { status, body })
        }
        _ => {
            let body = super::http::describe_error_body(&raw);
            let url = String::from("<service>");
            Err(ServiceError::Client(body.into_error(method, url, status)))
        }
    }
}

async fn body_bytes(resp: Response) -> Result<bytes::Bytes, ServiceError> {
    let url = resp.url().to_string();
    resp.bytes().await.map_err(|source| {
        ServiceError::Client(ClientError::Transport {
            method: Method::GET,
            url,
            source,
        })
    })
}

/// The broker, authenticated with the runner's OAuth token.
#[derive(Debug, Clone)]
pub struct BrokerClient {
    http: HttpClient,
    tokens: Arc<TokenProvider>,
    base: String,
}

impl BrokerClient {
    /// A client for the broker at `base` (`serverUrlV2` or a migration's `brokerBaseUrl`).
    pub fn new(http: HttpClient, tokens: Arc<TokenProvider>, base: &str) -> Self {
        BrokerClient {
            http,
            tokens,
            base: base.to_owned(),
        }
    }

    /// The broker base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ClientError> {
        let url = join_url(&self.base, path)?;
        Ok(self
            .http
            .request(method, url.as_str())
            .header(ACCEPT, "application/json"))
    }

    /// `POST {base}session`.
    pub async fn create_session(
        &self,
        identity: &RunnerIdentity,
        timeout: Duration,
    ) -> Result<TaskAgentSession, ServiceError> {
        let request = self
            .request(Method::POST, "session")?
            .header(CONTENT_TYPE, JSON_UTF8)
            .timeout(timeout)
            .body(serde_json::to_vec(&identity.session_request()).unwrap_or_default());
        let resp = send(&self.http, Some(&self.tokens), request).await?;
        Ok(read_json(resp).await?)
    }

    /// `DELETE {base}session?sessionId=` (the official client sends no id; third-party
    /// notes do, and a server ignoring it is unharmed).
    pub async fn delete_session(
        &self,
        session_id: &str,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let request = self
            .request(Method::DELETE, "session")?
            .query(&[("sessionId", session_id)])
            .timeout(timeout);
        send(&self.http, Some(&self.tokens), request)
            .await
            .map(drop)
    }

    /// `GET {base}message?...`; `None` when the broker had nothing.
    pub async fn get_message(
        &self,
        session_id: &str,
        status: PollStatus,
        identity: &RunnerIdentity,
        timeout: Duration,
    ) -> Result<Option<TaskAgentMessage>, ServiceError> {
        let request = self
            .request(Method::GET, "message")?
            .query(&poll_query(session_id, None, status, identity))
            .timeout(timeout);
        let resp = send(&self.http, Some(&self.tokens), request).await?;
        Ok(parse_poll_body(&body_bytes(resp).await?))
    }

    /// `POST {base}acknowledge?...` `{"runnerRequestId": ...}` (best effort).
    pub async fn acknowledge(
        &self,
        session_id: &str,
        runner_request_id: &str,
        status: PollStatus,
        identity: &RunnerIdentity,
        timeout: Duration,
    ) -> Result<(), ServiceError> {
        let body = serde_json::json!({ "runnerRequestId": runner_request_id });
        // The poll's parameters without `disableUpdate` (BrokerHttpClient.AcknowledgeRunnerRequestAsync).
        let mut query = poll_query(session_id, None, status, identity);
        query.retain(|(name, _)| *name != "disableUpdate");
        let request = self
            .request(Method::POST, "acknowledge")?
            .query(&query)
            .header(CONTENT_TYPE, JSON_UTF8)
            .timeout(timeout)
            .body(body.to_string());
        send(&self.http, Some(&self.tokens), request)
            .await
            .map(drop)
    }
}

/// `POST {run_service_url}acquirejob` with the runner token; returns the job message JSON.
pub async fn acquire_job(
    http: &HttpClient,
    tokens: &TokenProvider,
    run_service_url: &str,
    body: &AcquireJobRequest,
    timeout: Duration,
) -> Result<serde_json::Value, ServiceError> {
    let url = join_url(run_service_url, "acquirejob")?;
    let request = http
        .request(Method::POST, url.as_str())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, JSON_UTF8)
        .timeout(timeout)
        .body(serde_json::to_vec(body).unwrap_or_default());
    let resp = send(http, Some(tokens), request).await?;
    Ok(read_json(resp).await?)
}

/// `POST {system_url}renewjob` with the job token.
pub async fn renew_job(
    http: &HttpClient,
    system_url: &str,
    job_token: &str,
    body: &RenewJobRequest,
    timeout: Duration,
) -> Result<RenewJobResponse, ServiceError> {
    let request = job_request(http, system_url, "renewjob", job_token, timeout)?
        .body(serde_json::to_vec(body).unwrap_or_default());
    let resp = send(http, None, request).await?;
    let raw = body_bytes(resp).await?;
    // An empty answer is tolerated: the lock was renewed, expiry unknown.
    Ok(serde_json::from_slice(&raw).unwrap_or_default())
}

/// `POST {system_url}completejob` with the job token.
pub async fn complete_job(
    http: &HttpClient,
    system_url: &str,
    job_token: &str,
    body: &CompleteJobRequest,
    timeout: Duration,
) -> Result<(), ServiceError> {
    let request = job_request(http, system_url, "completejob", job_token, timeout)?
        .body(serde_json::to_vec(body).unwrap_or_default());
    send(http, None, request).await.map(drop)
}

fn job_request(
    http: &HttpClient,
    system_url: &str,
    path: &str,
    job_token: &str,
    timeout: Duration,
) -> Result<RequestBuilder, ClientError> {
    let url = join_url(system_url, path)?;
    Ok(http
        .request(Method::POST, url.as_str())
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, JSON_UTF8)
        .bearer_auth(job_token)
        .timeout(timeout))
}
