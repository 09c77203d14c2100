//! The session message envelope (`TaskAgentMessage`) and the bodies the listener understands
//! (protocol-transport.md §5.1–5.4), plus the broker's error document. No I/O, no crypto: the
//! listener decrypts `body` first when the envelope carries an `iv`.
//!
//! [`ListenerMessage::decode`] turns a message type and its plaintext body into a typed value;
//! unknown types become [`ListenerMessage::Unknown`] (logged, acknowledged, skipped), never an
//! error.

use serde::{Deserialize, Serialize};

/// Message type names (`messageType`), compared case-insensitively.
pub mod types {
    /// A full job message (legacy path).
    pub const PIPELINE_AGENT_JOB_REQUEST: &str = "PipelineAgentJobRequest";
    /// A reference to a job held by the run service (broker path).
    pub const RUNNER_JOB_REQUEST: &str = "RunnerJobRequest";
    /// Cancel a running job.
    pub const JOB_CANCELLATION: &str = "JobCancellation";
    /// Poll the broker from now on.
    pub const BROKER_MIGRATION: &str = "BrokerMigration";
    /// Self-update request (legacy).
    pub const AGENT_REFRESH: &str = "AgentRefresh";
    /// Self-update request (broker).
    pub const RUNNER_REFRESH: &str = "RunnerRefresh";
    /// Drop the cached OAuth token.
    pub const FORCE_TOKEN_REFRESH: &str = "ForceTokenRefresh";
    /// Hosted runners: shut down.
    pub const RUNNER_SHUTDOWN: &str = "RunnerShutdown";
    /// Configuration refresh into `*_migrated` files (not supported).
    pub const RUNNER_REFRESH_CONFIG: &str = "RunnerRefreshConfig";
}

/// The envelope of every polled message (`TaskAgentMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskAgentMessage {
    /// Id; becomes `lastMessageId` of the next legacy poll and the id of the DELETE. Broker ids
    /// are random and may be negative.
    #[serde(alias = "MessageId")]
    pub message_id: i64,
    /// The type, see [`types`].
    #[serde(alias = "MessageType")]
    pub message_type: String,
    /// Base64 IV when `body` is encrypted with the session key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "IV",
        alias = "Iv"
    )]
    pub iv: Option<String>,
    /// The body: base64 ciphertext when `iv` is set, else JSON text.
    #[serde(default, alias = "Body")]
    pub body: String,
}

impl TaskAgentMessage {
    /// Whether the body must be decrypted (a non-empty `iv`).
    pub fn is_encrypted(&self) -> bool {
        self.iv.as_deref().is_some_and(|iv| !iv.is_empty())
    }
}

/// Body of `RunnerJobRequest` (snake_case on the wire; `RunnerJobRequestRef.cs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerJobRequestRef {
    /// The job id.
    #[serde(default, alias = "Id")]
    pub id: String,
    /// The id `acquirejob` wants as `jobMessageId`, and `acknowledge` as `runnerRequestId`.
    #[serde(alias = "runnerRequestId", alias = "RunnerRequestId")]
    pub runner_request_id: String,
    /// Whether the broker wants an acknowledge call.
    #[serde(default, alias = "shouldAcknowledge", alias = "ShouldAcknowledge")]
    pub should_acknowledge: bool,
    /// Base URL of the run service (`acquirejob`).
    #[serde(default, alias = "runServiceUrl", alias = "RunServiceUrl")]
    pub run_service_url: String,
    /// Billing owner, echoed to `acquirejob` and `completejob`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "billingOwnerId",
        alias = "BillingOwnerId"
    )]
    pub billing_owner_id: Option<String>,
}

/// Body of `JobCancellation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCancellation {
    /// The job to cancel.
    #[serde(alias = "JobId")]
    pub job_id: String,
    /// Grace before a hard kill, as a .NET TimeSpan (`"00:05:00"`).
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Timeout")]
    pub timeout: Option<String>,
}

/// Body of `BrokerMigration` (and the session's `brokerMigrationMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerMigration {
    /// Base URL of the broker to poll.
    #[serde(alias = "BrokerBaseUrl")]
    pub broker_base_url: String,
}

/// Body of `AgentRefresh` (legacy self-update; we never self-update).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRefresh {
    /// The runner id.
    #[serde(default, alias = "AgentId")]
    pub agent_id: u64,
    /// The version the service wants.
    #[serde(default, alias = "TargetVersion")]
    pub target_version: String,
    /// Update deadline.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "Timeout")]
    pub timeout: Option<String>,
}

