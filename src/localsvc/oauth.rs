//! The token endpoint `{tenant}_apis/oauth2/token`: verifies the client-assertion JWT against
//! the registered public key (RS256 or PS256; `aud`, `nbf`, `exp`, lifetime) and issues random
//! access tokens. [`require_access_token`] lets other areas check `Authorization: Bearer`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};

use super::state::{AccessGrant, Shared};
use super::{authorization, random_token};
use crate::crypto::jwt::{decode_unverified, verify_client_assertion};
use crate::crypto::rsa::public_key_from_task_agent;
use crate::protocol::oauth::{
    CLIENT_ASSERTION_TYPE_JWT_BEARER, ERROR_INVALID_CLIENT, GRANT_TYPE_CLIENT_CREDENTIALS,
    TokenRequest, TokenResponse,
};

/// The token endpoint's routes.
pub fn routes() -> Router<Shared> {
    Router::new().route(
        &format!("/{}_apis/oauth2/token", super::TENANT_PATH),
        post(token),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = serde_json::json!({"error": error, "error_description": description});
    (status, Json(body)).into_response()
}

async fn token(AxumState(shared): AxumState<Shared>, Form(form): Form<TokenRequest>) -> Response {
    if form.grant_type != GRANT_TYPE_CLIENT_CREDENTIALS
        || form.client_assertion_type != CLIENT_ASSERTION_TYPE_JWT_BEARER
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "expected a JWT client assertion",
        );
    }
    let assertion = form.client_assertion.expose();
    let Ok((_, claims)) = decode_unverified(assertion) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "malformed client assertion",
        );
    };
    let mut state = shared.lock();
    let Some(agent) = state
        .agents
        .values()
        .find(|a| a.client_id == claims.iss)
        .cloned()
    else {
        let description = format!("Registration {} was not found.", claims.iss);
        return oauth_error(StatusCode::BAD_REQUEST, ERROR_INVALID_CLIENT, &description);
    };
    let Ok(public_key) = public_key_from_task_agent(&agent.public_key) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "registered key is invalid",
        );
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let audience = state.token_url();
    if let Err(err) = verify_client_assertion(assertion, &public_key, &audience, now) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &err.to_string());
    }
    let access_token = random_token();
    let lifetime = state.config.access_token_lifetime_secs;
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            agent_id: agent.id,
            expires_at: Instant::now() + Duration::from_secs(lifetime),
        },
    );
    Json(TokenResponse {
        access_token: access_token.into(),
        token_type: Some("bearer".to_owned()),
        expires_in: Some(lifetime),
        scope: Some("/".to_owned()),
    })
    .into_response()
}

/// Checks `Authorization: Bearer <access token>` and returns the runner's agent id, or a 401
/// answer to return as is.
pub fn require_access_token(shared: &Shared, headers: &HeaderMap) -> Result<u64, Response> {
    let unauthorized = || {
        let mut resp = (
            StatusCode::UNAUTHORIZED,
            "access token missing, invalid or expired",
        )
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Bearer"),
        );
        resp
    };
    let token = authorization(headers, "Bearer").ok_or_else(unauthorized)?;
    shared
        .lock()
        .agent_for_access_token(token)
        .ok_or_else(unauthorized)
}
