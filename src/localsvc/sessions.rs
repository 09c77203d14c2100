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

use super::oauth::require_access_token;
use super::protocol::{ProtocolEvent, ProtocolState, SessionRecord, broker_error};
use super::state::Shared;
use super::vss_error;
use rsa::RsaPublicKey;

use crate::crypto::rsa::public_key_from_task_agent;
use crate::crypto::session::{OaepHash, SessionKey};
use crate::protocol::session::{SessionEncryptionKey, TaskAgentSession};

type St = State<Arc<ProtocolState>>;

/// Session routes (legacy and broker).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route(
            "/_services/pipelines/_apis/distributedtask/pools/{pool}/sessions",
            post(create_legacy),
        )
        .route(
            "/_services/pipelines/_apis/distributedtask/pools/{pool}/sessions/{session}",
            delete(delete_legacy),
        )
        .route(
            "/_services/broker/session",
            post(create_broker).delete(delete_broker),
        )
}

async fn create_legacy(
    State(shared): State<Shared>,
    State(s): St,
    Path(_pool): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let Ok(request) = serde_json::from_slice::<TaskAgentSession>(&body) else {
        return vss_error(
            StatusCode::BAD_REQUEST,
            "ArgumentException",
            "invalid session",
        );
    };
    let key = agent_public_key(&shared, request.agent.id);
    match create(&s, request, key) {
        Ok(session) => (StatusCode::OK, axum::Json(session)).into_response(),
        Err(()) => vss_error(
            StatusCode::CONFLICT,
            "TaskAgentSessionConflictException",
            "a session for this runner already exists",
        ),
    }
}

async fn create_broker(
    State(shared): State<Shared>,
    State(s): St,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    let Ok(request) = serde_json::from_slice::<TaskAgentSession>(&body) else {
        return broker_error(
            StatusCode::BAD_REQUEST,
            "actions-broker-listener",
            "BadRequest",
            "invalid session",
        );
    };
    match create(&s, request, None) {
        Ok(session) => (StatusCode::CREATED, axum::Json(session)).into_response(),
        Err(()) => broker_error(
            StatusCode::CONFLICT,
            "actions-broker-listener",
            "SessionConflict",
            "a session for this runner already exists",
        ),
    }
}

/// The registered public key of a runner, if the service knows it.
fn agent_public_key(shared: &Shared, agent_id: u64) -> Option<RsaPublicKey> {
    let public = shared.lock().agents.get(&agent_id)?.public_key.clone();
    public_key_from_task_agent(&public).ok()
}

/// Creates a session, or `Err` on conflict. `wrap_with` is `Some` for legacy sessions (the AES
/// key is wrapped with the runner's registered key), `None` for broker sessions.
fn create(
    s: &ProtocolState,
    mut request: TaskAgentSession,
    wrap_with: Option<RsaPublicKey>,
) -> Result<TaskAgentSession, ()> {
    let knobs = s.knobs();
    let agent_id = request.agent.id;
    let mut inner = s.inner();
    if inner.sessions.values().any(|r| r.agent_id == agent_id) {
        inner.events.push(ProtocolEvent::SessionConflict);
        return Err(());
    }
    let session_id = uuid::Uuid::new_v4().to_string();
    let broker = wrap_with.is_none();
    let mut key = None;
    if let Some(public) = wrap_with {
        let mut raw = vec![0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        // 32 random bytes are always a valid AES-256 key.
        let session_key = SessionKey::from_bytes(raw).map_err(|_| ())?;
        let hash = knobs
            .oaep_hash
            .unwrap_or(OaepHash::for_fips(knobs.use_fips_encryption));
        let wire = SessionEncryptionKey {
            encrypted: true,
            value: session_key.wrap(&public, hash).map_err(|_| ())?,
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
    State(shared): State<Shared>,
    State(s): St,
    Path((_pool, session)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
    }
    remove(&s, &session)
}

async fn delete_broker(
    State(shared): State<Shared>,
    State(s): St,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(unauthorized) = require_access_token(&shared, &headers) {
        return unauthorized;
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
