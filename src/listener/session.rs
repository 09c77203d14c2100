//! The listener's session: create (legacy with the unwrapped AES key, or broker) with the
//! official retry policy, persist its id in `<registration>/.session`, delete it on shutdown
//! and delete a stale one at the next start; open (decrypt + decode) messages; classify
//! failures.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Listener, ListenerError, sleep_or};
use crate::client::ClientError;
use crate::client::VssErrorKind;
use crate::client::backoff::{SessionCreatePolicy, SessionRetry};
use crate::client::broker::ServiceError;
use crate::crypto::session::{SessionCryptoError, SessionKey};
use crate::job::lifecycle::JobExecutor;
use crate::protocol::message::{
    BrokerErrorKind, ListenerMessage, MessageDecodeError, TaskAgentMessage,
};
use crate::protocol::session::TaskAgentSession;

/// File (in the registration directory) holding the id of the session in use.
pub const SESSION_FILE: &str = ".session";

/// A live session.
#[derive(Debug, Clone)]
pub(super) enum Session {
    /// A legacy pool session, with its AES key when the service sent one.
    Legacy { id: String, key: Option<SessionKey> },
    /// A broker session at `url`.
    Broker { id: String, url: String },
}

/// The persisted session reference.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionFile {
    session_id: String,
    #[serde(default)]
    broker_url: Option<String>,
}

/// A message that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    /// The body did not decrypt.
    #[error("message body does not decrypt")]
    Decrypt(#[source] SessionCryptoError),
    /// The message is encrypted but the session has no key.
    #[error("message is encrypted but the session has no key")]
    NoKey,
    /// The plaintext is not a valid body of its type.
    #[error("message body is not valid")]
    Decode(#[source] MessageDecodeError),
}

impl Session {
    pub(super) fn id(&self) -> &str {
        match self {
            Session::Legacy { id, .. } | Session::Broker { id, .. } => id,
        }
    }

    pub(super) fn is_broker(&self) -> bool {
        matches!(self, Session::Broker { .. })
    }

    pub(super) fn broker_url(&self) -> Option<&str> {
        match self {
            Session::Broker { url, .. } => Some(url),
            Session::Legacy { .. } => None,
        }
    }

    /// Decrypts (when the envelope has an IV) and decodes a message.
    pub(super) fn open(&self, message: &TaskAgentMessage) -> Result<ListenerMessage, OpenError> {
        let text = if message.is_encrypted() {
            let key = match self {
                Session::Legacy { key: Some(key), .. } => key,
                _ => return Err(OpenError::NoKey),
            };
            let iv = message.iv.as_deref().unwrap_or_default();
            key.decrypt_message(iv, &message.body)
                .map_err(OpenError::Decrypt)?
        } else {
            message.body.clone()
        };
        ListenerMessage::decode(&message.message_type, &text).map_err(OpenError::Decode)
    }
}

/// How a failed call is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Another session holds the runner.
    Conflict,
    /// The session expired: create a new one.
    SessionGone,
    /// The runner or registration was deleted: exit 3.
    RegistrationGone,
    /// Access denied: exit 1.
    Refused,
    /// A bare 403 from the broker: refused when creating a session; on a poll it is retried
    /// (actions/runner #4633 removed the shim that read it as "version too old").
    Forbidden,
    /// The advertised runner version is refused (`RunnerVersionTooOld`, or the legacy
    /// service's version exceptions).
    VersionRejected,
    /// Anything else: back off and retry.
    Transient,
}

/// Classifies a broker, run-service or legacy failure.
pub(super) fn classify(err: &ServiceError) -> Failure {
    match err {
        ServiceError::Service { status, body } => match body.kind() {
            BrokerErrorKind::RunnerNotFound | BrokerErrorKind::HostedRunnerDeprovisioned => {
                Failure::RegistrationGone
            }
            BrokerErrorKind::RunnerVersionTooOld => Failure::VersionRejected,
            BrokerErrorKind::RunnerSessionInvalid => Failure::SessionGone,
            _ if *status == StatusCode::CONFLICT => Failure::Conflict,
            _ if *status == StatusCode::FORBIDDEN => Failure::Forbidden,
            _ => Failure::Transient,
        },
        ServiceError::Client(err) => classify_client(err),
    }
}

