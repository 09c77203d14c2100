//! The legacy (VSS) pool service calls of the listener and of legacy jobs
//! (protocol-transport.md §4.1–4.2, §5.1, §6.2): session create / delete, the message long
//! poll and delete, job-request renew / finish, and the `JobCompleted` plan event.
//!
//! Routes are the canonical templates of the fallback table (§0.3) joined to the runner's
//! `serverUrl`. Every call goes through [`HttpClient`] (whose retries the listener turns off:
//! it owns the back-off); runner-token calls refresh the token once after a 401.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use url::Url;

use super::http::{HttpClient, read_json};
use super::{ClientError, TokenProvider};
use crate::protocol::TaskResult;
use crate::protocol::lifecycle::{
    EMPTY_LOCK_TOKEN, JobCompletedEvent, JobRequestFinish, JobRequestRenew, TaskAgentJobRequest,
    format_timestamp,
};
use crate::protocol::message::TaskAgentMessage;
use crate::protocol::session::{SessionAgent, TaskAgentSession};

/// api-version of sessions, message delete and job requests.
const API_5_1: &str = "5.1-preview.1";
/// api-version of the message GET.
const API_MESSAGES_GET: &str = "6.0-preview.1";
/// api-version of plan events.
const API_PLAN_EVENTS: &str = "2.0-preview.1";

/// The runner as the service sees it in sessions and poll queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerIdentity {
    /// Agent (runner) id.
    pub agent_id: u64,
    /// Runner name.
    pub agent_name: String,
    /// Pool (runner group) id.
    pub pool_id: u64,
    /// The version we report (`runnerVersion`).
    pub version: String,
    /// `Linux`, `Windows` or `macOS`.
    pub os: String,
    /// `X64`, `X86`, `ARM` or `ARM64`.
    pub architecture: String,
    /// `"<host> (PID: <pid>)"`.
    pub owner_name: String,
}

impl RunnerIdentity {
    /// The session-create body for this runner.
    pub fn session_request(&self) -> TaskAgentSession {
        let agent = SessionAgent {
            id: self.agent_id,
            name: self.agent_name.clone(),
            version: self.version.clone(),
            os_description: format!("{} {}", self.os, std::env::consts::ARCH),
            status: 0.into(),
        };
        TaskAgentSession::create_request(agent, self.owner_name.clone())
    }
}

/// The runner status reported with each poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollStatus {
    /// Idle, ready for a job.
    Online,
    /// Running a job (polls continue so cancellations arrive).
    Busy,
}

impl PollStatus {
    /// The .NET enum name sent as `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            PollStatus::Online => "Online",
            PollStatus::Busy => "Busy",
        }
    }
}

/// The query of a message poll (legacy and broker): `sessionId`, `lastMessageId` (legacy,
/// when known), `status`, `runnerVersion`, `os`, `architecture`, `disableUpdate=true` (we
/// never self-update).
pub fn poll_query(
    session_id: &str,
    last_message_id: Option<i64>,
    status: PollStatus,
    identity: &RunnerIdentity,
) -> Vec<(&'static str, String)> {
    let mut query = vec![("sessionId", session_id.to_owned())];
    if let Some(id) = last_message_id {
        query.push(("lastMessageId", id.to_string()));
    }
    query.extend([
        ("status", status.as_str().to_owned()),
        ("runnerVersion", identity.version.clone()),
        ("os", identity.os.clone()),
        ("architecture", identity.architecture.clone()),
        ("disableUpdate", "true".to_owned()),
    ]);
    query
}

/// Joins `relative` to `base` as RFC 3986 does, after making sure `base` ends in `/`.
pub fn join_url(base: &str, relative: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: base.to_owned(),
        reason: reason.to_owned(),
    };
    let base = if base.ends_with('/') {
        Url::parse(base)
    } else {
        Url::parse(&format!("{base}/"))
    }
    .map_err(|_| invalid("not an absolute URL"))?;
    base.join(relative)
        .map_err(|_| invalid("cannot join a path"))
}

/// Parses a poll answer: any 2xx with an empty or non-JSON body is "no message".
pub fn parse_poll_body(body: &[u8]) -> Option<TaskAgentMessage> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    serde_json::from_slice(body).ok()
}

