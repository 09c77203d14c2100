//! The real [`JobExecutor`]: one job in one fresh VM, from the acquired message to the outcome
//! the lifecycle completes the job with.
//!
//! ```text
//!  message ─► reporter ─► job_started hook ─► image (labels ∩ images, else default_image)
//!     ─► budget (CPUs, memory) ─► launch VM `vm-<uuid>` ──┬─ plan (while it boots) ─┐
//!                                                         └──── booted ◄──────────┘
//!     ─► run_steps (events ─► reporter) ─► destroy VM ∥ flush report ─► job_completed hook
//!     ─► JobOutcome (result, outputs, step results, annotations)
//! ```
//!
//! Anything that goes wrong before the steps run (no image for the runner's labels, an
//! unusable image, a plan error, a VM that does not boot, a failed `job_started` hook) fails
//! the job with a clear job-level log line and error annotation, so it shows in the GitHub UI;
//! the executor itself stays healthy for the next job. The VM is destroyed on every path: the
//! normal one explicitly, cancellation and panics through `Vm`'s `Drop` as the backstop.
//! Only a reporter that cannot start is an [`ExecutorError`] (the message arrives typed and
//! validated by the listener).
//!
//! The executor runs as a [`RunnerIdentity`] (name and labels): a registration's, or one a
//! run without registration makes up. VMs get names of their own (`vm-<uuid>`), never the
//! job's id; the job↔VM link is logged (`launching the job's VM`) and shown in the job log.
//!
//! On the broker path the listener calls [`JobExecutor::prepare`] when a job is offered: the
//! image is known from the registration, so the VM starts booting (if the budget has room right
//! now) while `acquirejob` runs, and `execute` picks it up instead of launching. A job that is
//! not acquired gets [`JobExecutor::discard_prepared`]; a prepared VM for another job id is
//! killed when the next job starts.

use crate::errors::ErrorChain;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::image::Image;
use crate::job::budget::{BudgetGrant, VmBudget};
use crate::job::events::JobEvent;
use crate::job::hooks::{HOOK_TIMEOUT, HookFacts, HookKind, Hooks, run_hook};
use crate::job::lifecycle::{BoxError, ExecutorError, JobExecutor, JobOutcome};
use crate::job::plan::{JobPlan, RunnerFacts};
use crate::job::report::{ReportOutcome, Reporter};
use crate::job::runtime::{self, run_steps};
use crate::metrics::Metrics;
use crate::protocol::job::AgentJobRequestMessage;
use crate::protocol::lifecycle::VariableValue;
use crate::vm::{Hypervisor, LaunchSource, NetworkPolicy, Vm, VmError, VmSpec};

mod failure;
mod image;
mod setup;
#[cfg(test)]
mod tests;

use failure::{SetUpError, cancelled_job, fail_job};
pub use image::{ImageCatalog, ImageChoiceError, ImageSelectError, SelectedImage, select_image};
pub use setup::{
    HostRuntime, RESULTS_ENDPOINT_VARIABLE, ReportSetupError, RunnerIdentity, ServiceReports,
    report_target,
};

/// What every job's VM gets (`vm:` in `config.yaml`).
#[derive(Debug, Clone)]
pub struct VmDefaults {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Guest networking.
    pub network: NetworkPolicy,
    /// Boot timeout.
    pub boot_timeout: Duration,
}

