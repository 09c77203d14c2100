//! Registration endpoints of the local service: the `runner-registration` token exchange,
//! `connectionData`, legacy pools and agents (list, add, replace, delete), and the runner-admin
//! REST calls (runner groups, runners, register, delete) for repo, org and enterprise scopes.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use super::state::{AgentRecord, Shared, State};
use super::{TENANT_PATH, authorization, random_token, rest_error, vss_error};
use crate::crypto::rsa::public_key_from_xml;
use crate::protocol::lenient;
use crate::protocol::registration::{
    ListRunnersResponse, PROP_REQUIRE_FIPS, RunnerAdminAuthorization, RunnerAdminRegisterRequest,
    RunnerAdminRegisterResponse, RunnerGroup, RunnerGroupList, RunnerRegistrationRequest,
    RunnerSummary, TaskAgent, TaskAgentAuthorization, TenantCredential,
};
use crate::protocol::vss::{Properties, VssList};

/// The registration routes.
pub fn routes() -> Router<Shared> {
    let tenant = format!("/{TENANT_PATH}_apis");
    let mut router = Router::new()
        .route(
            "/api/v3/actions/runner-registration",
            post(runner_registration),
        )
        .route("/api/v3/actions/runners/register", post(admin_register))
        .route(&format!("{tenant}/connectionData"), get(connection_data))
        .route(&format!("{tenant}/distributedtask/pools"), get(list_pools))
        .route(
            &format!("{tenant}/distributedtask/pools/{{pool_id}}/agents"),
            get(list_agents).post(add_agent),
        )
        .route(
            &format!("{tenant}/distributedtask/pools/{{pool_id}}/agents/{{agent_id}}"),
            put(replace_agent).delete(delete_agent),
        );
    for scope in ["repos/{owner}/{repo}", "orgs/{org}", "enterprises/{slug}"] {
        let entity = format!("/api/v3/{scope}/actions");
        router = router
            .route(&format!("{entity}/runner-groups"), get(admin_groups))
            .route(&format!("{entity}/runners"), get(admin_runners))
            .route(
                &format!("{entity}/runners/{{runner_id}}"),
                axum::routing::delete(admin_delete),
            );
    }
    router
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    lenient::from_slice(body).map_err(|e| {
        rest_error(
            StatusCode::BAD_REQUEST,
            &format!("Problems parsing JSON: {e}"),
        )
    })
}

async fn runner_registration(
    AxumState(shared): AxumState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RunnerRegistrationRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut state = shared.lock();
    let valid = match request.runner_event.as_str() {
        "register" => &state.config.registration_tokens,
        "remove" => &state.config.remove_tokens,
        _ => return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown runner_event"),
    };
    let token = authorization(&headers, "RemoteAuth");
    if !token.is_some_and(|t| valid.iter().any(|v| v == t)) {
        return rest_error(StatusCode::NOT_FOUND, "Not Found");
    }
    let tenant_token = random_token();
    state
        .tenant_tokens
        .insert(tenant_token.clone(), request.runner_event.clone());
    Json(TenantCredential {
        url: state.tenant_url(),
        token_schema: Some("OAuthAccessToken".to_owned()),
        token: tenant_token.into(),
        use_v2_flow: Some(state.config.use_v2_flow),
    })
    .into_response()
}

/// Accepts a tenant bearer token (from `runner-registration`) or an OAuth access token.
fn require_tenant_auth(state: &State, headers: &HeaderMap) -> Result<(), Response> {
    let ok = authorization(headers, "Bearer").is_some_and(|t| {
        state.tenant_tokens.contains_key(t) || state.agent_for_access_token(t).is_some()
    });
    if ok {
        Ok(())
    } else {
        Err(vss_error(
            StatusCode::UNAUTHORIZED,
            "AccessDeniedException",
            "unauthorized",
        ))
    }
}

async fn connection_data(AxumState(shared): AxumState<Shared>) -> Response {
    let state = shared.lock();
    Json(serde_json::json!({
        "instanceId": "6c6b3a8e-5c1e-4a55-9a55-0f2b0e5b6a11",
        "locationServiceData": {
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "defaultAccessMappingMoniker": "PublicAccessMapping",
            "accessMappings": [{"moniker": "PublicAccessMapping", "accessPoint": state.tenant_url()}],
            "serviceDefinitions": []
        }
    }))
    .into_response()
}

async fn list_pools(AxumState(shared): AxumState<Shared>, headers: HeaderMap) -> Response {
    let state = shared.lock();
    if let Err(resp) = require_tenant_auth(&state, &headers) {
        return resp;
    }
    Json(VssList::new(state.pools.clone())).into_response()
}

