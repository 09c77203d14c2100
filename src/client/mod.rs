//! The wire's one home: every HTTP call to GitHub — registration, OAuth, sessions, broker,
//! run service, legacy job routes, and the job's reporting (timeline, logs, results service,
//! signed blob uploads) — goes through [`http::HttpClient`], with one retry policy, one timeout
//! table, one User-Agent and one TLS setup.
//!
//! - [`http::HttpClient`]: the one shared reqwest client (rustls, the current User-Agent on
//!   every request, error bodies decoded into [`ClientError`]).
//! - [`retry::RetryPolicy`]: attempts and pauses, per call site: the client's own HTTP-level
//!   retries (registration: 3×, 0.5–2 s jitter) or a caller's whole operation (reporting: 5×,
//!   1 s doubling to 8 s, each attempt sent with [`http::HttpClient::send_once`]).
//! - [`timeouts::Timeouts`]: the time limit of every kind of call.
//! - [`backoff`]: the listener's and job lifecycle's schedules (poll errors, renewals, …).
//! - [`auth::TokenProvider`]: the runner's OAuth access token (client-assertion JWT exchange,
//!   caching, refresh on demand and after a 401).
//! - [`url::GitHubUrl`]: which REST API and scope a `--url` designates.
//! - [`registration`]: register and remove runners (legacy and runner-admin flows).
//! - [`actions`]: resolve `uses:` actions (run service and legacy route) and download their
//!   tarballs; [`locations`]: VSS location discovery (OPTIONS `_apis/`).
//!
//! ```text
//!   HttpClient::request ──► (User-Agent of the advertised runner version)
//!        │
//!        ├── send / execute ──► retry per the client's RetryPolicy (none on 4xx) ──► Response
//!        ├── send_once ──► one attempt (the caller's RetryPolicy::run retries the operation)
//!        └── send_authorized(TokenProvider): Bearer; 401 ⇒ invalidate, refresh, retry once
//!                                                            non-2xx ⇒ ClientError::Status
//! ```

use reqwest::{Method, StatusCode};

use crate::crypto::CryptoError;

pub mod actions;
pub mod auth;
pub mod backoff;
pub mod broker;
pub mod http;
pub mod locations;
pub mod registration;
pub mod retry;
pub mod session;
pub mod timeouts;
pub mod url;

pub use auth::TokenProvider;
pub use http::HttpClient;
pub use retry::RetryPolicy;
pub use timeouts::Timeouts;
pub use url::GitHubUrl;

