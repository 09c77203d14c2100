//! Running one prepared script step in the VM: create its file-command files, upload its
//! script, exec it with streamed output, and collect what it asked for.
//!
//! Owns: the I/O shell around [`super::lines`], [`super::commands`], [`super::mask`] and
//! [`super::filecmd`] for one step, timeouts and cancellation of the running command. Does not
//! own deciding whether the step runs, its environment or its script (the runtime prepares a
//! [`StepExec`]), nor `continue-on-error` (the runtime applies it to the result).
//!
//! ```text
//!  upload empty file-command files + script
//!        │
//!        ▼
//!  Vm::exec ──chunks──► (blocking thread) LineAssembler ──lines──► CommandProcessor ──► masking
//!        │                                           effects: outputs, env, masks, annotations
//!        │ timeout timer / job cancel (unless the step keeps running)      │ JobEvents
//!        ▼                                                                  ▼ (back-pressure)
//!  exit code ─► read the file-command files (each sized in the guest, ≤ 1 MiB) ─► StepExecOutcome
//! ```
//!
//! Everything here is driven by the guest, so it is bounded: output is processed on blocking
//! threads (masking and command parsing never hold up the async workers that serve other
//! registrations' listeners and heartbeats), in batches of the chunks that arrived meanwhile;
//! a file-command file larger than [`super::filecmd::FILE_COMMAND_MAX_BYTES`] is not read but fails
//! the step; a step keeps at most [`MAX_ANNOTATIONS_PER_TYPE`] annotations of each type (the
//! official limit; every one is still logged); and the outputs, environment and state one step
//! may hand back total at most [`STEP_DATA_MAX_BYTES`].

use crate::errors::error_chain;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::commands::CommandConfig;
use crate::job::events::{Annotation, AnnotationLevel, JobEvent};
use crate::job::filecmd::FileCommand;
use crate::job::mask::SecretMasker;
use crate::protocol::TaskResult;
use crate::vm::{GuestCommand, GuestFile, OutputChunk, Vm};

mod files;
mod state;

use files::process_file_commands;
use state::StepState;

/// Output chunks buffered between the VM backend and the line assembler.
const OUTPUT_CHANNEL_CAPACITY: usize = 256;

/// Mode of uploaded script and file-command files.
const STEP_FILE_MODE: u32 = 0o644;

/// Everything needed to run one script step.
#[derive(Debug, Clone)]
pub struct StepExec {
    /// The step's timeline id (for events).
    pub step_id: Uuid,
    /// Display name (for the timeout message).
    pub display_name: String,
    /// The command (argv, env incl. the file-command variables, cwd, stdin).
    pub command: GuestCommand,
    /// Guest path of the script file.
    pub script_path: String,
    /// Script contents.
    pub script: String,
    /// Guest paths of this step's file-command files.
    pub files: Vec<(FileCommand, String)>,
    /// `timeout-minutes`, if any (as written, for the message) and as a duration.
    pub timeout: Option<(f64, Duration)>,
    /// Keep running when the job is cancelled (its condition holds with status `cancelled`).
    pub keep_running_on_cancel: bool,
    /// Command processing settings.
    pub commands: CommandConfig,
}

/// The guest paths of a step's file-command files in `dir`, with a fresh suffix.
pub fn file_command_paths(dir: &str) -> Vec<(FileCommand, String)> {
    let suffix = Uuid::new_v4().to_string();
    FileCommand::ALL
        .iter()
        .map(|&kind| (kind, format!("{dir}/{}", kind.file_name(&suffix))))
        .collect()
}

/// Annotations of one type (error, warning, notice) a step keeps as annotations; the rest are
/// only logged (the official runner's `_maxCountPerIssueType`, `ExecutionContext.cs`). The same
/// limit as the issues a timeline record keeps, so its home is
/// [`MAX_ISSUES_PER_TYPE`](crate::job::report::record::MAX_ISSUES_PER_TYPE).
pub use crate::job::report::record::MAX_ISSUES_PER_TYPE as MAX_ANNOTATIONS_PER_TYPE;

/// Most bytes of outputs, environment, state and PATH entries one step may hand back (file
/// commands and workflow commands together).
pub const STEP_DATA_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Output chunks handed to one blocking-thread batch at most.
const BATCH_CHUNKS: usize = 64;

/// What a step run produced (before `continue-on-error`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepExecOutcome {
    /// `Succeeded`, `Failed` or `Canceled`.
    pub result: Option<TaskResult>,
    /// `steps.<id>.outputs` (later wins).
    pub outputs: Vec<(String, String)>,
    /// Job environment changes (GITHUB_ENV, `::set-env`), in order.
    pub env: Vec<(String, String)>,
    /// PATH entries (GITHUB_PATH, `::add-path`), in order.
    pub path: Vec<String>,
    /// Saved state (GITHUB_STATE, `::save-state`).
    pub state: Vec<(String, String)>,
    /// Annotations kept (at most [`MAX_ANNOTATIONS_PER_TYPE`] per type), masked.
    pub annotations: Vec<Annotation>,
    /// Annotations raised, per type (error, warning, notice), kept or not.
    pub annotation_counts: [u64; 3],
}

impl StepExecOutcome {
    /// The result, `Succeeded` if nothing set it.
    pub fn task_result(&self) -> TaskResult {
        self.result.unwrap_or(TaskResult::Succeeded)
    }

    fn fail(&mut self) {
        self.result = Some(self.task_result().merge(TaskResult::Failed));
    }
}