/// Body of `RunnerRefresh` (broker self-update; snake_case; ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerRefresh {
    /// The version the service wants.
    #[serde(default, alias = "targetVersion", alias = "TargetVersion")]
    pub target_version: String,
    /// Where the package is.
    #[serde(default, alias = "downloadUrl", alias = "DownloadUrl")]
    pub download_url: String,
    /// Its checksum.
    #[serde(default, alias = "sha256Checksum", alias = "Sha256Checksum")]
    pub sha256_checksum: String,
    /// Target OS.
    #[serde(default, alias = "Os")]
    pub os: String,
}

/// Body of `RunnerShutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerShutdown {
    /// Why.
    #[serde(default, alias = "Reason")]
    pub reason: String,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum ListenerMessage {
    /// A full job message (legacy path), as JSON: the listener types and validates it once
    /// ([`crate::protocol::job::AgentJobRequestMessage::from_delivered`]), and reads the ids
    /// of a message that does not validate from this value so the job can still be completed.
    PipelineAgentJobRequest(serde_json::Value),
    /// A run-service job reference (broker path).
    RunnerJobRequest(RunnerJobRequestRef),
    /// Cancel a job.
    JobCancellation(JobCancellation),
    /// Switch polling to the broker.
    BrokerMigration(BrokerMigration),
    /// Legacy self-update (ignored).
    AgentRefresh(AgentRefresh),
    /// Broker self-update (ignored).
    RunnerRefresh(RunnerRefresh),
    /// Drop the cached token.
    ForceTokenRefresh,
    /// Shut down (hosted runners).
    RunnerShutdown(RunnerShutdown),
    /// A type we do not handle (logged and acknowledged).
    Unknown {
        /// The `messageType`.
        message_type: String,
    },
}

/// A message body that did not parse as its type says.
#[derive(Debug, thiserror::Error)]
#[error("message body of type {message_type} is not valid")]
pub struct MessageDecodeError {
    /// The `messageType`.
    pub message_type: String,
    /// The JSON error.
    #[source]
    pub source: serde_json::Error,
}

impl ListenerMessage {
    /// Decodes a plaintext body by message type (case-insensitive). A leading BOM is ignored.
    pub fn decode(message_type: &str, body: &str) -> Result<ListenerMessage, MessageDecodeError> {
        let body = body.trim_start_matches('\u{feff}');
        let err = |source| MessageDecodeError {
            message_type: message_type.to_owned(),
            source,
        };
        let is = |name: &str| message_type.eq_ignore_ascii_case(name);
        let parse_value = || serde_json::from_str::<serde_json::Value>(body).map_err(err);
        Ok(if is(types::PIPELINE_AGENT_JOB_REQUEST) {
            let value = parse_value()?;
            if !value.is_object() {
                return Err(err(serde::de::Error::custom(
                    "job message is not an object",
                )));
            }
            ListenerMessage::PipelineAgentJobRequest(value)
        } else if is(types::RUNNER_JOB_REQUEST) {
            ListenerMessage::RunnerJobRequest(serde_json::from_str(body).map_err(err)?)
        } else if is(types::JOB_CANCELLATION) {
            ListenerMessage::JobCancellation(serde_json::from_str(body).map_err(err)?)
        } else if is(types::BROKER_MIGRATION) {
            ListenerMessage::BrokerMigration(serde_json::from_str(body).map_err(err)?)
        } else if is(types::AGENT_REFRESH) {
            ListenerMessage::AgentRefresh(serde_json::from_str(body).map_err(err)?)
        } else if is(types::RUNNER_REFRESH) {
            ListenerMessage::RunnerRefresh(serde_json::from_str(body).map_err(err)?)
        } else if is(types::FORCE_TOKEN_REFRESH) {
            ListenerMessage::ForceTokenRefresh
        } else if is(types::RUNNER_SHUTDOWN) {
            let shutdown = if body.trim().is_empty() {
                RunnerShutdown {
                    reason: String::new(),
                }
            } else {
                serde_json::from_str(body).map_err(err)?
            };
            ListenerMessage::RunnerShutdown(shutdown)
        } else {
            ListenerMessage::Unknown {
                message_type: message_type.to_owned(),
            }
        })
    }
}

/// Error document of the broker and the run service
/// (`{"source":"actions-broker-listener","errorKind":"...","statusCode":404,"errorMessage":"..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BrokerErrorBody {
    /// Which service (`actions-broker-listener`, `actions-run-service`).
    #[serde(default, alias = "Source")]
    pub source: String,
    /// Broker error kind, see [`BrokerErrorKind`].
    #[serde(default, skip_serializing_if = "String::is_empty", alias = "ErrorKind")]
    pub error_kind: String,
    /// HTTP status repeated.
    #[serde(default, alias = "StatusCode")]
    pub status_code: u16,
    /// Human-readable message.
    #[serde(default, alias = "ErrorMessage")]
    pub error_message: String,
}