/// The `TaskAgent` the service shows for a record.
fn to_task_agent(state: &State, record: &AgentRecord) -> TaskAgent {
    let mut properties = Properties::default();
    if let Some(fips) = state.config.require_fips {
        properties.set_bool(PROP_REQUIRE_FIPS, fips);
    }
    TaskAgent {
        id: record.id,
        name: record.name.clone(),
        version: record.version.clone(),
        os_description: record.os_description.clone(),
        max_parallelism: Some(1),
        ephemeral: Some(record.ephemeral),
        disable_update: Some(record.disable_update),
        labels: record.labels.clone(),
        authorization: Some(TaskAgentAuthorization {
            authorization_url: Some(state.token_url()),
            client_id: Some(record.client_id.clone()),
            public_key: Some(record.public_key.clone()),
        }),
        created_on: Some("2026-01-01T00:00:00Z".to_owned()),
        status: Some(serde_json::Value::from("offline")),
        provisioning_state: Some("Provisioned".to_owned()),
        properties,
    }
}

async fn list_agents(
    AxumState(shared): AxumState<Shared>,
    Path(pool_id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let state = shared.lock();
    if let Err(resp) = require_tenant_auth(&state, &headers) {
        return resp;
    }
    let name = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("agentName"))
        .map(|(_, v)| v);
    let agents: Vec<TaskAgent> = state
        .agents
        .values()
        .filter(|a| pool_id == 0 || a.pool_id == pool_id)
        .filter(|a| name.is_none_or(|n| a.name.eq_ignore_ascii_case(n)))
        .map(|a| to_task_agent(&state, a))
        .collect();
    Json(VssList::new(agents)).into_response()
}

fn record_from_agent(
    agent: &TaskAgent,
    id: u64,
    pool_id: u64,
    client_id: String,
) -> Result<AgentRecord, Response> {
    let public_key = agent
        .authorization
        .as_ref()
        .and_then(|a| a.public_key.clone())
        .ok_or_else(|| {
            vss_error(
                StatusCode::BAD_REQUEST,
                "ArgumentNullException",
                "publicKey is required",
            )
        })?;
    if agent.name.trim().is_empty() {
        return Err(vss_error(
            StatusCode::BAD_REQUEST,
            "ArgumentNullException",
            "name is required",
        ));
    }
    Ok(AgentRecord {
        id,
        pool_id,
        name: agent.name.clone(),
        version: agent.version.clone(),
        labels: agent.labels.clone(),
        ephemeral: agent.ephemeral.unwrap_or(false),
        disable_update: agent.disable_update.unwrap_or(false),
        os_description: agent.os_description.clone(),
        public_key,
        client_id,
        runner_admin: false,
    })
}

/// The refusal of a registration advertising `version`, if it is below the minimum.
fn refuse_version(state: &super::state::State, version: &str) -> Option<String> {
    let minimum = state.config.min_registration_version;
    super::below_minimum(version, minimum).then(|| {
        format!(
            "Runner version v{version} is too old to register: the minimum is v{}.",
            minimum.map(|m| m.to_string()).unwrap_or_default()
        )
    })
}

async fn add_agent(
    AxumState(shared): AxumState<Shared>,
    Path(pool_id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let agent: TaskAgent = match parse_body(&body) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let mut state = shared.lock();
    if let Err(resp) = require_tenant_auth(&state, &headers) {
        return resp;
    }
    if !state.pools.iter().any(|p| p.id == pool_id && !p.is_hosted) {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentPoolNotFoundException",
            "pool not found",
        );
    }
    if state.agent_by_name(&agent.name, Some(pool_id)).is_some() {
        let msg = format!("Agent {} already exists in pool {pool_id}.", agent.name);
        return vss_error(StatusCode::CONFLICT, "TaskAgentExistsException", &msg);
    }
    if let Some(refused) = refuse_version(&state, &agent.version) {
        return vss_error(
            StatusCode::FORBIDDEN,
            "TaskAgentVersionNotSupportedException",
            &refused,
        );
    }
    let id = state.allocate_id();
    let record = match record_from_agent(&agent, id, pool_id, uuid::Uuid::new_v4().to_string()) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let answer = to_task_agent(&state, &record);
    state.agents.insert(id, record);
    Json(answer).into_response()
}

async fn replace_agent(
    AxumState(shared): AxumState<Shared>,
    Path((pool_id, agent_id)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let agent: TaskAgent = match parse_body(&body) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    let mut state = shared.lock();
    if let Err(resp) = require_tenant_auth(&state, &headers) {
        return resp;
    }
    let Some(existing) = state.agents.get(&agent_id).cloned() else {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentNotFoundException",
            "agent not found",
        );
    };
    let pool = if pool_id == 0 {
        existing.pool_id
    } else {
        pool_id
    };
    let record = match record_from_agent(&agent, agent_id, pool, existing.client_id.clone()) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    // The old key is gone: so are the tokens issued to it.
    state
        .access_tokens
        .retain(|_, grant| grant.agent_id != agent_id);
    let answer = to_task_agent(&state, &record);
    state.agents.insert(agent_id, record);
    Json(answer).into_response()
}