impl Default for VmDefaults {
    fn default() -> Self {
        VmDefaults {
            cpus: 2,
            memory_mib: 2048,
            network: NetworkPolicy::User,
            boot_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything an executor knows about the runner it is and its host.
#[derive(Debug, Clone, Default)]
pub struct ExecutorConfig {
    /// The runner's name and labels (a registration's, or made up without one).
    pub runner: RunnerIdentity,
    /// Images by label.
    pub catalog: ImageCatalog,
    /// VM settings.
    pub vm: VmDefaults,
    /// Host hooks.
    pub hooks: Hooks,
    /// Directory for each VM's serial console log (`<VM name>.console.log`), if any.
    pub console_dir: Option<PathBuf>,
}

/// A started report of one job: where events go, and how to finish it.
pub struct JobReport {
    /// The reporter's event sender.
    pub events: mpsc::Sender<JobEvent>,
    /// Flushes everything once every sender is dropped.
    pub finish: BoxFuture<'static, ReportOutcome>,
}

impl From<Reporter> for JobReport {
    fn from(reporter: Reporter) -> Self {
        JobReport {
            events: reporter.events(),
            finish: Box::pin(reporter.finish()),
        }
    }
}

/// Starts the reporter of a job (the GitHub paths in production; collectors in tests).
pub trait ReportFactory: Send + Sync + 'static {
    /// Starts reporting `message` as runner `runner_name`.
    fn start(
        &self,
        message: &AgentJobRequestMessage,
        runner_name: &str,
    ) -> Result<JobReport, BoxError>;
}

/// A VM launched for a job that is still being acquired ([`JobExecutor::prepare`]).
struct Prelaunch<V> {
    /// The job it is for.
    job_id: uuid::Uuid,
    grant: Option<BudgetGrant>,
    started: Instant,
    launch: LaunchTask<V>,
}

/// A launch running on its own task. Dropping it aborts the launch (which kills anything it
/// started) or, once finished, drops the VM (which kills it).
struct LaunchTask<V>(tokio::task::JoinHandle<Result<V, VmError>>);

impl<V> Drop for LaunchTask<V> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<V> LaunchTask<V> {
    async fn join(mut self) -> Result<V, VmError> {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(err) => Err(VmError::Command {
                program: "the VM launch task".into(),
                stderr: err.to_string(),
            }),
        }
    }
}

/// A VM being launched: its budget grant, when the launch began, and the launch itself.
type Launching<'a, V> = (
    Option<BudgetGrant>,
    Instant,
    BoxFuture<'a, Result<V, VmError>>,
);

/// Runs jobs in fresh VMs of `H`.
pub struct VmJobExecutor<H: Hypervisor, R: ReportFactory> {
    hypervisor: Arc<H>,
    reports: R,
    config: ExecutorConfig,
    budget: Option<VmBudget>,
    metrics: Option<Arc<Metrics>>,
    prelaunch: std::sync::Mutex<Option<Prelaunch<H::Vm>>>,
}

impl<H: Hypervisor, R: ReportFactory> VmJobExecutor<H, R> {
    /// An executor without a shared budget or metrics.
    pub fn new(hypervisor: Arc<H>, reports: R, config: ExecutorConfig) -> Self {
        VmJobExecutor {
            hypervisor,
            reports,
            config,
            budget: None,
            metrics: None,
            prelaunch: std::sync::Mutex::new(None),
        }
    }

    /// Takes the VM prepared for `job_id`, if any; a VM prepared for another job is dropped
    /// (killed).
    fn take_prepared(&self, job_id: uuid::Uuid) -> Option<Prelaunch<H::Vm>> {
        let taken = self.prelaunch_slot().take()?;
        if taken.job_id == job_id {
            Some(taken)
        } else {
            tracing::info!(prepared = %taken.job_id, job = %job_id, "discarding a VM prepared for another job");
            None
        }
    }