/// Errors talking to GitHub or the Actions service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached (DNS, refused, reset).
    #[error("cannot reach {url}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The request timed out.
    #[error("{method} {url} timed out")]
    Timeout {
        /// The method.
        method: Method,
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The connection broke during the exchange, or the request could not be built.
    #[error("{method} {url} failed")]
    Transport {
        /// The method.
        method: Method,
        /// The URL requested.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    #[error("{method} {url} returned {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        /// The method.
        method: Method,
        /// The URL requested.
        url: String,
        /// The status.
        status: StatusCode,
        /// VSS `WrappedException.typeKey`, if the body was one.
        type_key: Option<String>,
        /// The server's message (`message`, `error_description` or the start of the body).
        message: Option<String>,
        /// VSS `errorCode`, if the body was a wrapped exception that had one.
        error_code: Option<u64>,
    },
    /// The answer was not the JSON we expected.
    #[error("cannot decode the answer of {url}")]
    Decode {
        /// The URL requested.
        url: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The answer is larger than any the protocol sends (read no further).
    #[error("the answer of {url} is larger than {limit} bytes")]
    AnswerTooLarge {
        /// The URL requested.
        url: String,
        /// The limit.
        limit: usize,
    },
    /// A URL is not a repository, organisation or enterprise URL.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The token endpoint says the registration does not exist any more.
    #[error(
        "the runner registration was deleted on the server ({description}): register the runner again"
    )]
    RegistrationDeleted {
        /// The server's description.
        description: String,
    },
    /// The token endpoint refused the client assertion.
    #[error("the token endpoint {url} refused the runner's credential: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    TokenRefused {
        /// The token endpoint.
        url: String,
        /// OAuth error code.
        error: String,
        /// OAuth error description.
        description: Option<String>,
    },
    /// The client assertion could not be built.
    #[error("cannot build the OAuth client assertion")]
    Assertion(#[source] CryptoError),
    /// The credential is not one this client can use.
    #[error("unsupported credential: {reason}")]
    UnsupportedCredential {
        /// What is unsupported.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// Known VSS exception kinds (`WrappedException.typeKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VssErrorKind {
    /// Another process holds the runner's session.
    SessionConflict,
    /// The session expired.
    SessionExpired,
    /// The runner does not exist.
    AgentNotFound,
    /// The runner group does not exist.
    PoolNotFound,
    /// The job does not exist.
    JobNotFound,
    /// The job token expired.
    JobTokenExpired,
    /// The access token expired.
    AccessTokenExpired,
    /// Access denied.
    AccessDenied,
    /// The runner's version is not supported.
    VersionNotSupported,
}

impl VssErrorKind {
    /// Maps a `typeKey` to a kind.
    pub fn from_type_key(key: &str) -> Option<Self> {
        Some(match key {
            "TaskAgentSessionConflictException" => VssErrorKind::SessionConflict,
            "TaskAgentSessionExpiredException" => VssErrorKind::SessionExpired,
            "TaskAgentNotFoundException" => VssErrorKind::AgentNotFound,
            "TaskAgentPoolNotFoundException" => VssErrorKind::PoolNotFound,
            "TaskAgentJobNotFoundException" => VssErrorKind::JobNotFound,
            "TaskAgentJobTokenExpiredException" => VssErrorKind::JobTokenExpired,
            "TaskAgentAccessTokenExpiredException" => VssErrorKind::AccessTokenExpired,
            "AccessDeniedException" => VssErrorKind::AccessDenied,
            "TaskAgentVersionNotSupportedException" => VssErrorKind::VersionNotSupported,
            _ => return None,
        })
    }
}

impl ClientError {
    /// Whether retrying the same request may succeed: unreachable server, timeouts, broken
    /// connections, 408, 429 and 5xx except 501. Never 404 or other 4xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. }
            | ClientError::Timeout { .. }
            | ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => is_retryable_status(*status),
            _ => false,
        }
    }

    /// The URL requested (without its query), if the error concerns one request.
    pub fn url(&self) -> Option<&str> {
        match self {
            ClientError::Unreachable { url, .. }
            | ClientError::Timeout { url, .. }
            | ClientError::Transport { url, .. }
            | ClientError::Status { url, .. }
            | ClientError::Decode { url, .. }
            | ClientError::AnswerTooLarge { url, .. }
            | ClientError::TokenRefused { url, .. } => Some(url),
            _ => None,
        }
    }

    /// The HTTP status, if the server answered.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the server answered 401.
    pub fn is_unauthorized(&self) -> bool {
        self.status() == Some(StatusCode::UNAUTHORIZED)
    }

    /// The VSS `typeKey` of the error body, if any.
    pub fn type_key(&self) -> Option<&str> {
        match self {
            ClientError::Status { type_key, .. } => type_key.as_deref(),
            _ => None,
        }
    }

    /// The known VSS exception kind of the error body, if any.
    pub fn vss_kind(&self) -> Option<VssErrorKind> {
        self.type_key().and_then(VssErrorKind::from_type_key)
    }

    /// Whether the service refuses the runner's version: a VSS
    /// `TaskAgentVersionNotSupportedException`, or an `AccessDeniedException` with error code 1
    /// (the official client's "Runner version vX is deprecated and cannot receive messages").
    pub fn is_version_rejection(&self) -> bool {
        match self {
            ClientError::Status { error_code, .. } => match self.vss_kind() {
                Some(VssErrorKind::VersionNotSupported) => true,
                Some(VssErrorKind::AccessDenied) => *error_code == Some(1),
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether the error means the registration is gone (exit code 3).
    pub fn is_registration_deleted(&self) -> bool {
        matches!(self, ClientError::RegistrationDeleted { .. })
    }
}

/// Statuses worth retrying.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, type_key: Option<&str>) -> ClientError {
        ClientError::Status {
            method: Method::GET,
            url: "http://x/".into(),
            status: StatusCode::from_u16(code).unwrap(),
            type_key: type_key.map(str::to_owned),
            message: Some("boom".into()),
            error_code: None,
        }
    }

    #[test]
    fn retryable_classification() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(status(code, None).is_retryable(), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 501] {
            assert!(!status(code, None).is_retryable(), "{code}");
        }
        assert!(status(401, None).is_unauthorized());
        assert_eq!(status(404, None).status(), Some(StatusCode::NOT_FOUND));
    }

    #[test]
    fn type_keys_map_to_kinds() {
        let e = status(409, Some("TaskAgentSessionConflictException"));
        assert_eq!(e.vss_kind(), Some(VssErrorKind::SessionConflict));
        assert_eq!(status(404, Some("Nope")).vss_kind(), None);
        assert_eq!(e.to_string(), "GET http://x/ returned 409 Conflict: boom");
    }
}
