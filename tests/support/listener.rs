//! Test helper: a runner seeded directly into the local service's state, and a [`Listener`]
//! for it (shortened timings, no HTTP retries) running on its own task.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use ghrunner_vm::client::TokenProvider;
use ghrunner_vm::client::backoff::Timings;
use ghrunner_vm::client::http::{HttpClient, RetryPolicy};
use ghrunner_vm::client::session::RunnerIdentity;
use ghrunner_vm::config::Credentials;
use ghrunner_vm::crypto::rsa::RunnerKey;
use ghrunner_vm::job::lifecycle::JobExecutor;
use ghrunner_vm::listener::{Listener, ListenerConfig, ListenerError};
use ghrunner_vm::localsvc::LocalService;
use ghrunner_vm::localsvc::protocol::protocol_state;
use ghrunner_vm::metrics::Metrics;
use ghrunner_vm::version::VersionPolicy;
use tokio_util::sync::CancellationToken;

/// The runner version seeded runners register and advertise.
pub const VERSION: &str = "2.330.0";

/// Adds a runner with `key` to the service's state; returns its agent id and credentials.
pub fn seed_agent(svc: &LocalService, key: &RunnerKey) -> (u64, Credentials) {
    svc.seed_runner(key, None, VERSION, false)
}

/// A listener running on its own task.
pub struct Attached {
    /// The seeded runner's id.
    pub agent_id: u64,
    /// Stops the listener.
    pub shutdown: CancellationToken,
    /// The listener's task.
    pub task: tokio::task::JoinHandle<Result<(), ListenerError>>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Its registration directory (holds `.session`).
    pub dir: tempfile::TempDir,
}

/// A runner seeded on a service, not listening yet.
pub struct Seeded {
    /// Its agent id.
    pub agent_id: u64,
    /// Serve it as an ephemeral (one-job) registration.
    pub ephemeral: bool,
    key: RunnerKey,
    creds: Credentials,
}

/// Seeds a runner on `svc`.
pub fn seed(svc: &LocalService) -> Seeded {
    let key = RunnerKey::generate().unwrap();
    let (agent_id, creds) = seed_agent(svc, &key);
    Seeded {
        agent_id,
        ephemeral: false,
        key,
        creds,
    }
}

/// Seeds a runner on `svc` and starts a listener for it with `executor` (`broker`: the
/// registration uses the broker from the start).
pub fn attach<E: JobExecutor>(svc: &LocalService, broker: bool, executor: Arc<E>) -> Attached {
    listen(svc, seed(svc), broker, executor)
}

/// Starts a listener for a seeded runner, advertising [`VERSION`].
pub fn listen<E: JobExecutor>(
    svc: &LocalService,
    seeded: Seeded,
    broker: bool,
    executor: Arc<E>,
) -> Attached {
    let versions = Arc::new(VersionPolicy::pinned(VERSION.parse().unwrap()));
    listen_with(svc, seeded, broker, executor, versions)
}

/// Starts a listener for a seeded runner with a version policy.
pub fn listen_with<E: JobExecutor>(
    svc: &LocalService,
    seeded: Seeded,
    broker: bool,
    executor: Arc<E>,
    versions: Arc<VersionPolicy>,
) -> Attached {
    let Seeded {
        agent_id,
        ephemeral,
        key,
        creds,
    } = seeded;
    let proto = protocol_state(&svc.state());
    let dir = tempfile::tempdir().unwrap();
    let http = HttpClient::with_retry(RetryPolicy::NONE).unwrap();
    let tokens = Arc::new(TokenProvider::new(http.clone(), &creds, key.clone()).unwrap());
    let cfg = ListenerConfig {
        identity: RunnerIdentity {
            agent_id,
            agent_name: format!("seeded-{agent_id}"),
            pool_id: 1,
            version: VERSION.into(),
            os: "Linux".into(),
            architecture: "X64".into(),
            owner_name: "test (PID: 1)".into(),
        },
        server_url: svc.tenant_url(),
        broker_url: broker.then(|| proto.broker_url()),
        versions,
        ephemeral,
        once: ephemeral,
        state_dir: dir.path().to_owned(),
        timings: Timings::fast(),
        shutdown_grace: Duration::from_millis(500),
        cancel_kill_after: Duration::from_secs(5),
    };
    let metrics = Arc::new(Metrics::default());
    let listener =
        Listener::new(cfg, http, tokens, key, executor).with_metrics(Arc::clone(&metrics));
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { listener.run(token).await });
    Attached {
        agent_id,
        shutdown,
        task,
        metrics,
        dir,
    }
}

/// A minimal legacy job message named `name` (fresh ids, plan version 12, no steps), for
/// executors that do not look at the steps.
pub fn job(name: &str) -> serde_json::Value {
    serde_json::json!({
        "jobId": uuid::Uuid::new_v4().to_string(),
        "jobName": name,
        "plan": {"planId": uuid::Uuid::new_v4().to_string(), "scopeIdentifier": uuid::Uuid::new_v4().to_string(),
                 "planType": "actions", "version": 12},
        "timeline": {"id": uuid::Uuid::new_v4().to_string()},
        "variables": {}, "steps": []
    })
}

/// Stops an attached listener and checks that it ends cleanly in time.
pub async fn stop(attached: Attached) {
    attached.shutdown.cancel();
    tokio::time::timeout(super::wait::PATIENCE, attached.task)
        .await
        .expect("listener stops")
        .unwrap()
        .expect("listener ends cleanly");
}
