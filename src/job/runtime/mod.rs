//! The step runtime: runs a [`JobPlan`]'s steps in a VM, in order, and reports what happens as
//! [`JobEvent`]s (masked) and a final [`JobOutcome`].
//!
//! Owns: the job-level state between steps (job status, the job environment grown by
//! `GITHUB_ENV`, `PATH` prepends, the `steps` context, the masker), per-step preparation
//! (env and `steps`/`job`/`env` contexts, `if:` with the job status, `timeout-minutes`,
//! `continue-on-error`, display name), result rules (outcome vs conclusion) and the job
//! outputs. Running a prepared step is its kind's handler's job (`handler`: the step-handler
//! seam; `script`: `run:` steps, rendered and run with [`super::stepexec`]).
//!
//! ```text
//!  JobStarted ─► set-up (guest dirs, event.json) ─► for each step:
//!      env ─► if: (status: success | failure | cancelled) ─false─► Skipped
//!       │ true
//!       ▼
//!      StepStarted ─► handler by kind (script: render ─► execute_step; uses: refused)
//!        ─► job limits ─► continue-on-error ─► StepCompleted
//!       (job status: failure when a step's conclusion is Failed; cancelled when `cancel` fires)
//!  ─► job outputs (masked-changed values dropped) ─► JobCompleted
//! ```
//!
//! On cancellation the running step stops unless its condition still holds with status
//! `cancelled` (`always()`, `cancelled()`); later steps run only if their condition holds.

use chrono::Utc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::expr::{EvalContext, JobStatus, Object, Value};
use crate::job::events::{Annotation, AnnotationLevel, JobEvent};
use crate::job::filecmd;
use crate::job::mask::SecretMasker;
use crate::job::plan::{JobPlan, PlannedStep, RunDefaults, merge_env};
use crate::job::stepexec::runner_error;
use crate::job::template::TemplateEvaluator;
use crate::protocol::TaskResult;
use crate::vm::{GuestFile, Vm};

mod handler;
mod prepare;
mod script;

use handler::Handled;
pub use handler::action_not_supported;
use prepare::Prepared;

/// Mode of `event.json`.
const EVENT_FILE_MODE: u32 = 0o644;

/// How one step ended.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOutcome {
    /// Timeline id.
    pub id: Uuid,
    /// 1-based number.
    pub number: u32,
    /// Display name.
    pub display_name: String,
    /// Key in the `steps` context.
    pub context_name: String,
    /// `steps.<id>.outcome`: the result before `continue-on-error`.
    pub outcome: TaskResult,
    /// `steps.<id>.conclusion`: the final result.
    pub conclusion: TaskResult,
    /// `steps.<id>.outputs`.
    pub outputs: Vec<(String, String)>,
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    /// The job's result.
    pub result: TaskResult,
    /// Job outputs (masked-changed values dropped).
    pub outputs: Vec<(String, String)>,
    /// Every step, skipped ones included.
    pub steps: Vec<StepOutcome>,
    /// Every annotation raised (masked), steps' and the job's.
    pub annotations: Vec<Annotation>,
}

/// Job-level state carried from step to step.
struct JobState<'a> {
    plan: &'a JobPlan,
    events: mpsc::Sender<JobEvent>,
    masker: SecretMasker,
    contexts: Object,
    /// Job env (`environmentVariables`) plus `GITHUB_ENV` / `::set-env` of earlier steps.
    env: Vec<(String, String)>,
    path: Vec<String>,
    defaults: RunDefaults,
    failed: bool,
    outcome: JobOutcome,
    /// Bytes of outputs, environment, state and PATH entries the steps handed back so far.
    data_bytes: usize,
}

/// Most bytes of outputs, environment, state and PATH entries all steps of a job may hand back
/// (ghrunner-vm's limit: the agent keeps them for the rest of the job).
pub const JOB_DATA_MAX_BYTES: usize = 16 * 1024 * 1024;

