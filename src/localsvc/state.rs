//! The local service's mutable state, shared by every handler behind one mutex
//! ([`Shared`]). Handlers lock briefly and never across an `.await`; [`Shared::notify`] wakes
//! tasks waiting for a change (long polls).
//!
//! Areas added later (sessions, messages, jobs, reporting) keep their own state in
//! [`State::extensions`] (a type map) or add fields here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use axum::http::Extensions;

use super::LocalServiceConfig;
use super::faults::FaultRule;
use super::recorder::RecordedRequest;
use crate::protocol::registration::{AgentLabel, TaskAgentPool, TaskAgentPublicKey};

/// A registered runner, whichever flow registered it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    /// Agent id.
    pub id: u64,
    /// Pool (runner group) id.
    pub pool_id: u64,
    /// Runner name.
    pub name: String,
    /// Reported version.
    pub version: String,
    /// Labels.
    pub labels: Vec<AgentLabel>,
    /// Ephemeral runner.
    pub ephemeral: bool,
    /// Updates disabled.
    pub disable_update: bool,
    /// OS description.
    pub os_description: Option<String>,
    /// The registered public key (verifies client assertions).
    pub public_key: TaskAgentPublicKey,
    /// OAuth client id.
    pub client_id: String,
    /// Registered through the runner-admin flow.
    pub runner_admin: bool,
}

/// An access token the token endpoint issued.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessGrant {
    /// The runner it was issued to.
    pub agent_id: u64,
    /// When it stops being accepted.
    pub expires_at: Instant,
}

/// Everything the local service knows.
#[derive(Debug)]
pub struct State {
    /// The configuration it was started with (tests may change it at run time).
    pub config: LocalServiceConfig,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// Runner groups (legacy pools; runner-admin groups share the ids).
    pub pools: Vec<TaskAgentPool>,
    /// Registered runners by id.
    pub agents: BTreeMap<u64, AgentRecord>,
    /// Bearer tokens handed out by `runner-registration` (valid for the legacy tenant).
    pub tenant_tokens: HashMap<String, String>,
    /// OAuth access tokens issued by the token endpoint.
    pub access_tokens: HashMap<String, AccessGrant>,
    /// Next id for agents and other server objects.
    pub next_id: u64,
    /// Fault rules, first match wins.
    pub faults: Vec<FaultRule>,
    /// Every request received, in order.
    pub requests: Vec<RecordedRequest>,
    /// State of later areas (sessions, messages, jobs, reporting), keyed by type.
    pub extensions: Extensions,
}

impl State {
    /// Fresh state for a service at `base_url`.
    pub fn new(config: LocalServiceConfig, base_url: String) -> Self {
        let pools = config.pools.clone();
        State {
            config,
            base_url,
            pools,
            agents: BTreeMap::new(),
            tenant_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            next_id: 1,
            faults: Vec::new(),
            requests: Vec::new(),
            extensions: Extensions::new(),
        }
    }

    /// A new server-side id.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// The tenant (legacy Actions service) URL, ending in `/`.
    pub fn tenant_url(&self) -> String {
        format!("{}/{}", self.base_url, super::TENANT_PATH)
    }

    /// The OAuth token endpoint (the `authorizationUrl` of every registration).
    pub fn token_url(&self) -> String {
        format!("{}_apis/oauth2/token", self.tenant_url())
    }

    /// The broker URL handed to runner-admin registrations (`ServerUrlV2`).
    pub fn broker_url(&self) -> String {
        format!("{}/{}", self.base_url, super::BROKER_PATH)
    }

    /// The agent an access token was issued to, if the token is valid now.
    pub fn agent_for_access_token(&self, token: &str) -> Option<u64> {
        self.access_tokens
            .get(token)
            .filter(|grant| grant.expires_at > Instant::now())
            .map(|grant| grant.agent_id)
    }

    /// Revokes every issued access token (the next use answers 401).
    pub fn revoke_access_tokens(&mut self) {
        self.access_tokens.clear();
    }

    /// Finds an agent by name (case-insensitive), optionally within a pool.
    pub fn agent_by_name(&self, name: &str, pool_id: Option<u64>) -> Option<&AgentRecord> {
        self.agents.values().find(|a| {
            a.name.eq_ignore_ascii_case(name) && pool_id.is_none_or(|p| p == 0 || a.pool_id == p)
        })
    }
}

/// The state shared by the handlers, plus a change notification.
#[derive(Debug, Clone)]
pub struct Shared {
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::Notify>,
}

impl Shared {
    /// Wraps fresh state.
    pub fn new(state: State) -> Self {
        Shared {
            state: Arc::new(Mutex::new(state)),
            changed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Locks the state. Do not hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler cannot leave the state unusable for the rest of a test.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wakes every task waiting in [`Shared::changed`].
    pub fn notify(&self) {
        self.changed.notify_waiters();
    }

    /// Resolves at the next [`Shared::notify`].
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}