    fn prelaunch_slot(&self) -> std::sync::MutexGuard<'_, Option<Prelaunch<H::Vm>>> {
        // The slot holds plain data; a panic elsewhere cannot leave it inconsistent.
        self.prelaunch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shares the host's VM budget with other executors.
    pub fn with_budget(mut self, budget: VmBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Counts jobs and VMs in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Runs a parsed job with its report started; returns the runtime's outcome (every event,
    /// `JobCompleted` included, has been sent).
    async fn run_job(
        &self,
        message: &AgentJobRequestMessage,
        events: &mpsc::Sender<JobEvent>,
        hook_facts: &HookFacts,
        cancel: &CancellationToken,
    ) -> runtime::JobOutcome {
        let log = |line: String| async move {
            let _ = events
                .send(JobEvent::Log {
                    step_id: None,
                    line,
                })
                .await;
        };
        log(format!("Runner name: '{}'", self.config.runner.name)).await;
        if let Err(err) = run_hook(
            &self.config.hooks,
            HookKind::JobStarted,
            hook_facts,
            HOOK_TIMEOUT,
        )
        .await
        {
            return fail_job(events, SetUpError::Hook(err)).await;
        }
        let SelectedImage { label, image } = match self.image() {
            Ok(found) => found,
            Err(err) => return fail_job(events, SetUpError::Image(err)).await,
        };
        log(format!(
            "VM image: '{label}' ({}, {} {})",
            image.dir.display(),
            image.manifest.name,
            image.manifest.arch
        ))
        .await;
        let (grant, started, mut launch) = match self.take_prepared(message.job_id) {
            Some(p) => {
                log("Booting the VM started while the job was being acquired".to_owned()).await;
                let launch: BoxFuture<'_, _> = Box::pin(p.launch.join());
                (p.grant, p.started, launch)
            }
            None => match self
                .launch_now(message.job_id, &image, events, cancel)
                .await
            {
                Ok(launching) => launching,
                Err(ended) => return ended,
            },
        };
        // Poll the launch once so the VM starts booting, then plan while it boots.
        let early = futures::poll!(launch.as_mut());
        let facts = RunnerFacts::from_image(&self.config.runner.name, &image.manifest);
        let plan = match JobPlan::new(message, &facts) {
            Ok(plan) => plan,
            // Dropping the launch future kills anything it started.
            Err(err) => return fail_job(events, SetUpError::Plan(err)).await,
        };
        let launched = match early {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => tokio::select! {
                result = launch => result,
                () = cancel.cancelled() => return cancelled_job(events, "booting its VM").await,
            },
        };
        let vm = match launched {
            Ok(vm) => vm,
            Err(err) => return fail_job(events, SetUpError::Boot(err)).await,
        };
        let took = started.elapsed();
        let _active = self.metrics.as_ref().map(|m| {
            m.vm_booted(took);
            m.vm_active()
        });
        tracing::info!(job = %message.job_id, vm = vm.id(), boot_secs = took.as_secs_f64(), "VM booted");
        log(format!(
            "VM {} booted in {:.1}s",
            vm.id(),
            took.as_secs_f64()
        ))
        .await;
        let steps = AssertUnwindSafe(run_steps(&vm, &plan, events.clone(), cancel.clone()));
        let outcome = match steps.catch_unwind().await {
            Ok(outcome) => outcome,
            Err(_) => {
                tracing::error!(vm = vm.id(), "the step runtime panicked");
                fail_job(
                    events,
                    "the runner hit an internal error while running the steps",
                )
                .await
            }
        };
        if let Err(err) = vm.destroy().await {
            tracing::warn!(error = %ErrorChain(&err), "destroying the VM failed");
        }
        drop(grant);
        outcome
    }

    /// Waits for budget, then starts launching the job's VM; `Err` is the ended job (the
    /// request exceeds the budget, or the job was cancelled while waiting).
    async fn launch_now(
        &self,
        job_id: uuid::Uuid,
        image: &Image,
        events: &mpsc::Sender<JobEvent>,
        cancel: &CancellationToken,
    ) -> Result<Launching<'_, H::Vm>, runtime::JobOutcome> {
        let spec = self.spec(job_id, image.clone());
        let grant = match &self.budget {
            None => None,
            Some(budget) => {
                let wanted = budget.acquire(spec.cpus, u64::from(spec.memory_mib));
                tokio::select! {
                    grant = wanted => match grant {
                        Ok(grant) => Some(grant),
                        Err(err) => return Err(fail_job(events, SetUpError::Budget(err)).await),
                    },
                    () = cancel.cancelled() => {
                        return Err(cancelled_job(events, "waiting for VM capacity").await)
                    }
                }
            }
        };
        let line = format!(
            "Booting a VM with {} CPUs and {} MiB of memory",
            spec.cpus, spec.memory_mib
        );
        let _ = events
            .send(JobEvent::Log {
                step_id: None,
                line,
            })
            .await;
        tracing::debug!(job = %job_id, vm = %spec.name, "launching the job's VM");
        Ok((
            grant,
            Instant::now(),
            Box::pin(self.hypervisor.launch(spec)),
        ))
    }

    /// The image for the runner's labels, loaded.
    fn image(&self) -> Result<SelectedImage, ImageSelectError> {
        select_image(&self.config.runner.labels, &self.config.catalog)
    }

    /// The spec of a VM for `job_id`: a name of its own (`vm-<uuid>`); the job is only what
    /// it is launched for.
    fn spec(&self, job_id: uuid::Uuid, image: Image) -> VmSpec {
        let vm = &self.config.vm;
        let name = format!("vm-{}", uuid::Uuid::new_v4());
        VmSpec {
            job: Some(job_id.to_string()),
            source: LaunchSource::ColdBoot,
            console_log: self
                .config
                .console_dir
                .as_ref()
                .map(|d| d.join(format!("{name}.console.log"))),
            name,
            image,
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            disk_gib: None,
            network: vm.network,
            boot_timeout: vm.boot_timeout,
        }
    }
}