/// Runs the plan's steps in `vm` and returns how the job ended. Events end with
/// `JobCompleted`. `cancel` is the job cancellation (the service's `JobCancellation`).
pub async fn run_steps<V: Vm>(
    vm: &V,
    plan: &JobPlan,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
) -> JobOutcome {
    let mut job = JobState::new(plan, events);
    job.send(JobEvent::JobStarted { at: Utc::now() }).await;
    match job.set_up(vm).await {
        Ok(()) => {
            for step in &plan.steps {
                job.run_step(vm, step, &cancel).await;
            }
        }
        Err(message) => {
            job.job_error(message).await;
            job.failed = true;
        }
    }
    job.finish(&cancel).await
}

impl<'a> JobState<'a> {
    fn new(plan: &'a JobPlan, events: mpsc::Sender<JobEvent>) -> Self {
        let mut masker = SecretMasker::new();
        for value in &plan.mask_values {
            masker.add_value(value);
        }
        if let Some(token) = &plan.id_token_request_token {
            masker.add_value(token);
        }
        let mut bad_regexes = 0usize;
        for regex in &plan.mask_regexes {
            if masker.add_regex(regex).is_err() {
                // Still masked literally; the regex itself cannot be used.
                masker.add_value(regex);
                bad_regexes += 1;
            }
        }
        if bad_regexes > 0 {
            tracing::warn!(count = bad_regexes, "mask hints that are not valid regexes");
        }
        JobState {
            plan,
            events,
            masker,
            contexts: plan.contexts.clone(),
            env: Vec::new(),
            path: Vec::new(),
            defaults: RunDefaults::default(),
            failed: false,
            data_bytes: 0,
            outcome: JobOutcome {
                result: TaskResult::Succeeded,
                outputs: Vec::new(),
                steps: Vec::new(),
                annotations: Vec::new(),
            },
        }
    }

    async fn send(&self, event: JobEvent) {
        // A closed receiver means nobody reports any more; the job still runs to completion.
        let _ = self.events.send(event).await;
    }

    /// Creates the guest folders and `event.json`, and evaluates the job env and defaults.
    async fn set_up<V: Vm>(&mut self, vm: &V) -> Result<(), String> {
        let layout = &self.plan.layout;
        let dirs = layout.directories().iter().map(|d| d.to_string()).collect();
        let event = GuestFile {
            path: layout.event_path.clone(),
            contents: self.plan.event_json.clone().into_bytes(),
            mode: EVENT_FILE_MODE,
        };
        vm.write_files(dirs, vec![event])
            .await
            .map_err(|err| format!("Preparing the job folders in the VM failed: {err}"))?;
        let ctx = EvalContext {
            contexts: &self.contexts,
            job_status: Some(JobStatus::Success),
            hash_files: None,
        };
        let evaluator = TemplateEvaluator::new(&ctx, &self.plan.file_table);
        let env = self
            .plan
            .evaluate_job_env(&evaluator)
            .map_err(|e| e.user_message())?;
        let defaults = self
            .plan
            .evaluate_run_defaults(&evaluator)
            .map_err(|e| e.user_message())?;
        self.env = env;
        self.defaults = defaults;
        Ok(())
    }

    fn status(&self, cancel: &CancellationToken) -> JobStatus {
        if cancel.is_cancelled() {
            JobStatus::Cancelled
        } else if self.failed {
            JobStatus::Failure
        } else {
            JobStatus::Success
        }
    }

    /// An error raised by the runner for the job itself (not a step).
    async fn job_error(&mut self, message: String) {
        self.job_annotation(runner_error(message)).await;
    }

    async fn job_annotation(&mut self, annotation: Annotation) {
        let annotation = Annotation {
            message: self.masker.mask(&annotation.message),
            ..annotation
        };
        self.send(JobEvent::Log {
            step_id: None,
            line: crate::job::commands::annotation_log_line(&annotation),
        })
        .await;
        self.send(JobEvent::Annotation {
            step_id: None,
            annotation: annotation.clone(),
        })
        .await;
        self.outcome.annotations.push(annotation);
    }

