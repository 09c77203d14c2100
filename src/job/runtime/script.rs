//! The handler of `run:` steps: evaluates the script's inputs, renders it for its shell
//! ([`crate::job::script::render_step`]) and runs it with [`crate::job::stepexec`] (file-command
//! files, upload, streamed exec, timeout and cancellation, file commands read back).

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::JobState;
use super::handler::{Handled, ReadyStep, StepHandler};
use super::prepare::command_config;
use crate::expr::JobStatus;
use crate::job::plan::ScriptInputs;
use crate::job::script::{ScriptRequest, render_step};
use crate::job::stepexec::{StepExec, execute_step, file_command_paths};
use crate::protocol::template_token::TemplateToken;
use crate::vm::Vm;

/// Runs a `run:` step.
pub(super) struct ScriptHandler<'a> {
    /// The step's script inputs (tokens).
    pub(super) inputs: &'a ScriptInputs,
}

impl StepHandler for ScriptHandler<'_> {
    async fn run<V: Vm>(
        &self,
        job: &mut JobState<'_>,
        vm: &V,
        step: &ReadyStep<'_>,
        cancel: &CancellationToken,
    ) -> Handled {
        match self.render(job, step) {
            Ok(exec) => {
                let outcome = execute_step(vm, exec, &mut job.masker, &job.events, cancel).await;
                Handled::Ran(outcome)
            }
            Err(message) => Handled::Refused(vec![message]),
        }
    }
}

impl ScriptHandler<'_> {
    /// Evaluates the step's timeout and inputs and renders its script.
    fn render(&self, job: &mut JobState<'_>, ready: &ReadyStep<'_>) -> Result<StepExec, String> {
        let step = ready.step;
        let status = JobStatus::Success;
        let timeout = job.step_timeout(step)?;
        let files = file_command_paths(&job.plan.layout.file_commands);
        for (kind, path) in &files {
            job.set_github(kind.context_name(), path);
        }
        let keep_running_on_cancel = job.keeps_running_on_cancel(step);
        let text = |token: &Option<TemplateToken>| {
            token
                .as_ref()
                .map(|t| job.with_evaluator(status, |e| e.evaluate_string(t)))
                .transpose()
                .map_err(|e| e.user_message())
        };
        let script = job
            .with_evaluator(status, |e| e.evaluate_string(&self.inputs.script))
            .map_err(|e| e.user_message())?;
        let shell = text(&self.inputs.shell)?;
        let working_directory = text(&self.inputs.working_directory)?;
        let stdin = text(&self.inputs.stdin)?;
        let request = ScriptRequest {
            script: &script,
            shell: shell.as_deref(),
            working_directory: working_directory.as_deref(),
            defaults: &job.defaults,
            env: &ready.env,
            path_prepends: &job.path,
            guest_path: None,
            contexts: &job.contexts,
            script_id: Uuid::new_v4(),
        };
        let rendered = render_step(job.plan, &request).map_err(|e| e.to_string())?;
        let commands = command_config(job.plan, &ready.env);
        Ok(StepExec {
            step_id: step.id,
            display_name: ready.display_name.clone(),
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