/// The broker error kinds the listener acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerErrorKind {
    /// The runner was deleted: exit.
    RunnerNotFound,
    /// Our version is refused: fatal.
    RunnerVersionTooOld,
    /// Hosted runner removed: exit.
    HostedRunnerDeprovisioned,
    /// The session is gone: recreate it.
    RunnerSessionInvalid,
    /// Acknowledge of a job that no longer exists.
    AcknowledgeJobNotFound,
    /// Anything else (retry).
    Other,
}

impl BrokerErrorBody {
    /// The kind, compared case-insensitively.
    pub fn kind(&self) -> BrokerErrorKind {
        let is = |name: &str| self.error_kind.eq_ignore_ascii_case(name);
        if is("RunnerNotFound") {
            BrokerErrorKind::RunnerNotFound
        } else if is("RunnerVersionTooOld") {
            BrokerErrorKind::RunnerVersionTooOld
        } else if is("HostedRunnerDeprovisioned") {
            BrokerErrorKind::HostedRunnerDeprovisioned
        } else if is("RunnerSessionInvalid") {
            BrokerErrorKind::RunnerSessionInvalid
        } else if is("AcknowledgeJobNotFound") {
            BrokerErrorKind::AcknowledgeJobNotFound
        } else {
            BrokerErrorKind::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_known_type() {
        let job = ListenerMessage::decode(
            "PipelineAgentJobRequest",
            "\u{feff}{\"jobId\":\"j\",\"plan\":{}}",
        )
        .unwrap();
        assert!(matches!(job, ListenerMessage::PipelineAgentJobRequest(v) if v["jobId"] == "j"));
        let job = ListenerMessage::decode(
            "runnerjobrequest",
            r#"{"id":"1","runner_request_id":"r","should_acknowledge":true,"run_service_url":"http://x/"}"#,
        )
        .unwrap();
        assert!(matches!(job, ListenerMessage::RunnerJobRequest(r)
            if r.runner_request_id == "r" && r.should_acknowledge && r.billing_owner_id.is_none()));
        let cancel =
            ListenerMessage::decode("JobCancellation", r#"{"JobId":"j","Timeout":"00:05:00"}"#)
                .unwrap();
        assert!(matches!(cancel, ListenerMessage::JobCancellation(c) if c.job_id == "j"));
        let migrate =
            ListenerMessage::decode("BrokerMigration", r#"{"brokerBaseUrl":"http://b/"}"#).unwrap();
        assert!(
            matches!(migrate, ListenerMessage::BrokerMigration(m) if m.broker_base_url == "http://b/")
        );
        assert_eq!(
            ListenerMessage::decode("ForceTokenRefresh", "").unwrap(),
            ListenerMessage::ForceTokenRefresh
        );
        assert!(matches!(
            ListenerMessage::decode("RunnerShutdown", "").unwrap(),
            ListenerMessage::RunnerShutdown(_)
        ));
    }

    #[test]
    fn unknown_types_are_not_errors() {
        assert_eq!(
            ListenerMessage::decode("JobMetadata", "not even json").unwrap(),
            ListenerMessage::Unknown {
                message_type: "JobMetadata".into()
            }
        );
    }

    #[test]
    fn bad_bodies_are_errors_with_the_type() {
        let err = ListenerMessage::decode("JobCancellation", "{\"x\":").unwrap_err();
        assert_eq!(err.message_type, "JobCancellation");
        assert!(ListenerMessage::decode("PipelineAgentJobRequest", "[1]").is_err());
        assert!(ListenerMessage::decode("RunnerJobRequest", "{}").is_err());
    }

    #[test]
    fn envelope_reads_both_casings() {
        let m: TaskAgentMessage =
            serde_json::from_str(r#"{"MessageId":-5,"MessageType":"X","IV":"","Body":"{}"}"#)
                .unwrap();
        assert_eq!(m.message_id, -5);
        assert!(!m.is_encrypted());
        let m: TaskAgentMessage =
            serde_json::from_str(r#"{"messageId":1,"messageType":"X","iv":"AAAA","body":"b"}"#)
                .unwrap();
        assert!(m.is_encrypted());
    }

    #[test]
    fn broker_error_kinds() {
        let e: BrokerErrorBody = serde_json::from_str(
            r#"{"source":"actions-broker-listener","errorKind":"runnerSessionInvalid","statusCode":404,"errorMessage":"m"}"#,
        )
        .unwrap();
        assert_eq!(e.kind(), BrokerErrorKind::RunnerSessionInvalid);
        assert_eq!(BrokerErrorBody::default().kind(), BrokerErrorKind::Other);
    }
}