    /// Sets `job.status` and the `env` context of a step.
    fn step_contexts(&mut self, status: JobStatus, env: &[(String, String)]) {
        let word = match status {
            JobStatus::Success => "success",
            JobStatus::Failure => "failure",
            JobStatus::Cancelled => "cancelled",
        };
        if let Some(Value::Object(job)) = self.contexts.get_mut("job") {
            job.insert("status", Value::from(word));
        }
        let mut env_object = Object::new_case_sensitive();
        for (k, v) in env {
            env_object.insert(k.clone(), Value::from(v.as_str()));
        }
        self.contexts.insert("env", Value::Object(env_object));
    }

    fn set_github(&mut self, key: &str, value: &str) {
        if let Some(Value::Object(github)) = self.contexts.get_mut("github") {
            github.insert(key, Value::from(value));
        }
    }

    fn with_evaluator<T>(
        &self,
        status: JobStatus,
        f: impl FnOnce(TemplateEvaluator<'_>) -> T,
    ) -> T {
        let ctx = EvalContext {
            contexts: &self.contexts,
            job_status: Some(status),
            hash_files: None,
        };
        f(TemplateEvaluator::new(&ctx, &self.plan.file_table))
    }
}

impl JobState<'_> {
    async fn run_step<V: Vm>(&mut self, vm: &V, step: &PlannedStep, cancel: &CancellationToken) {
        let (settings, prepared) = self.prepare(step, cancel);
        self.send(JobEvent::StepStarted {
            step_id: step.id,
            number: step.number,
            name: self.masker.mask(&settings.display_name),
            at: Utc::now(),
        })
        .await;
        let mut exec_outcome = crate::job::stepexec::StepExecOutcome::default();
        let result = match prepared {
            Prepared::Skip => TaskResult::Skipped,
            Prepared::Fail(errors) => {
                for message in errors {
                    self.step_error(step.id, message).await;
                }
                TaskResult::Failed
            }
            Prepared::Ready(ready) => match handler::dispatch(self, vm, &ready, cancel).await {
                Handled::Refused(errors) => {
                    for message in errors {
                        self.step_error(step.id, message).await;
                    }
                    TaskResult::Failed
                }
                Handled::Ran(ran) => {
                    exec_outcome = ran;
                    self.enforce_job_limits(step.id, &mut exec_outcome).await;
                    self.outcome
                        .annotations
                        .extend(exec_outcome.annotations.iter().cloned());
                    exec_outcome.task_result()
                }
            },
        };
        let conclusion = if result == TaskResult::Failed && settings.continue_on_error {
            TaskResult::Succeeded
        } else {
            result
        };
        if conclusion == TaskResult::Failed {
            self.failed = true;
        }
        merge_env(&mut self.env, std::mem::take(&mut exec_outcome.env));
        filecmd::add_path_entries(&mut self.path, &exec_outcome.path);
        self.record_step(step, result, conclusion, &exec_outcome.outputs);
        self.outcome.steps.push(StepOutcome {
            id: step.id,
            number: step.number,
            display_name: settings.display_name,
            context_name: step.context_name.clone(),
            outcome: result,
            conclusion,
            outputs: exec_outcome.outputs,
        });
        self.send(JobEvent::StepCompleted {
            step_id: step.id,
            result: conclusion,
            at: Utc::now(),
        })
        .await;
    }

