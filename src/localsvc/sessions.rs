//! Local service: session create and delete on the legacy pool service (with an RSA-OAEP
//! wrapped AES key) and on the broker (no key). A second session for the same runner is a
//! conflict, as on GitHub.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use rand::RngCore;

use super::protocol::{
    ProtocolEvent, ProtocolState, SessionRecord, authorized, broker_error, vss_error,
};
use crate::crypto::session::{OaepHash, SessionKey};
use crate::protocol::session::{SessionEncryptionKey, TaskAgentSession};

type St = State<Arc<ProtocolState>>;

/// Session routes (legacy and broker).
pub(crate) fn routes() -> Router<Arc<ProtocolState>> {
    Router::new()
        .route(
            "/_apis/distributedtask/pools/{pool}/sessions",
            post(create_legacy),
        )
        .route(
            "/_apis/distributedtask/pools/{pool}/sessions/{session}",
            delete(delete_legacy),
        )
        .route("/broker/session", post(create_broker).delete(delete_broker))
}

async fn create_legacy(
    State(s): St,
    Path(_pool): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(request) = serde_json::from_slice::<TaskAgentSession>(&body) else {
        return vss_error(
            StatusCode::BAD_REQUEST,
            "ArgumentException",
            "invalid session",
        );
    };
    match create(&s, request, false) {
        Ok(session) => (StatusCode::OK, axum::Json(session)).into_response(),
        Err(()) => vss_error(
            StatusCode::CONFLICT,
            "TaskAgentSessionConflictException",
            "a session for this runner already exists",
        ),
    }
}

async fn create_broker(State(s): St, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(request) = serde_json::from_slice::<TaskAgentSession>(&body) else {
        return broker_error(
            StatusCode::BAD_REQUEST,
            "actions-broker-listener",
            "BadRequest",
            "invalid session",
        );
    };
    match create(&s, request, true) {
        Ok(session) => (StatusCode::CREATED, axum::Json(session)).into_response(),
        Err(()) => broker_error(
            StatusCode::CONFLICT,
            "actions-broker-listener",
            "SessionConflict",
            "a session for this runner already exists",
        ),
    }
}

/// Creates a session, or `Err` on conflict.
fn create(
    s: &ProtocolState,
    mut request: TaskAgentSession,
    broker: bool,
) -> Result<TaskAgentSession, ()> {
    let knobs = s.knobs();
    let agent_id = request.agent.id;
    let mut inner = s.inner();
    if inner.sessions.values().any(|r| r.agent_id == agent_id) {
        inner.events.push(ProtocolEvent::SessionConflict);
        return Err(());
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let mut key = None;
    if !broker {
        let mut raw = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        // 32 random bytes are always a valid AES-256 key.
        let session_key = SessionKey::from_bytes(raw).map_err(|_| ())?;
        let hash = knobs
            .oaep_hash
            .unwrap_or(OaepHash::for_fips(knobs.use_fips_encryption));
        let wire = match inner.runner_keys.get(&agent_id) {
            Some(public) => SessionEncryptionKey {
                encrypted: true,
                value: session_key.wrap(public, hash).map_err(|_| ())?,
            },
            None => SessionEncryptionKey {
                encrypted: false,
                value: base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    session_key.as_bytes(),
                ),
            },
        };
        request.encryption_key = Some(wire);
        request.use_fips_encryption = knobs.use_fips_encryption;
        key = Some(session_key);
    }
    request.session_id = session_id.clone();
    inner
        .sessions
        .insert(session_id.clone(), SessionRecord { agent_id, key });
    inner
        .events
        .push(ProtocolEvent::SessionCreated { session_id, broker });
    Ok(request)
}

async fn delete_legacy(
    State(s): St,
    Path((_pool, session)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    remove(&s, &session)
}

async fn delete_broker(
    State(s): St,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match q.get("sessionId") {
        Some(id) => remove(&s, id),
        None => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn remove(s: &ProtocolState, session_id: &str) -> Response {
    let removed = s.inner().sessions.remove(session_id).is_some();
    if !removed {
        return StatusCode::NOT_FOUND.into_response();
    }
    s.record(ProtocolEvent::SessionDeleted {
        session_id: session_id.to_owned(),
    });
    s.wake.notify_waiters();
    StatusCode::NO_CONTENT.into_response()
}