fn classify_client(err: &ClientError) -> Failure {
    if err.is_registration_deleted() {
        return Failure::RegistrationGone;
    }
    if err.is_version_rejection() {
        return Failure::VersionRejected;
    }
    match err.vss_kind() {
        Some(VssErrorKind::SessionConflict) => Failure::Conflict,
        Some(VssErrorKind::SessionExpired) => Failure::SessionGone,
        Some(VssErrorKind::AgentNotFound | VssErrorKind::PoolNotFound) => Failure::RegistrationGone,
        Some(VssErrorKind::AccessDenied) => Failure::Refused,
        _ if err.status() == Some(StatusCode::CONFLICT) => Failure::Conflict,
        _ => Failure::Transient,
    }
}

impl<E: JobExecutor> Listener<E> {
    fn session_file(&self) -> PathBuf {
        self.cfg.state_dir.join(SESSION_FILE)
    }

    /// Deletes the session a previous run left behind (crash, kill -9), so it causes no
    /// conflict.
    pub(super) async fn delete_stale_session(&self) {
        let path = self.session_file();
        let Ok(bytes) = std::fs::read(&path) else {
            return;
        };
        if let Ok(stale) = serde_json::from_slice::<SessionFile>(&bytes) {
            tracing::info!(session_id = %stale.session_id, "deleting the session of a previous run");
            let session = match stale.broker_url {
                Some(url) => Session::Broker {
                    id: stale.session_id,
                    url,
                },
                None => Session::Legacy {
                    id: stale.session_id,
                    key: None,
                },
            };
            self.delete_session(&session).await;
        }
        let _ = std::fs::remove_file(&path);
    }