async fn delete_agent(
    AxumState(shared): AxumState<Shared>,
    Path((_pool_id, agent_id)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.lock();
    if let Err(resp) = require_tenant_auth(&state, &headers) {
        return resp;
    }
    if state.agents.remove(&agent_id).is_none() {
        return vss_error(
            StatusCode::NOT_FOUND,
            "TaskAgentNotFoundException",
            "agent not found",
        );
    }
    state
        .access_tokens
        .retain(|_, grant| grant.agent_id != agent_id);
    StatusCode::NO_CONTENT.into_response()
}

/// Runner-admin calls accept `RemoteAuth <token>` (one of `tokens`) or a tenant bearer token.
fn require_remote_auth(state: &State, headers: &HeaderMap, removal: bool) -> Result<(), Response> {
    let tokens = if removal {
        &state.config.remove_tokens
    } else {
        &state.config.registration_tokens
    };
    let remote =
        authorization(headers, "RemoteAuth").is_some_and(|t| tokens.iter().any(|v| v == t));
    let bearer =
        authorization(headers, "Bearer").is_some_and(|t| state.tenant_tokens.contains_key(t));
    if remote || bearer {
        Ok(())
    } else {
        Err(rest_error(StatusCode::NOT_FOUND, "Not Found"))
    }
}

async fn admin_groups(AxumState(shared): AxumState<Shared>, headers: HeaderMap) -> Response {
    let state = shared.lock();
    if let Err(resp) = require_remote_auth(&state, &headers, false) {
        return resp;
    }
    let groups: Vec<RunnerGroup> = state
        .pools
        .iter()
        .map(|p| RunnerGroup {
            id: p.id,
            name: p.name.clone(),
            default: p.is_internal,
            is_hosted: p.is_hosted,
        })
        .collect();
    Json(RunnerGroupList {
        total_count: groups.len() as u64,
        runner_groups: groups,
    })
    .into_response()
}

async fn admin_runners(
    AxumState(shared): AxumState<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let state = shared.lock();
    if let Err(resp) = require_remote_auth(&state, &headers, false) {
        return resp;
    }
    let runners: Vec<RunnerSummary> = state
        .agents
        .values()
        .filter(|a| {
            query
                .get("name")
                .is_none_or(|n| a.name.eq_ignore_ascii_case(n))
        })
        .map(|a| RunnerSummary {
            id: a.id,
            name: a.name.clone(),
            status: Some("offline".into()),
        })
        .collect();
    Json(ListRunnersResponse {
        total_count: runners.len() as u64,
        runners,
    })
    .into_response()
}

async fn admin_register(
    AxumState(shared): AxumState<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: RunnerAdminRegisterRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let mut state = shared.lock();
    if let Err(resp) = require_remote_auth(&state, &headers, false) {
        return resp;
    }
    if !state.pools.iter().any(|p| p.id == request.group_id) {
        return rest_error(StatusCode::NOT_FOUND, "runner group not found");
    }
    if let Some(refused) = refuse_version(&state, &request.version) {
        return rest_error(StatusCode::FORBIDDEN, &refused);
    }
    let Ok(public_key) = public_key_from_xml(&request.public_key) else {
        return rest_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid public_key");
    };
    let existing = state.agent_by_name(&request.name, None).cloned();
    let (id, client_id) = match (existing, request.replace, request.runner_id) {
        (Some(old), Some(true), Some(rid)) if old.id == rid => (old.id, old.client_id),
        (Some(_), _, _) => {
            let msg = format!(
                "Already exists - A runner with the name {} already exists.",
                request.name
            );
            return rest_error(StatusCode::UNPROCESSABLE_ENTITY, &msg);
        }
        (None, _, _) => (state.allocate_id(), uuid::Uuid::new_v4().to_string()),
    };
    state.access_tokens.retain(|_, grant| grant.agent_id != id);
    state.agents.insert(
        id,
        AgentRecord {
            id,
            pool_id: request.group_id,
            name: request.name.clone(),
            version: request.version.clone(),
            labels: request.labels.clone(),
            ephemeral: request.ephemeral,
            disable_update: request.updates_disabled,
            os_description: None,
            public_key,
            client_id: client_id.clone(),
            runner_admin: true,
        },
    );
    Json(RunnerAdminRegisterResponse {
        id,
        name: request.name,
        authorization: RunnerAdminAuthorization {
            authorization_url: state.token_url(),
            legacy_authorization_url: None,
            server_url: Some(state.broker_url()),
            client_id,
        },
    })
    .into_response()
}

async fn admin_delete(
    AxumState(shared): AxumState<Shared>,
    Path(params): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let mut state = shared.lock();
    if let Err(resp) = require_remote_auth(&state, &headers, true) {
        return resp;
    }
    let id = params.get("runner_id").and_then(|s| s.parse::<u64>().ok());
    match id.and_then(|id| state.agents.remove(&id)) {
        Some(removed) => {
            state
                .access_tokens
                .retain(|_, grant| grant.agent_id != removed.id);
            StatusCode::NO_CONTENT.into_response()
        }
        None => rest_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}