/// The legacy pool service, authenticated with the runner's OAuth token.
#[derive(Debug, Clone)]
pub struct LegacyClient {
    http: HttpClient,
    tokens: Arc<TokenProvider>,
    server_url: String,
    pool_id: u64,
}

impl LegacyClient {
    /// A client for `server_url` (the registration's `serverUrl`) and pool.
    pub fn new(
        http: HttpClient,
        tokens: Arc<TokenProvider>,
        server_url: &str,
        pool_id: u64,
    ) -> Self {
        LegacyClient {
            http,
            tokens,
            server_url: server_url.to_owned(),
            pool_id,
        }
    }

    fn url(&self, path: &str) -> Result<Url, ClientError> {
        join_url(
            &self.server_url,
            &format!("_apis/distributedtask/pools/{}/{path}", self.pool_id),
        )
    }

    fn request(&self, method: Method, url: Url, api: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, url.as_str())
            .header(ACCEPT, format!("application/json; api-version={api}"))
    }

    /// Creates a session (`POST .../sessions`).
    pub async fn create_session(
        &self,
        identity: &RunnerIdentity,
        timeout: Duration,
    ) -> Result<TaskAgentSession, ClientError> {
        let body = serde_json::to_vec(&identity.session_request()).unwrap_or_default();
        let request = self
            .request(Method::POST, self.url("sessions")?, API_5_1)
            .header(CONTENT_TYPE, json_content_type(API_5_1))
            .timeout(timeout)
            .body(body);
        read_json(self.http.send_authorized(&self.tokens, request).await?).await
    }

    /// Deletes a session (`DELETE .../sessions/{id}`).
    pub async fn delete_session(
        &self,
        session_id: &str,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = self
            .request(
                Method::DELETE,
                self.url(&format!("sessions/{session_id}"))?,
                API_5_1,
            )
            .timeout(timeout);
        self.http
            .send_authorized(&self.tokens, request)
            .await
            .map(drop)
    }

    /// One long poll; `None` when the server had nothing.
    pub async fn get_message(
        &self,
        query: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<Option<TaskAgentMessage>, ClientError> {
        let request = self
            .request(Method::GET, self.url("messages")?, API_MESSAGES_GET)
            .query(query)
            .timeout(timeout);
        let resp = self.http.send_authorized(&self.tokens, request).await?;
        let url = resp.url().to_string();
        let body = resp
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                method: Method::GET,
                url,
                source,
            })?;
        Ok(parse_poll_body(&body))
    }

    /// Deletes (acknowledges) a processed message.
    pub async fn delete_message(
        &self,
        session_id: &str,
        message_id: i64,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let request = self
            .request(
                Method::DELETE,
                self.url(&format!("messages/{message_id}"))?,
                API_5_1,
            )
            .query(&[("sessionId", session_id)])
            .timeout(timeout);
        self.http
            .send_authorized(&self.tokens, request)
            .await
            .map(drop)
    }

    /// Renews a legacy job request's lock.
    pub async fn renew_job_request(
        &self,
        request_id: i64,
        timeout: Duration,
    ) -> Result<TaskAgentJobRequest, ClientError> {
        let body = JobRequestRenew { request_id };
        self.patch_job_request(request_id, &body, timeout).await
    }

    /// Finishes a legacy job request (plan version < 8).
    pub async fn finish_job_request(
        &self,
        request_id: i64,
        result: TaskResult,
        timeout: Duration,
    ) -> Result<TaskAgentJobRequest, ClientError> {
        let body = JobRequestFinish {
            request_id,
            finish_time: format_timestamp(chrono::Utc::now()),
            result,
        };
        self.patch_job_request(request_id, &body, timeout).await
    }

    /// Reads a legacy job request (`GET .../jobrequests/{id}`): its `result` is set once the
    /// server considers it finished (the official `GetAgentRequestAsync`).
    pub async fn get_job_request(
        &self,
        request_id: i64,
        timeout: Duration,
    ) -> Result<TaskAgentJobRequest, ClientError> {
        let url = self.url(&format!("jobrequests/{request_id}"))?;
        let request = self.request(Method::GET, url, API_5_1).timeout(timeout);
        read_json(self.http.send_authorized(&self.tokens, request).await?).await
    }

    async fn patch_job_request<B: serde::Serialize>(
        &self,
        request_id: i64,
        body: &B,
        timeout: Duration,
    ) -> Result<TaskAgentJobRequest, ClientError> {
        let url = self.url(&format!("jobrequests/{request_id}"))?;
        let request = self
            .request(Method::PATCH, url, API_5_1)
            .query(&[("lockToken", EMPTY_LOCK_TOKEN)])
            .header(CONTENT_TYPE, json_content_type(API_5_1))
            .timeout(timeout)
            .body(serde_json::to_vec(body).unwrap_or_default());
        read_json(self.http.send_authorized(&self.tokens, request).await?).await
    }
}

