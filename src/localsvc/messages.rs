//! Local service: the legacy long poll (AES-CBC encrypted with the session key, random IV per
//! message), message delete, the broker poll (plain text) and acknowledge. An idle poll is held
//! for the configured time and answered `202 Accepted` with an empty body. After
//! [`ProtocolState::migrate_to_broker`] every legacy poll answers `BrokerMigration`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde_json::json;

use super::oauth::require_access_token;
use super::protocol::{Pending, ProtocolEvent, ProtocolState, broker_error};
use super::state::Shared;
use super::{below_minimum, version_too_old_message, vss_error, vss_error_with_code};
use crate::protocol::message::TaskAgentMessage;

type St = State<Arc<ProtocolState>>;
type Params = Query<HashMap<String, String>>;

const BROKER_SOURCE: &str = "actions-broker-listener";

/// Message routes (legacy and broker).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/_services/pipelines/_apis/distributedtask/pools/{pool}/messages",
            get(poll_legacy),
        )
        .route(
            "/_services/pipelines/_apis/distributedtask/pools/{pool}/messages/{id}",
            delete(delete_message),
        )
        .route("/_services/broker/message", get(poll_broker))
        .route("/_services/broker/acknowledge", post(acknowledge))
}

enum Polled {
    Message(Pending),
    Migration,
    Idle,
    NoSession,
}

/// Waits up to the poll hold for something to deliver to `session_id`. A runner polling as
/// `Busy` is not handed jobs (GitHub assigns a job only to an idle runner); other messages,
/// cancellations included, still reach it.
async fn wait_for_message(s: &ProtocolState, session_id: &str, broker: bool, busy: bool) -> Polled {
    let deadline = tokio::time::Instant::now() + s.knobs().poll_hold;
    loop {
        let notified = s.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut inner = s.inner();
            if !inner.sessions.contains_key(session_id) {
                return Polled::NoSession;
            }
            if !broker && inner.broker_mode {
                return Polled::Migration;
            }
            let agent_id = inner.sessions.get(session_id).map_or(0, |r| r.agent_id);
            let deliverable = inner
                .queue
                .iter()
                .position(|p| p.delivery.accepts(agent_id, busy, p.job_id.is_some()));
            if let Some(pending) = deliverable.and_then(|i| inner.queue.remove(i)) {
                if let Some(job) = pending
                    .job_id
                    .as_ref()
                    .and_then(|id| inner.jobs.get_mut(id))
                {
                    job.delivered_at = Some(chrono::Utc::now());
                    job.delivered_to = Some(agent_id);
                }
                return Polled::Message(pending);
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return Polled::Idle;
        }
    }
}

/// The refusal of a poll or acknowledge whose `runnerVersion` is below the service's minimum:
/// the broker's `RunnerVersionTooOld` document, or the legacy service's
/// `AccessDeniedException` with error code 1.
fn refuse_old_version(
    shared: &Shared,
    q: &HashMap<String, String>,
    broker: bool,
) -> Option<Response> {
    let minimum = shared.lock().config.min_runner_version;
    let version = q.get("runnerVersion").map_or("", String::as_str);
    if !below_minimum(version, minimum) {
        return None;
    }
    let message = version_too_old_message(version);
    Some(if broker {
        broker_error(
            StatusCode::FORBIDDEN,
            BROKER_SOURCE,
            "RunnerVersionTooOld",
            &message,
        )
    } else {
        vss_error_with_code(StatusCode::FORBIDDEN, "AccessDeniedException", &message, 1)
    })
}

/// Records the poll; true if the runner polls as `Busy`.
fn record_poll(s: &ProtocolState, q: &HashMap<String, String>, broker: bool) -> bool {
    let status = q.get("status").cloned().unwrap_or_default();
    let busy = status.eq_ignore_ascii_case("busy");
    s.record(ProtocolEvent::Poll { broker, status });
    busy
}

