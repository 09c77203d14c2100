//! Preparing a step before it runs: its env (evaluated against the job env) and the
//! `steps`/`job`/`env`/`github` contexts, the `if:` condition with the job status,
//! `continue-on-error`, the display name, `timeout-minutes`, the script rendering and the
//! workflow-command settings, ending in a [`StepExec`] or the reason the step cannot run.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::JobState;
use crate::expr::{JobStatus, Value};
use crate::job::commands::{
    ALLOW_UNSECURE_COMMANDS, ALLOW_UNSECURE_STOP_TOKENS, CommandConfig, parse_bool_setting,
};
use crate::job::plan::{JobPlan, PlannedStep, ScriptInputs, StepKind, merge_env};
use crate::job::script::{ScriptRequest, render_step};
use crate::job::stepexec::{StepExec, file_command_paths};

/// What preparing a step decided.
pub(super) enum Prepared {
    /// The condition is false.
    Skip,
    /// The step cannot run; fail it with these errors.
    Fail(Vec<String>),
    /// Run it.
    Run(Box<StepExec>),
}

/// Values of a step evaluated before it runs.
pub(super) struct StepSettings {
    pub(super) display_name: String,
    pub(super) continue_on_error: bool,
}

impl JobState<'_> {
    /// Builds the step's env and contexts, evaluates its condition and settings, renders it.
    pub(super) fn prepare(
        &mut self,
        step: &PlannedStep,
        cancel: &CancellationToken,
    ) -> (StepSettings, Prepared) {
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
        let prepared = match &step.kind {
            StepKind::Unrunnable { reason } => Prepared::Fail(vec![reason.clone()]),
            StepKind::Script(inputs) => match self.render(step, inputs, &env, &settings) {
                Ok(exec) => Prepared::Run(Box::new(exec)),
                Err(message) => Prepared::Fail(vec![message]),
            },
        };
        (settings, prepared)
    }

    /// Evaluates a script step's inputs and timeout and renders it.
    fn render(
        &mut self,
        step: &PlannedStep,
        inputs: &ScriptInputs,
        env: &[(String, String)],
        settings: &StepSettings,
    ) -> Result<StepExec, String> {
        let status = JobStatus::Success;
        let timeout = match &step.timeout_minutes {
            None => None,
            Some(token) => match self.with_evaluator(status, |e| e.evaluate(token)) {
                Ok(Value::Number(minutes)) if minutes > 0.0 && minutes.is_finite() => {
                    Some((minutes, Duration::from_secs_f64(minutes * 60.0)))
                }
                Ok(Value::Number(_)) | Ok(Value::Null) => None,
                Ok(other) => {
                    return Err(format!(
                        "timeout-minutes must be a number, got {}",
                        crate::job::template::value_kind(&other)
                    ));
                }
                Err(err) => return Err(err.user_message()),
            },
        };
        let files = file_command_paths(&self.plan.layout.file_commands);
        for (kind, path) in &files {
            self.set_github(kind.context_name(), path);
        }
        let keep_running_on_cancel = self
            .with_evaluator(JobStatus::Cancelled, |e| {
                e.evaluate_condition(&step.condition)
            })
            .unwrap_or(false);
        let text = |token: &Option<crate::protocol::template_token::TemplateToken>| {
            token
                .as_ref()
                .map(|t| self.with_evaluator(status, |e| e.evaluate_string(t)))
                .transpose()
                .map_err(|e| e.user_message())
        };
        let script = self
            .with_evaluator(status, |e| e.evaluate_string(&inputs.script))
            .map_err(|e| e.user_message())?;
        let shell = text(&inputs.shell)?;
        let working_directory = text(&inputs.working_directory)?;
        let stdin = text(&inputs.stdin)?;
        let request = ScriptRequest {
            script: &script,
            shell: shell.as_deref(),
            working_directory: working_directory.as_deref(),
            defaults: &self.defaults,
            env,
            path_prepends: &self.path,
            guest_path: None,
            contexts: &self.contexts,
            script_id: Uuid::new_v4(),
        };
        let rendered = render_step(self.plan, &request).map_err(|e| e.to_string())?;
        let commands = command_config(self.plan, env);
        Ok(StepExec {
            step_id: step.id,
            display_name: settings.display_name.clone(),
            command: rendered.to_guest_command(stdin.map(String::into_bytes)),
            script_path: rendered.script_path,
            script: rendered.script,
            files,
            timeout,
            keep_running_on_cancel,
            commands,
        })
    }
}

/// Command settings of a step: the opt-ins come from the runner's own environment or the
/// step's env context.
fn command_config(plan: &JobPlan, env: &[(String, String)]) -> CommandConfig {
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