    /// Refuses what a step handed back when it would break the job's limits: a PATH longer than
    /// a variable may be, or more data than [`JOB_DATA_MAX_BYTES`] in total. The step fails,
    /// naming the limit, and its outputs, environment, state and PATH entries are dropped.
    async fn enforce_job_limits(
        &mut self,
        step_id: Uuid,
        outcome: &mut crate::job::stepexec::StepExecOutcome,
    ) {
        let pairs = |list: &[(String, String)]| -> usize {
            list.iter().map(|(k, v)| k.len() + v.len()).sum()
        };
        let step_bytes = pairs(&outcome.outputs)
            + pairs(&outcome.env)
            + pairs(&outcome.state)
            + outcome.path.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut path = self.path.clone();
        filecmd::add_path_entries(&mut path, &outcome.path);
        let path_bytes = path.iter().map(|p| p.len() + 1).sum::<usize>()
            + crate::job::script::DEFAULT_GUEST_PATH.len();
        let refusal = if !outcome.path.is_empty() && path_bytes > filecmd::MAX_ENV_VALUE_BYTES {
            Some(format!(
                "GITHUB_PATH: PATH would be {path_bytes} bytes; a variable may hold at most {} \
                 bytes (Linux refuses to start programs with a longer one)",
                filecmd::MAX_ENV_VALUE_BYTES
            ))
        } else if self.data_bytes + step_bytes > JOB_DATA_MAX_BYTES {
            Some(format!(
                "The job's steps handed back more than {} MiB of outputs, environment \
                 variables, state and PATH entries (ghrunner-vm's limit per job); this step's \
                 are dropped.",
                JOB_DATA_MAX_BYTES >> 20
            ))
        } else {
            None
        };
        match refusal {
            None => self.data_bytes += step_bytes,
            Some(message) => {
                self.step_error(step_id, message).await;
                outcome.outputs.clear();
                outcome.env.clear();
                outcome.state.clear();
                outcome.path.clear();
                outcome.result = Some(outcome.task_result().merge(TaskResult::Failed));
            }
        }
    }

    async fn step_error(&mut self, step_id: Uuid, message: String) {
        let annotation = runner_error(self.masker.mask(&message));
        self.send(JobEvent::Log {
            step_id: Some(step_id),
            line: crate::job::commands::annotation_log_line(&annotation),
        })
        .await;
        self.send(JobEvent::Annotation {
            step_id: Some(step_id),
            annotation: annotation.clone(),
        })
        .await;
        self.outcome.annotations.push(annotation);
    }

    /// Records the step in the `steps` context (not for generated `__` names).
    fn record_step(
        &mut self,
        step: &PlannedStep,
        outcome: TaskResult,
        conclusion: TaskResult,
        outputs: &[(String, String)],
    ) {
        if !step.records_outputs() {
            return;
        }
        let mut entry = Object::new();
        entry.insert(
            "outputs",
            Value::Object(
                outputs
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
                    .collect(),
            ),
        );
        entry.insert("outcome", Value::from(outcome.context_word()));
        entry.insert("conclusion", Value::from(conclusion.context_word()));
        if let Some(Value::Object(steps)) = self.contexts.get_mut("steps") {
            steps.insert(step.context_name.clone(), Value::Object(entry));
        }
    }

    /// Evaluates the job outputs and completes the job.
    async fn finish(mut self, cancel: &CancellationToken) -> JobOutcome {
        let status = self.status(cancel);
        let env = self.env.clone();
        self.step_contexts(status, &env);
        let outputs = self.with_evaluator(status, |e| self.plan.evaluate_job_outputs(&e));
        match outputs {
            Ok(outputs) => {
                for (name, value) in outputs {
                    if self.masker.mask(&value) == value {
                        self.outcome.outputs.push((name, value));
                    } else {
                        let warning = Annotation {
                            level: AnnotationLevel::Warning,
                            ..runner_error(format!(
                                "Skip output '{name}' since it may contain secret."
                            ))
                        };
                        self.job_annotation(warning).await;
                    }
                }
            }
            Err(err) => {
                self.job_error(err.user_message()).await;
                self.failed = true;
            }
        }
        self.outcome.result = if cancel.is_cancelled() {
            TaskResult::Canceled
        } else if self.failed {
            TaskResult::Failed
        } else {
            TaskResult::Succeeded
        };
        self.send(JobEvent::JobCompleted {
            result: self.outcome.result,
            outputs: self.outcome.outputs.clone(),
            at: Utc::now(),
        })
        .await;
        self.outcome
    }
}

#[cfg(test)]
mod tests;