impl<H: Hypervisor, R: ReportFactory> JobExecutor for VmJobExecutor<H, R> {
    /// Boots the job's VM while the job is acquired, if its image is usable and the budget has
    /// room right now (otherwise `execute` does everything, reporting any problem in the job log).
    fn prepare(&self, job_id: &str) {
        let Ok(job_id) = job_id.parse::<uuid::Uuid>() else {
            return;
        };
        let Ok(SelectedImage { image, .. }) = self.image() else {
            return;
        };
        let spec = self.spec(job_id, image);
        let grant = match &self.budget {
            None => None,
            Some(budget) => match budget.try_acquire(spec.cpus, u64::from(spec.memory_mib)) {
                Some(grant) => Some(grant),
                None => return,
            },
        };
        let hypervisor = Arc::clone(&self.hypervisor);
        tracing::debug!(job = %job_id, vm = %spec.name, "booting the VM while the job is acquired");
        let launch = LaunchTask(tokio::spawn(async move { hypervisor.launch(spec).await }));
        *self.prelaunch_slot() = Some(Prelaunch {
            job_id,
            grant,
            started: Instant::now(),
            launch,
        });
    }

    fn discard_prepared(&self) {
        if let Some(p) = self.prelaunch_slot().take() {
            tracing::info!(job = %p.job_id, "the job was not acquired; discarding its VM");
        }
    }

    fn release_prepared(&self, job_id: &str) {
        let Ok(job_id) = job_id.parse::<uuid::Uuid>() else {
            return;
        };
        let mut slot = self.prelaunch_slot();
        if slot.as_ref().is_some_and(|p| p.job_id == job_id) {
            // Dropping the prelaunch kills the VM and returns its budget.
            drop(slot.take());
            tracing::info!(job = %job_id, "the job ended before it ran; its prepared VM is discarded");
        }
    }

    async fn execute(
        &self,
        message: AgentJobRequestMessage,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ExecutorError> {
        let report = self
            .reports
            .start(&message, &self.config.runner.name)
            .map_err(|source| ExecutorError { source })?;
        if let Some(m) = &self.metrics {
            m.job_started();
        }
        let mut facts = hook_facts(&message, &self.config.runner.name);
        tracing::info!(job = %message.job_id, repository = %facts.repository, "job started");
        let outcome = self
            .run_job(&message, &report.events, &facts, &cancel)
            .await;
        drop(report.events);
        let reported = report.finish.await;
        facts.result = Some(outcome.result.as_str().to_owned());
        if let Err(err) = run_hook(
            &self.config.hooks,
            HookKind::JobCompleted,
            &facts,
            HOOK_TIMEOUT,
        )
        .await
        {
            tracing::warn!(error = %ErrorChain(&err), "job_completed hook failed");
        }
        if let Some(m) = &self.metrics {
            m.job_finished(outcome.result);
        }
        tracing::info!(job = %message.job_id, result = outcome.result.as_str(), "job finished");
        Ok(lifecycle_outcome(outcome, reported))
    }
}

/// Combines the runtime's outcome (result, outputs) with the report's `completejob` parts.
pub fn lifecycle_outcome(outcome: runtime::JobOutcome, reported: ReportOutcome) -> JobOutcome {
    let outputs = outcome
        .outputs
        .into_iter()
        .map(|(name, value)| {
            let value = VariableValue {
                value,
                is_secret: false,
            };
            (name, value)
        })
        .collect();
    JobOutcome {
        result: outcome.result,
        outputs,
        step_results: reported.completion.step_results,
        annotations: reported.completion.annotations,
    }
}

/// What hooks are told about a job.
pub fn hook_facts(message: &AgentJobRequestMessage, runner_name: &str) -> HookFacts {
    let github = |key: &str| {
        message
            .context("github")
            .and_then(|g| g.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    let job = match github("job") {
        job if job.is_empty() => message.job_name.clone(),
        job => job,
    };
    HookFacts {
        repository: github("repository"),
        run_id: github("run_id"),
        job,
        workflow: github("workflow"),
        runner_name: runner_name.to_owned(),
        result: None,
    }
}