async fn poll_legacy(
    State(shared): State<Shared>,
    State(s): St,
    Path(_pool): Path<u64>,
    Query(q): Params,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let busy = record_poll(&s, &q, false);
    if let Some(refused) = refuse_old_version(&shared, &q, false) {
        return refused;
    }
    let session_id = q.get("sessionId").cloned().unwrap_or_default();
    let pending = match wait_for_message(&s, &session_id, false, busy).await {
        Polled::Message(p) => p,
        Polled::Migration => Pending {
            message_type: "BrokerMigration".into(),
            body: json!({"brokerBaseUrl": s.broker_url()}).to_string(),
            tamper: None,
            job_id: None,
            delivery: Default::default(),
        },
        Polled::Idle => return StatusCode::ACCEPTED.into_response(),
        Polled::NoSession => {
            return vss_error(
                StatusCode::NOT_FOUND,
                "TaskAgentSessionExpiredException",
                "the session has expired",
            );
        }
    };
    let key = s
        .inner()
        .sessions
        .get(&session_id)
        .and_then(|r| r.key.clone());
    let message_id = next_id(&s);
    let mut message = TaskAgentMessage {
        message_id,
        message_type: pending.message_type,
        iv: None,
        body: pending.body,
    };
    if let Some(key) = key {
        let mut iv = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut iv);
        // Encryption with a checked AES key cannot fail.
        let Ok(cipher) = key.encrypt_message(&iv, message.body.as_bytes()) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        message.iv = Some(STANDARD.encode(iv));
        message.body = cipher;
        #[cfg(feature = "fault-injection")]
        if let Some(tamper) = pending.tamper {
            super::faults::apply_tamper(&mut message, tamper);
        }
    }
    (StatusCode::OK, axum::Json(message)).into_response()
}

fn next_id(s: &ProtocolState) -> i64 {
    let mut inner = s.inner();
    let id = inner.next_message_id;
    inner.next_message_id += 1;
    id
}

async fn delete_message(
    State(shared): State<Shared>,
    State(s): St,
    Path((_pool, id)): Path<(u64, i64)>,
    Query(q): Params,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    if !q
        .get("sessionId")
        .is_some_and(|id| s.inner().sessions.contains_key(id))
    {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentSessionExpiredException",
            "no such session",
        );
    }
    s.record(ProtocolEvent::MessageDeleted { message_id: id });
    StatusCode::NO_CONTENT.into_response()
}

async fn poll_broker(
    State(shared): State<Shared>,
    State(s): St,
    Query(q): Params,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let busy = record_poll(&s, &q, true);
    if let Some(refused) = refuse_old_version(&shared, &q, true) {
        return refused;
    }
    let session_id = q.get("sessionId").cloned().unwrap_or_default();
    match wait_for_message(&s, &session_id, true, busy).await {
        Polled::Message(pending) => {
            let message = TaskAgentMessage {
                message_id: i64::from(rand::random::<i32>()),
                message_type: pending.message_type,
                iv: None,
                body: pending.body,
            };
            (StatusCode::OK, axum::Json(message)).into_response()
        }
        Polled::Idle | Polled::Migration => StatusCode::OK.into_response(),
        Polled::NoSession => broker_error(
            StatusCode::NOT_FOUND,
            BROKER_SOURCE,
            "RunnerSessionInvalid",
            "The runner session is not valid.",
        ),
    }
}

async fn acknowledge(
    State(shared): State<Shared>,
    State(s): St,
    Query(q): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    if let Some(refused) = refuse_old_version(&shared, &q, true) {
        return refused;
    }
    let session_id = q.get("sessionId").cloned().unwrap_or_default();
    if !s.inner().sessions.contains_key(&session_id) {
        return broker_error(
            StatusCode::NOT_FOUND,
            BROKER_SOURCE,
            "RunnerSessionInvalid",
            "no such session",
        );
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("runnerRequestId")
                .and_then(|r| r.as_str())
                .map(str::to_owned)
        });
    let Some(runner_request_id) = id else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let query = q.into_iter().filter(|(k, _)| k != "sessionId").collect();
    s.record(ProtocolEvent::Acknowledged {
        runner_request_id,
        session_id,
        query,
    });
    StatusCode::OK.into_response()
}