    /// Creates a session with the official retry policy; `None` if `shutdown` fired first.
    pub(super) async fn create_session(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Session>, ListenerError> {
        let timings = &self.cfg.timings;
        let mut policy = SessionCreatePolicy::default();
        loop {
            let attempt = self.try_create_session().await;
            let err = match attempt {
                Ok(session) => {
                    self.persist(&session);
                    tracing::info!(session_id = session.id(), "session created");
                    return Ok(Some(session));
                }
                Err(err) => err,
            };
            self.metrics.poll_error();
            let delay = match classify(&err) {
                Failure::Conflict => match policy.on_conflict(timings) {
                    SessionRetry::RetryAfter(delay) => {
                        tracing::warn!(
                            ?delay,
                            "session conflict: another process holds this runner"
                        );
                        delay
                    }
                    SessionRetry::GiveUp => return Err(ListenerError::SessionConflict),
                },
                Failure::RegistrationGone => {
                    return Err(ListenerError::RegistrationGone {
                        source: Box::new(err),
                    });
                }
                Failure::Refused | Failure::Forbidden => {
                    return Err(ListenerError::Refused {
                        source: Box::new(err),
                    });
                }
                Failure::VersionRejected => {
                    return self.on_version_rejected(None, &err, shutdown).await;
                }
                Failure::SessionGone | Failure::Transient => {
                    let delay = policy.on_transient(timings);
                    tracing::warn!(error = %err, ?delay, "cannot create a session, retrying");
                    delay
                }
            };
            if !sleep_or(shutdown, delay).await {
                return Ok(None);
            }
        }
    }

    async fn try_create_session(&self) -> Result<Session, ServiceError> {
        let timeout = self.cfg.timings.timeouts.short_call;
        self.adopt_current_version();
        let identity = self.identity();
        if let Some(url) = &self.cfg.broker_url {
            let created = self.broker(url).create_session(&identity, timeout).await?;
            return Ok(Session::Broker {
                id: created.session_id,
                url: url.clone(),
            });
        }
        let created = self
            .legacy
            .create_session(&identity, timeout)
            .await
            .map_err(ServiceError::Client)?;
        let key = self.unwrap_key(&created);
        if key.is_none() && created.encryption_key.is_some() {
            // A session whose messages we cannot read is useless: drop it and retry later.
            let session = Session::Legacy {
                id: created.session_id,
                key: None,
            };
            self.delete_session(&session).await;
            return Err(ServiceError::Client(ClientError::UnsupportedCredential {
                reason: "the session key cannot be unwrapped with this runner's key".into(),
            }));
        }
        Ok(Session::Legacy {
            id: created.session_id,
            key,
        })
    }

    fn unwrap_key(&self, session: &TaskAgentSession) -> Option<SessionKey> {
        let wire = session.encryption_key.as_ref()?;
        match SessionKey::unwrap(
            self.key.private_key(),
            wire.encrypted,
            &wire.value,
            session.use_fips_encryption,
        ) {
            Ok(key) => Some(key),
            Err(err) => {
                tracing::error!(error = %err, "cannot unwrap the session key");
                None
            }
        }
    }

    fn persist(&self, session: &Session) {
        let file = SessionFile {
            session_id: session.id().to_owned(),
            broker_url: session.broker_url().map(str::to_owned),
        };
        let bytes = serde_json::to_vec(&file).unwrap_or_default();
        if let Err(err) = crate::config::fs::write_atomic(&self.session_file(), &bytes) {
            tracing::warn!(error = %err, "cannot record the session id");
        }
    }

    /// Deletes a session (errors are logged only) and forgets the persisted id.
    pub(super) async fn delete_session(&self, session: &Session) {
        let timeout = self.cfg.timings.timeouts.short_call;
        let result = match session {
            Session::Legacy { id, .. } => self
                .legacy
                .delete_session(id, timeout)
                .await
                .map_err(ServiceError::Client),
            Session::Broker { id, url } => self.broker(url).delete_session(id, timeout).await,
        };
        match result {
            Ok(()) => tracing::info!(session_id = session.id(), "session deleted"),
            Err(err) => {
                tracing::warn!(session_id = session.id(), error = %err, "cannot delete the session")
            }
        }
        let _ = std::fs::remove_file(self.session_file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::message::BrokerErrorBody;
    use reqwest::Method;

    fn vss(status: u16, key: &str) -> ServiceError {
        ServiceError::Client(ClientError::Status {
            method: Method::GET,
            url: "http://x/".into(),
            status: StatusCode::from_u16(status).unwrap(),
            type_key: Some(key.into()),
            message: None,
            error_code: None,
        })
    }

    fn broker(status: u16, kind: &str) -> ServiceError {
        ServiceError::Service {
            status: StatusCode::from_u16(status).unwrap(),
            body: BrokerErrorBody {
                source: "actions-broker-listener".into(),
                error_kind: kind.into(),
                status_code: status,
                error_message: String::new(),
            },
        }
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            classify(&vss(409, "TaskAgentSessionConflictException")),
            Failure::Conflict
        );
        assert_eq!(
            classify(&vss(404, "TaskAgentSessionExpiredException")),
            Failure::SessionGone
        );
        assert_eq!(
            classify(&vss(404, "TaskAgentNotFoundException")),
            Failure::RegistrationGone
        );
        assert_eq!(classify(&vss(503, "")), Failure::Transient);
        assert_eq!(
            classify(&broker(404, "RunnerSessionInvalid")),
            Failure::SessionGone
        );
        assert_eq!(
            classify(&broker(404, "RunnerNotFound")),
            Failure::RegistrationGone
        );
        assert_eq!(classify(&broker(409, "")), Failure::Conflict);
        assert_eq!(classify(&broker(500, "Internal")), Failure::Transient);
        assert_eq!(
            classify(&broker(403, "RunnerVersionTooOld")),
            Failure::VersionRejected
        );
        assert_eq!(classify(&broker(403, "")), Failure::Forbidden);
        assert_eq!(
            classify(&vss(400, "TaskAgentVersionNotSupportedException")),
            Failure::VersionRejected
        );
    }
}
