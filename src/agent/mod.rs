//! The agent: what `ghrunner-vm run` does. One listener per registration under
//! `<dir>/runners/`, each serving one job at a time, until SIGINT/SIGTERM (`--once`, or an
//! ephemeral registration: one job). [`run`] is the entry point; [`executor`] chooses what runs
//! the jobs and [`backend`] wires the QEMU backend, the VM runtime and the metrics endpoint.
//!
//! On a signal the listeners stop polling, give a running job
//! [`SHUTDOWN_GRACE`](crate::listener::SHUTDOWN_GRACE) to finish, then cancel it (reported
//! `canceled`), delete their sessions and exit 0.
//!
//! Jobs run in fresh QEMU VMs ([`backend`]): each registration gets its own executor,
//! all sharing the host's VM budget and metrics (`--metrics-addr`); VMs orphaned by a previous
//! agent are reaped at start-up. For tests and benchmarks only, in builds with the `test-hooks`
//! cargo feature (a release build refuses them), hidden environment variables replace the VMs
//! (a loud warning is logged, since job code then never runs):
//! `GHRUNNER_VM_TEST_EXECUTOR=sleep:<milliseconds>` selects a fake executor that waits that long
//! (or until cancelled) and reports success with the output `slept=<milliseconds>`;
//! `GHRUNNER_VM_TEST_HYPERVISOR=null[:<milliseconds>]` keeps the real executor (images, budget,
//! planning, reporting, hooks, metrics) on [`NullHypervisor`] VMs whose commands take that long.

pub mod backend;
pub mod executor;
pub mod register;
pub mod status;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use crate::client::TokenProvider;
use crate::client::backoff::Timings;
use crate::client::http::{HttpClient, RetryPolicy, runner_arch};
use crate::client::session::RunnerIdentity;
use crate::config::runner::{Registration, list_registration_dirs};
use crate::exit::ExitStatus;
use crate::listener::jobs::runner_os;
use crate::listener::{CANCEL_KILL_AFTER, Listener, ListenerConfig, ListenerError, SHUTDOWN_GRACE};
use crate::version::VersionPolicy;
pub use backend::{load_settings, serve_metrics};
pub use executor::{
    ExecutorSource, RunExecutor, SleepExecutor, TEST_EXECUTOR_ENV, TEST_HYPERVISOR_ENV,
    TEST_TIMING_SCALE_ENV, build_executor, test_hook,
};

/// What `run` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// The runner directory (registrations under `runners/`, `config.yaml`).
    pub dir: PathBuf,
    /// Run one job, then exit.
    pub once: bool,
    /// Serve Prometheus metrics on this address.
    pub metrics_addr: Option<SocketAddr>,
}

/// Serves every registration of `options.dir` until a signal (or one job with `once`), and
/// returns the process's exit status. Listener errors are printed as they end a listener.
pub async fn run(options: RunOptions) -> anyhow::Result<ExitStatus> {
    let dir = options.dir;
    let registrations = list_registration_dirs(&dir)
        .with_context(|| format!("cannot list the registrations in {}", dir.display()))?;
    if registrations.is_empty() {
        anyhow::bail!(
            "no runner is registered in {}: run `ghrunner-vm register` first",
            dir.display()
        );
    }
    let settings = load_settings(&dir)?;
    let versions = Arc::new(crate::version::policy_for_dir(&dir, &settings).await?);
    let registrations = registrations
        .iter()
        .map(|reg_dir| {
            Registration::load(reg_dir)
                .with_context(|| format!("cannot load the registration in {}", reg_dir.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let servers: Vec<url::Url> = registrations
        .iter()
        .flat_map(|r| {
            let runner = &r.runner;
            [
                Some(&runner.git_hub_url),
                Some(&runner.server_url),
                runner.server_url_v2.as_ref(),
            ]
        })
        .flatten()
        .filter_map(|u| url::Url::parse(u).ok())
        .collect();
    // The reporters' client advertises the same runner version as the listeners'.
    let reports_http = HttpClient::new().context("cannot create the HTTP client")?;
    versions.bind(&reports_http);
    let source = build_executor(&dir, settings, &servers, reports_http).await?;
    let metrics = source.metrics();
    metrics.watch_runner_version(Arc::clone(&versions));
    let _refresh = versions.spawn_daily_refresh();
    if let Some(addr) = options.metrics_addr {
        serve_metrics(addr, Arc::clone(&metrics)).await?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for registration in registrations {
        let executor = Arc::new(source.executor(&registration));
        let listener = build_listener(registration, options.once, executor, Arc::clone(&versions))?
            .with_metrics(Arc::clone(&metrics));
        let shutdown = shutdown.clone();
        tasks.spawn(async move { listener.run(shutdown).await });
    }
    let registrations = tasks.len();
    let (mut status, mut rejected) = (ExitStatus::Success, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(err @ ListenerError::VersionRejected { .. })) => {
                // This registration stops; the others keep serving (they may be accepted).
                eprintln!("error: {}", crate::errors::error_chain(&err));
                rejected += 1;
            }
            Ok(Err(err)) => {
                eprintln!("error: {}", crate::errors::error_chain(&err));
                status = err.exit_status();
                shutdown.cancel();
            }
            Err(err) => return Err(err).context("a listener task failed"),
        }
    }
    if rejected == registrations {
        return Ok(ExitStatus::VersionRejected);
    }
    Ok(status)
}

fn build_listener(
    registration: Registration,
    once: bool,
    executor: Arc<RunExecutor>,
    versions: Arc<VersionPolicy>,
) -> anyhow::Result<Listener<RunExecutor>> {
    let http = HttpClient::with_retry(RetryPolicy::NONE)?;
    let tokens = Arc::new(TokenProvider::for_registration(
        http.clone(),
        &registration,
    )?);
    let runner = &registration.runner;
    let scale = test_hook(TEST_TIMING_SCALE_ENV)?
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0);
    let timings = scale.map_or_else(Timings::official, Timings::scaled);
    let scaled = |d: Duration| scale.map_or(d, |s| d.mul_f64(s));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let identity = RunnerIdentity {
        agent_id: runner.agent_id,
        agent_name: runner.agent_name.clone(),
        pool_id: runner.pool_id,
        version: versions.current().version.to_string(),
        os: runner_os().to_owned(),
        architecture: runner_arch().to_owned(),
        owner_name: format!("{host} (PID: {})", std::process::id()),
    };
    let broker_url = runner
        .use_v2_flow
        .then(|| runner.server_url_v2.clone())
        .flatten();
    let cfg = ListenerConfig {
        identity,
        server_url: runner.server_url.clone(),
        broker_url,
        once: once || runner.ephemeral,
        ephemeral: runner.ephemeral,
        versions,
        state_dir: registration.dir.clone(),
        timings,
        shutdown_grace: scaled(SHUTDOWN_GRACE),
        cancel_kill_after: scaled(CANCEL_KILL_AFTER),
    };
    Ok(Listener::new(
        cfg,
        http,
        tokens,
        registration.key.clone(),
        executor,
    ))
}

/// Cancels `shutdown` at the first SIGINT, SIGTERM or SIGHUP (a closed terminal or session
/// stops the runner in order, as SIGTERM does).
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        _ = hup.recv() => tracing::info!("SIGHUP received, shutting down"),
    }
    shutdown.cancel();
}
