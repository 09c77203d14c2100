//! The executors of `ghrunner-vm run`: QEMU VMs, and, in builds with the `test-hooks` cargo
//! feature only, the test doubles the hidden environment variables select (see [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use super::backend::{QemuExecutor, host_runtime, qemu_backend};
use crate::client::HttpClient;
use crate::config::Settings;
use crate::config::runner::Registration;
use crate::job::executor::{HostRuntime, ServiceReports, VmJobExecutor};
use crate::job::lifecycle::{ExecutorError, JobExecutor, JobOutcome};
use crate::metrics::Metrics;
use crate::protocol::TaskResult;
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::lifecycle::VariableValue;
use crate::vm::null::NullHypervisor;
use crate::vm::qemu::Qemu;

/// Hidden test hook selecting the fake executor (see the module docs).
pub const TEST_EXECUTOR_ENV: &str = "GHRUNNER_VM_TEST_EXECUTOR";
/// Hidden test hook selecting the [`NullHypervisor`] (see the module docs).
pub const TEST_HYPERVISOR_ENV: &str = "GHRUNNER_VM_TEST_HYPERVISOR";
/// Hidden test hook: multiply every listener delay by this factor (e.g. `0.01`).
pub const TEST_TIMING_SCALE_ENV: &str = "GHRUNNER_VM_TEST_TIMING_SCALE";

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
    pub fn executor(&self, registration: &Registration) -> RunExecutor {
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
    pub fn metrics(&self) -> Arc<Metrics> {
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
        message: AgentJobRequestMessage,
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
/// registrations talk to `servers` (the egress policy lets guests reach them); job reports go
/// through `http`.
pub async fn build_executor(
    dir: &std::path::Path,
    settings: Settings,
    servers: &[url::Url],
    http: HttpClient,
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
        let runtime = host_runtime(dir, settings, null, http)?;
        return Ok(ExecutorSource::Null(Box::new(runtime)));
    }
    let qemu = qemu_backend(dir, &settings, servers).await?;
    host_runtime(dir, settings, qemu, http).map(|runtime| ExecutorSource::Vm(Box::new(runtime)))
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
        _message: AgentJobRequestMessage,
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
