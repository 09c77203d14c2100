//! The step-handler seam: once a step is prepared (env, condition, `continue-on-error`, display
//! name: the same for every kind, [`super::prepare`]), a [`StepHandler`] for its kind runs it in
//! the VM and yields what it produced; the runtime then applies the job's limits,
//! `continue-on-error` and the `steps` context, whatever the kind.
//!
//! ```text
//!  StepKind::Script ─────────────────────────────► ScriptHandler   (render, upload, exec)
//!  StepKind::Action(Repository | Local | Docker) ─► ActionHandler   (refuses: not supported yet)
//!  StepKind::Unrunnable { reason } ───────────────► fails with the reason
//! ```
//!
//! JavaScript, composite and Docker actions become handlers of their own behind this trait
//! (the action handler then reads `action.yml` and hands the step to the one its `runs.using`
//! names); nothing else of the runtime changes.

use tokio_util::sync::CancellationToken;

use super::JobState;
use super::script::ScriptHandler;
use crate::job::plan::{ActionReference, PlannedStep, StepKind};
use crate::job::stepexec::StepExecOutcome;
use crate::vm::Vm;

/// A step whose condition holds, prepared for its handler.
pub(super) struct ReadyStep<'p> {
    /// The planned step.
    pub(super) step: &'p PlannedStep,
    /// Its environment: the job env with the step's own `env:` merged in (evaluated).
    pub(super) env: Vec<(String, String)>,
    /// Its display name, evaluated when it started.
    pub(super) display_name: String,
}

/// How a handler left a step.
pub(super) enum Handled {
    /// The step could not be started; it fails with these errors.
    Refused(Vec<String>),
    /// It ran (its result, outputs and effects, before `continue-on-error`).
    Ran(StepExecOutcome),
}

/// Runs one kind of step in the job's VM.
pub(super) trait StepHandler {
    /// Runs `step` in `vm` with the job's state (contexts, masker, events, PATH, defaults).
    /// `cancel` is the job cancellation; the handler stops the step when it fires unless the
    /// step keeps running on cancellation.
    async fn run<V: Vm>(
        &self,
        job: &mut JobState<'_>,
        vm: &V,
        step: &ReadyStep<'_>,
        cancel: &CancellationToken,
    ) -> Handled;
}

/// Hands `step` to the handler of its kind.
pub(super) async fn dispatch<V: Vm>(
    job: &mut JobState<'_>,
    vm: &V,
    step: &ReadyStep<'_>,
    cancel: &CancellationToken,
) -> Handled {
    match &step.step.kind {
        StepKind::Script(inputs) => ScriptHandler { inputs }.run(job, vm, step, cancel).await,
        StepKind::Action(
            action @ (ActionReference::Repository { .. }
            | ActionReference::Local { .. }
            | ActionReference::Docker { .. }),
        ) => ActionHandler { action }.run(job, vm, step, cancel).await,
        StepKind::Unrunnable { reason } => Handled::Refused(vec![reason.clone()]),
    }
}

/// The handler of `uses:` steps. Actions are not supported yet: every one is refused with
/// [`action_not_supported`].
struct ActionHandler<'a> {
    action: &'a ActionReference,
}

impl StepHandler for ActionHandler<'_> {
    async fn run<V: Vm>(
        &self,
        _job: &mut JobState<'_>,
        _vm: &V,
        _step: &ReadyStep<'_>,
        _cancel: &CancellationToken,
    ) -> Handled {
        Handled::Refused(vec![action_not_supported(self.action)])
    }
}

/// The error a `uses:` step fails with while actions are not supported.
pub fn action_not_supported(action: &ActionReference) -> String {
    format!("only run: steps are supported; this step uses {action}")
}
