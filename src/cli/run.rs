//! `ghrunner-vm run`: one listener per registration under `<dir>/runners/`, each serving one
//! job at a time, until SIGINT/SIGTERM (`--once`, or an ephemeral registration: one job).
//!
//! On a signal the listeners stop polling, give a running job
//! [`SHUTDOWN_GRACE`](crate::listener::SHUTDOWN_GRACE) to finish, then cancel it (reported
//! `canceled`), delete their sessions and exit 0.
//!
//! Jobs run in fresh QEMU VMs ([`super::run_vm`]): each registration gets its own executor,
//! all sharing the host's VM budget and metrics (`--metrics-addr`); VMs orphaned by a previous
//! agent are reaped at start-up. For tests and benchmarks only, in builds with the `test-hooks`
//! cargo feature (a release build refuses them), hidden environment variables replace the VMs
//! (a loud warning is logged, since job code then never runs):
//! `GHRUNNER_VM_TEST_EXECUTOR=sleep:<milliseconds>` selects a fake executor that waits that long
//! (or until cancelled) and reports success with the output `slept=<milliseconds>`;
//! `GHRUNNER_VM_TEST_HYPERVISOR=null[:<milliseconds>]` keeps the real executor (images, budget,
//! planning, reporting, hooks, metrics) on [`NullHypervisor`] VMs whose commands take that long.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::GlobalArgs;
use super::run_vm::{QemuExecutor, host_runtime, load_settings, qemu_backend, serve_metrics};
use crate::client::TokenProvider;
use crate::client::backoff::Timings;
use crate::client::http::{HttpClient, RetryPolicy, runner_arch};
use crate::client::session::RunnerIdentity;
use crate::config::Settings;
use crate::config::runner::{Registration, list_registration_dirs};
use crate::exit::ExitStatus;
use crate::job::executor::{HostRuntime, ServiceReports, VmJobExecutor};
use crate::job::lifecycle::{ExecutorError, JobExecutor, JobOutcome};
use crate::listener::jobs::runner_os;
use crate::listener::{CANCEL_KILL_AFTER, Listener, ListenerConfig, ListenerError, SHUTDOWN_GRACE};
use crate::metrics::Metrics;
use crate::protocol::TaskResult;
use crate::protocol::lifecycle::VariableValue;
use crate::version::VersionPolicy;
use crate::vm::null::NullHypervisor;
use crate::vm::qemu::Qemu;

/// Hidden test hook selecting the fake executor (see the module docs).
pub const TEST_EXECUTOR_ENV: &str = "GHRUNNER_VM_TEST_EXECUTOR";
/// Hidden test hook selecting the [`NullHypervisor`] (see the module docs).
pub const TEST_HYPERVISOR_ENV: &str = "GHRUNNER_VM_TEST_HYPERVISOR";
/// Hidden test hook: multiply every listener delay by this factor (e.g. `0.01`).
pub const TEST_TIMING_SCALE_ENV: &str = "GHRUNNER_VM_TEST_TIMING_SCALE";

/// Listen for jobs and run each in a fresh VM, until SIGINT or SIGTERM.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run one job, then exit (also the behaviour of an `--ephemeral` registration).
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 [default: off].
    #[arg(long, value_name = "ADDR", env = "GHRUNNER_VM_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

/// The executor `run` uses.
pub enum RunExecutor {
    /// The test executor selected by [`TEST_EXECUTOR_ENV`].
    Sleep(SleepExecutor),
    /// Jobs in QEMU VMs.
    Vm(Box<QemuExecutor>),
    /// Jobs on the null hypervisor selected by [`TEST_HYPERVISOR_ENV`].
    Null(Box<VmJobExecutor<NullHypervisor, ServiceReports>>),
}

/// Where the executors of one `run` come from.
pub enum ExecutorSource {
    /// The test executor.
    Sleep(SleepExecutor),
    /// The VM runtime shared by every registration.
    Vm(Box<HostRuntime<Qemu>>),
    /// The null-hypervisor runtime.
    Null(Box<HostRuntime<NullHypervisor>>),
}

impl ExecutorSource {
    /// The executor of one registration.
    fn executor(&self, registration: &Registration) -> RunExecutor {
        match self {
            ExecutorSource::Sleep(sleep) => RunExecutor::Sleep(sleep.clone()),
            ExecutorSource::Vm(runtime) => {
                RunExecutor::Vm(Box::new(runtime.executor(&registration.runner)))
            }
            ExecutorSource::Null(runtime) => {
                RunExecutor::Null(Box::new(runtime.executor(&registration.runner)))
            }
        }
    }

    /// The metrics of the process.
    fn metrics(&self) -> Arc<Metrics> {
        match self {
            ExecutorSource::Sleep(_) => Arc::new(Metrics::default()),
            ExecutorSource::Vm(runtime) => Arc::clone(&runtime.metrics),
            ExecutorSource::Null(runtime) => Arc::clone(&runtime.metrics),
        }
    }
}