/// Sends queued events in order (a closed receiver means nobody reports any more; the step
/// still runs to completion). Each send waits while the reporter's queue is full: that is the
/// back-pressure that slows a flooding step down to what the reporter can take.
async fn send_all(events: &mpsc::Sender<JobEvent>, out: Vec<JobEvent>) {
    for event in out {
        let _ = events.send(event).await;
    }
}

/// An error annotation raised by the runner itself.
pub fn runner_error(message: String) -> Annotation {
    Annotation::runner(AnnotationLevel::Error, message)
}

/// How the exec ended, seen from the step.
enum Ended {
    Exited(i32),
    TimedOut,
    Cancelled,
    Failed(crate::vm::VmError),
}

/// Runs one step. Events (logs, annotations, summary) go to `events`, masked; the outcome's
/// result is `Failed` on a non-zero exit, a timeout, a VM error, a command/file-command error
/// or an exceeded limit, `Canceled` when `job_cancel` fired and the step does not keep running.
pub async fn execute_step<V: Vm>(
    vm: &V,
    step: StepExec,
    masker: &mut SecretMasker,
    events: &mpsc::Sender<JobEvent>,
    job_cancel: &CancellationToken,
) -> StepExecOutcome {
    // The masker travels with the step's state (to blocking threads and back) and is returned.
    let mut state = StepState::new(&step, std::mem::take(masker));
    let mut out = Vec::new();
    if let Err(err) = upload_files(vm, &step).await {
        state.error(
            format!("Unable to prepare the step: {}", error_chain(&err)),
            &mut out,
        );
        state.outcome.fail();
    } else {
        let (ended, returned) = run_command(vm, &step, state, events, job_cancel).await;
        state = returned;
        match ended {
            Ended::Exited(0) => {}
            Ended::Exited(code) => {
                state.error(
                    format!("Process completed with exit code {code}."),
                    &mut out,
                );
                state.outcome.fail();
            }
            Ended::TimedOut => {
                let minutes = step.timeout.map_or(0.0, |(m, _)| m);
                state.error(
                    format!(
                        "The action '{}' has timed out after {minutes} minutes.",
                        step.display_name
                    ),
                    &mut out,
                );
                state.outcome.fail();
            }
            Ended::Cancelled => {
                state.outcome.result = Some(TaskResult::Canceled);
            }
            Ended::Failed(err) => {
                state.error(
                    format!("The step could not be run: {}", error_chain(&err)),
                    &mut out,
                );
                state.outcome.fail();
            }
        }
        send_all(events, std::mem::take(&mut out)).await;
        process_file_commands(vm, &step, &mut state, &mut out).await;
    }
    send_all(events, out).await;
    *masker = state.masker;
    state.outcome
}

/// Creates the step's (empty) file-command files and its script, in one batch.
async fn upload_files<V: Vm>(vm: &V, step: &StepExec) -> Result<(), crate::vm::VmError> {
    let mut files: Vec<GuestFile> = step
        .files
        .iter()
        .map(|(_, path)| GuestFile {
            path: path.clone(),
            contents: Vec::new(),
            mode: STEP_FILE_MODE,
        })
        .collect();
    files.push(GuestFile {
        path: step.script_path.clone(),
        contents: step.script.clone().into_bytes(),
        mode: STEP_FILE_MODE,
    });
    vm.write_files(Vec::new(), files).await
}

/// Runs the command, feeding its output through assembly, command processing and masking on
/// blocking threads; returns how it ended and the state.
async fn run_command<V: Vm>(
    vm: &V,
    step: &StepExec,
    state: StepState,
    events: &mpsc::Sender<JobEvent>,
    job_cancel: &CancellationToken,
) -> (Ended, StepState) {
    let (tx, mut rx) = mpsc::channel::<OutputChunk>(OUTPUT_CHANNEL_CAPACITY);
    let stop = CancellationToken::new();
    let exec = vm.exec(step.command.clone(), tx, stop.clone());
    let control = async {
        let timer = async {
            match step.timeout {
                Some((_, duration)) => tokio::time::sleep(duration).await,
                None => std::future::pending().await,
            }
        };
        let job_cancelled = async {
            if step.keep_running_on_cancel {
                std::future::pending::<()>().await;
            }
            job_cancel.cancelled().await;
        };
        tokio::select! {
            () = timer => Ended::TimedOut,
            () = job_cancelled => Ended::Cancelled,
        }
    };
    let consume = async move {
        let mut state = state;
        while let Some(first) = rx.recv().await {
            let mut chunks = vec![first];
            while chunks.len() < BATCH_CHUNKS {
                match rx.try_recv() {
                    Ok(chunk) => chunks.push(chunk),
                    Err(_) => break,
                }
            }
            let work = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for chunk in chunks {
                    state.on_chunk(chunk, &mut out);
                }
                (state, out)
            });
            let (returned, out) = match work.await {
                Ok(done) => done,
                Err(err) => std::panic::resume_unwind(err.into_panic()),
            };
            state = returned;
            send_all(events, out).await;
        }
        let mut out = Vec::new();
        state.end_of_output(&mut out);
        send_all(events, out).await;
        state
    };
    let run = async {
        tokio::pin!(exec);
        tokio::pin!(control);
        let mut reason = None;
        let result = tokio::select! {
            result = &mut exec => result,
            why = &mut control => {
                reason = Some(why);
                stop.cancel();
                exec.await
            }
        };
        (result, reason)
    };
    let ((result, reason), state) = tokio::join!(run, consume);
    let ended = match (result, reason) {
        (Err(err), _) => Ended::Failed(err),
        (Ok(_), Some(reason)) => reason,
        (Ok(outcome), None) => Ended::Exited(outcome.exit_code),
    };
    (ended, state)
}
