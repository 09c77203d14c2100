//! Preparing a step before a handler runs it, the same for every kind of step: its env
//! (evaluated against the job env) and the `steps`/`job`/`env`/`github` contexts, the `if:`
//! condition with the job status, `continue-on-error` and the display name, ending in a
//! [`ReadyStep`] or the reason the step is skipped or fails. Also here: the settings a handler
//! evaluates when it starts the step (`timeout-minutes`, whether it keeps running on
//! cancellation, the workflow-command settings).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::JobState;
use super::handler::ReadyStep;
use crate::expr::{JobStatus, Value};
use crate::job::commands::{
    ALLOW_UNSECURE_COMMANDS, ALLOW_UNSECURE_STOP_TOKENS, CommandConfig, parse_bool_setting,
};
use crate::job::plan::{JobPlan, PlannedStep, merge_env};

/// What preparing a step decided.
pub(super) enum Prepared<'p> {
    /// The condition is false.
    Skip,
    /// The step cannot run; fail it with these errors.
    Fail(Vec<String>),
    /// Hand it to its handler.
    Ready(ReadyStep<'p>),
}

/// Values of a step evaluated before it runs.
pub(super) struct StepSettings {
    pub(super) display_name: String,
    pub(super) continue_on_error: bool,
}

impl JobState<'_> {
    /// Builds the step's env and contexts, evaluates its condition and settings.
    pub(super) fn prepare<'p>(
        &mut self,
        step: &'p PlannedStep,
        cancel: &CancellationToken,
    ) -> (StepSettings, Prepared<'p>) {
        let status = self.status(cancel);
        self.set_github("action", &step.name);
        self.set_github("action_repository", "");
        self.set_github("action_ref", "");
        let job_env = self.env.clone();
        self.step_contexts(status, &job_env);
        let mut settings = StepSettings {
            display_name: step.display_name(None),
            continue_on_error: false,
        };
        // The step env is evaluated against the job env, then becomes part of `env`.
        let step_env = match &step.env {
            None => Ok(Vec::new()),
            Some(token) => self.with_evaluator(status, |e| e.evaluate_string_map(token)),
        };
        let mut env = job_env;
        match step_env {
            Ok(pairs) => merge_env(&mut env, pairs),
            Err(err) => return (settings, Prepared::Fail(vec![err.user_message()])),
        }
        self.step_contexts(status, &env);
        settings.display_name = self.with_evaluator(status, |e| step.display_name(Some(&e)));
        match self.with_evaluator(status, |e| e.evaluate_condition(&step.condition)) {
            Ok(true) => {}
            Ok(false) => return (settings, Prepared::Skip),
            Err(err) => {
                let message = format!(
                    "The step's condition '{}' could not be evaluated: {err}",
                    step.condition
                );
                return (settings, Prepared::Fail(vec![message]));
            }
        }
        if let Some(token) = &step.continue_on_error {
            match self.with_evaluator(status, |e| e.evaluate_bool(token)) {
                Ok(value) => settings.continue_on_error = value,
                Err(err) => return (settings, Prepared::Fail(vec![err.user_message()])),
            }
        }
        let ready = ReadyStep {
            step,
            env,
            display_name: settings.display_name.clone(),
        };
        (settings, Prepared::Ready(ready))
    }

    /// The step's `timeout-minutes` (as written, for the message, and as a duration); `None`
    /// when absent, not positive or null.
    pub(super) fn step_timeout(
        &self,
        step: &PlannedStep,
    ) -> Result<Option<(f64, Duration)>, String> {
        let Some(token) = &step.timeout_minutes else {
            return Ok(None);
        };
        match self.with_evaluator(JobStatus::Success, |e| e.evaluate(token)) {
            Ok(Value::Number(minutes)) if minutes > 0.0 && minutes.is_finite() => {
                Ok(Some((minutes, Duration::from_secs_f64(minutes * 60.0))))
            }
            Ok(Value::Number(_)) | Ok(Value::Null) => Ok(None),
            Ok(other) => Err(format!(
                "timeout-minutes must be a number, got {}",
                crate::job::template::value_kind(&other)
            )),
            Err(err) => Err(err.user_message()),
        }
    }

    /// True if the step keeps running when the job is cancelled: its condition holds with
    /// status `cancelled` (`always()`, `cancelled()`).
    pub(super) fn keeps_running_on_cancel(&self, step: &PlannedStep) -> bool {
        self.with_evaluator(JobStatus::Cancelled, |e| {
            e.evaluate_condition(&step.condition)
        })
        .unwrap_or(false)
    }
}

/// Command settings of a step: the opt-ins come from the runner's own environment or the
/// step's env context.
pub(super) fn command_config(plan: &JobPlan, env: &[(String, String)]) -> CommandConfig {
    let enabled = |name: &str| {
        std::env::var(name).is_ok_and(|v| parse_bool_setting(&v))
            || env
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .is_some_and(|(_, v)| parse_bool_setting(v))
    };
    CommandConfig {
        step_debug: plan.step_debug,
        allow_unsecure_commands: enabled(ALLOW_UNSECURE_COMMANDS),
        allow_unsecure_stop_tokens: enabled(ALLOW_UNSECURE_STOP_TOKENS),
        enhanced_annotations: true,
        workspace: Some(plan.layout.workspace.clone()),
    }
}