impl JobExecutor for RunExecutor {
    async fn execute(
        &self,
        message: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        match self {
            RunExecutor::Sleep(sleep) => sleep.execute(message, cancel).await,
            RunExecutor::Vm(vm) => vm.execute(message, cancel).await,
            RunExecutor::Null(null) => null.execute(message, cancel).await,
        }
    }

    fn prepare(&self, job_id: &str) {
        match self {
            RunExecutor::Sleep(_) => {}
            RunExecutor::Vm(vm) => vm.prepare(job_id),
            RunExecutor::Null(null) => null.prepare(job_id),
        }
    }

    fn discard_prepared(&self) {
        match self {
            RunExecutor::Sleep(_) => {}
            RunExecutor::Vm(vm) => vm.discard_prepared(),
            RunExecutor::Null(null) => null.discard_prepared(),
        }
    }

    fn release_prepared(&self, job_id: &str) {
        match self {
            RunExecutor::Sleep(_) => {}
            RunExecutor::Vm(vm) => vm.release_prepared(job_id),
            RunExecutor::Null(null) => null.release_prepared(job_id),
        }
    }
}

/// The value of a hidden test hook. Only builds with the `test-hooks` cargo feature (the test
/// suite's) honour them.
#[cfg(feature = "test-hooks")]
pub fn test_hook(name: &str) -> anyhow::Result<Option<String>> {
    Ok(std::env::var(name).ok())
}

/// The value of a hidden test hook: this build has none, so a hook that is set is refused (a
/// release binary never fakes a job's success).
#[cfg(not(feature = "test-hooks"))]
pub fn test_hook(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(_) => anyhow::bail!(
            "{name} is set, but this ghrunner-vm has no test hooks (they exist only in builds \
             with the `test-hooks` cargo feature, for the test suite): unset {name}"
        ),
    }
}

/// Builds what the executors of `run` come from, for the runner directory `dir` whose
/// registrations talk to `servers` (the egress policy lets guests reach them).
pub async fn build_executor(
    dir: &std::path::Path,
    settings: Settings,
    servers: &[url::Url],
) -> anyhow::Result<ExecutorSource> {
    if let Some(spec) = test_hook(TEST_EXECUTOR_ENV)? {
        tracing::warn!("{TEST_EXECUTOR_ENV} is set: jobs are NOT run, they only sleep (test hook)");
        return SleepExecutor::parse(&spec).map(ExecutorSource::Sleep);
    }
    if let Some(spec) = test_hook(TEST_HYPERVISOR_ENV)? {
        let null = NullHypervisor::from_spec(&spec).with_context(|| {
            format!("{TEST_HYPERVISOR_ENV} must be null or null:<milliseconds>, not {spec:?}")
        })?;
        tracing::warn!(
            "{TEST_HYPERVISOR_ENV} is set: jobs run on the null hypervisor, none of their \
             commands is executed (test hook)"
        );
        let runtime = host_runtime(dir, settings, null)?;
        return Ok(ExecutorSource::Null(Box::new(runtime)));
    }
    let qemu = qemu_backend(dir, &settings, servers).await?;
    host_runtime(dir, settings, qemu).map(|runtime| ExecutorSource::Vm(Box::new(runtime)))
}

/// A fake executor for tests: waits, or stops early when cancelled.
#[derive(Debug, Clone)]
pub struct SleepExecutor {
    /// How long a job "runs".
    pub duration: Duration,
}

impl SleepExecutor {
    fn parse(spec: &str) -> anyhow::Result<SleepExecutor> {
        let millis = spec
            .strip_prefix("sleep:")
            .and_then(|ms| ms.parse::<u64>().ok())
            .with_context(|| {
                format!("{TEST_EXECUTOR_ENV} must be sleep:<milliseconds>, not {spec:?}")
            })?;
        Ok(SleepExecutor {
            duration: Duration::from_millis(millis),
        })
    }
}

impl JobExecutor for SleepExecutor {
    async fn execute(
        &self,
        _message: serde_json::Value,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        tokio::select! {
            _ = cancel.cancelled() => Ok(JobOutcome::with_result(TaskResult::Canceled)),
            _ = tokio::time::sleep(self.duration) => {
                let outputs = BTreeMap::from([(
                    "slept".to_owned(),
                    VariableValue { value: self.duration.as_millis().to_string(), is_secret: false },
                )]);
                Ok(JobOutcome { outputs, ..JobOutcome::with_result(TaskResult::Succeeded) })
            }
        }
    }
}

/// Runs `run`.
pub async fn run(args: RunArgs, global: &GlobalArgs) -> anyhow::Result<ExitStatus> {
    let dir = global.runner_dir()?;
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
    let source = build_executor(&dir, settings, &servers).await?;
    let metrics = source.metrics();
    metrics.watch_runner_version(Arc::clone(&versions));
    let _refresh = versions.spawn_daily_refresh();
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, Arc::clone(&metrics)).await?;
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    for registration in registrations {
        let executor = Arc::new(source.executor(&registration));
        let listener = build_listener(registration, args.once, executor, Arc::clone(&versions))?
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