/// Where a legacy job's plan lives (for plan events), from the job message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanLocation {
    /// `plan.scopeIdentifier`.
    pub scope_identifier: String,
    /// `plan.planType` (the hub name).
    pub plan_type: String,
    /// `plan.planId`.
    pub plan_id: String,
}

/// Raises the `JobCompleted` plan event with the job token (plan version ≥ 8).
pub async fn post_job_completed(
    http: &HttpClient,
    system_url: &str,
    job_token: &str,
    plan: &PlanLocation,
    event: &JobCompletedEvent,
    timeout: Duration,
) -> Result<(), ClientError> {
    let path = format!(
        "{}/_apis/distributedtask/hubs/{}/plans/{}/events",
        plan.scope_identifier, plan.plan_type, plan.plan_id
    );
    let url = join_url(system_url, &path)?;
    let request = http
        .request(Method::POST, url.as_str())
        .header(
            ACCEPT,
            format!("application/json; api-version={API_PLAN_EVENTS}"),
        )
        .header(CONTENT_TYPE, json_content_type(API_PLAN_EVENTS))
        .bearer_auth(job_token)
        .timeout(timeout)
        .body(serde_json::to_vec(event).unwrap_or_default());
    http.send(request).await.map(drop)
}

fn json_content_type(api: &str) -> String {
    format!("application/json; charset=utf-8; api-version={api}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> RunnerIdentity {
        RunnerIdentity {
            agent_id: 42,
            agent_name: "build-01".into(),
            pool_id: 1,
            version: "2.330.0".into(),
            os: "Linux".into(),
            architecture: "X64".into(),
            owner_name: "host (PID: 1)".into(),
        }
    }

    #[test]
    fn poll_query_has_the_official_parameters() {
        let q = poll_query("s-1", Some(7), PollStatus::Busy, &identity());
        let pairs: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            pairs,
            [
                ("sessionId", "s-1"),
                ("lastMessageId", "7"),
                ("status", "Busy"),
                ("runnerVersion", "2.330.0"),
                ("os", "Linux"),
                ("architecture", "X64"),
                ("disableUpdate", "true"),
            ]
        );
        let first = poll_query("s-1", None, PollStatus::Online, &identity());
        assert!(first.iter().all(|(k, _)| *k != "lastMessageId"));
    }

    #[test]
    fn join_keeps_the_base_path() {
        let u = join_url("http://h:1/tenant", "_apis/x").unwrap();
        assert_eq!(u.as_str(), "http://h:1/tenant/_apis/x");
        let u = join_url("http://h:1/broker/", "message").unwrap();
        assert_eq!(u.as_str(), "http://h:1/broker/message");
        assert!(join_url("not a url", "x").is_err());
    }

    #[test]
    fn empty_or_non_json_poll_bodies_are_no_message() {
        assert!(parse_poll_body(b"").is_none());
        assert!(parse_poll_body(b"  \n").is_none());
        assert!(parse_poll_body(b"<html>").is_none());
        let m =
            parse_poll_body(b"\xEF\xBB\xBF{\"messageId\":3,\"messageType\":\"X\",\"body\":\"{}\"}")
                .unwrap();
        assert_eq!(m.message_id, 3);
    }

    #[test]
    fn session_request_describes_the_runner() {
        let body = serde_json::to_value(identity().session_request()).unwrap();
        assert_eq!(body["agent"]["id"], 42);
        assert_eq!(body["ownerName"], "host (PID: 1)");
    }
}
