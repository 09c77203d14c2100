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
//!  Vm::exec ──chunks──► LineAssembler (stdout, stderr) ──lines──► CommandProcessor
//!        │                                                           │ effects
//!        │ timeout timer / job cancel (unless the step keeps running)▼
//!        │                                      masks, outputs, env … ; Log → mask → JobEvent
//!        ▼
//!  exit code ─► download + parse file commands ─► StepExecOutcome
//! ```

use crate::errors::error_chain;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::job::commands::{CommandConfig, CommandEffect, CommandProcessor, annotation_log_line};
use crate::job::events::{Annotation, AnnotationLevel, JobEvent};
use crate::job::filecmd::{self, FileCommand, StepSummary};
use crate::job::lines::LineAssembler;
use crate::job::mask::SecretMasker;
use crate::protocol::TaskResult;
use crate::vm::{GuestCommand, GuestFile, OutputChunk, Vm};

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
    /// Annotations raised (already sent as events), masked.
    pub annotations: Vec<Annotation>,
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

/// Sends the step's events and applies command effects.
struct StepSink<'a> {
    step_id: Uuid,
    step_debug: bool,
    masker: &'a mut SecretMasker,
    events: &'a mpsc::Sender<JobEvent>,
    outcome: StepExecOutcome,
}

impl StepSink<'_> {
    async fn log(&self, line: &str) {
        let line = self.masker.mask(line);
        // A closed receiver means nobody reports any more; the step still runs to completion.
        let _ = self
            .events
            .send(JobEvent::Log {
                step_id: Some(self.step_id),
                line,
            })
            .await;
    }

    async fn annotate(&mut self, annotation: Annotation) {
        let masked = Annotation {
            message: self.masker.mask(&annotation.message),
            title: annotation.title.map(|t| self.masker.mask(&t)),
            file: annotation.file.map(|f| self.masker.mask(&f)),
            ..annotation
        };
        self.log(&annotation_log_line(&masked)).await;
        let _ = self
            .events
            .send(JobEvent::Annotation {
                step_id: Some(self.step_id),
                annotation: masked.clone(),
            })
            .await;
        self.outcome.annotations.push(masked);
    }

    async fn error(&mut self, message: String) {
        self.annotate(runner_error(message)).await;
    }

    async fn apply(&mut self, effects: Vec<CommandEffect>) {
        for effect in effects {
            match effect {
                CommandEffect::Log(line) => self.log(&line).await,
                CommandEffect::AddMask(value) => self.masker.add_value(&value),
                CommandEffect::SetOutput { name, value } => {
                    set(&mut self.outcome.outputs, name, value)
                }
                CommandEffect::SaveState { name, value } => {
                    set(&mut self.outcome.state, name, value)
                }
                CommandEffect::SetEnv { name, value } => set(&mut self.outcome.env, name, value),
                CommandEffect::AddPath(entry) => self.outcome.path.push(entry),
                CommandEffect::Annotation(annotation) => self.annotate(annotation).await,
                CommandEffect::Debug(text) => {
                    if self.step_debug {
                        for line in text.split('\n') {
                            self.log(&format!("##[debug]{}", line.trim_end_matches('\r')))
                                .await;
                        }
                    }
                }
                CommandEffect::Fail => self.outcome.fail(),
            }
        }
    }
}

/// An error annotation raised by the runner itself.
pub fn runner_error(message: String) -> Annotation {
    Annotation {
        level: AnnotationLevel::Error,
        message,
        title: None,
        file: None,
        line: None,
        end_line: None,
        col: None,
        end_col: None,
    }
}

fn set(list: &mut Vec<(String, String)>, name: String, value: String) {
    match list.iter_mut().find(|(k, _)| *k == name) {
        Some(entry) => entry.1 = value,
        None => list.push((name, value)),
    }
}

/// How the exec ended, seen from the step.
enum Ended {
    Exited(i32),
    TimedOut,
    Cancelled,
    Failed(crate::vm::VmError),
}

/// Runs one step. Events (logs, annotations, summary) go to `events`, masked; the outcome's
/// result is `Failed` on a non-zero exit, a timeout, a VM error or a command/file-command
/// error, `Canceled` when `job_cancel` fired and the step does not keep running.
pub async fn execute_step<V: Vm>(
    vm: &V,
    step: StepExec,
    masker: &mut SecretMasker,
    events: &mpsc::Sender<JobEvent>,
    job_cancel: &CancellationToken,
) -> StepExecOutcome {
    let mut sink = StepSink {
        step_id: step.step_id,
        step_debug: step.commands.step_debug,
        masker,
        events,
        outcome: StepExecOutcome::default(),
    };
    if let Err(err) = upload_files(vm, &step).await {
        sink.error(format!("Unable to prepare the step: {}", error_chain(&err)))
            .await;
        sink.outcome.fail();
        return sink.outcome;
    }
    let ended = run_command(vm, &step, &mut sink, job_cancel).await;
    match ended {
        Ended::Exited(0) => {}
        Ended::Exited(code) => {
            sink.error(format!("Process completed with exit code {code}."))
                .await;
            sink.outcome.fail();
        }
        Ended::TimedOut => {
            let minutes = step.timeout.map_or(0.0, |(m, _)| m);
            sink.error(format!(
                "The action '{}' has timed out after {minutes} minutes.",
                step.display_name
            ))
            .await;
            sink.outcome.fail();
        }
        Ended::Cancelled => {
            sink.outcome.result = Some(TaskResult::Canceled);
        }
        Ended::Failed(err) => {
            sink.error(format!("The step could not be run: {}", error_chain(&err)))
                .await;
            sink.outcome.fail();
        }
    }
    process_file_commands(vm, &step, &mut sink).await;
    sink.outcome
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

/// Runs the command, feeding its output through assembly, command processing and masking.
async fn run_command<V: Vm>(
    vm: &V,
    step: &StepExec,
    sink: &mut StepSink<'_>,
    job_cancel: &CancellationToken,
) -> Ended {
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
    let consume = async {
        let mut processor = CommandProcessor::new(step.commands.clone());
        let mut stdout = LineAssembler::new();
        let mut stderr = LineAssembler::new();
        while let Some(chunk) = rx.recv().await {
            let (assembler, bytes) = match &chunk {
                OutputChunk::Stdout(b) => (&mut stdout, b),
                OutputChunk::Stderr(b) => (&mut stderr, b),
            };
            let lines = assembler.push(bytes, &*sink.masker);
            for line in lines {
                sink.apply(processor.process_line(&line)).await;
            }
        }
        for line in [stdout.finish(), stderr.finish()].into_iter().flatten() {
            sink.apply(processor.process_line(&line)).await;
        }
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
    let ((result, reason), ()) = tokio::join!(run, consume);
    match (result, reason) {
        (Err(err), _) => Ended::Failed(err),
        (Ok(_), Some(reason)) => reason,
        (Ok(outcome), None) => Ended::Exited(outcome.exit_code),
    }
}

/// Downloads and applies the step's file commands (always, whatever the exit code).
async fn process_file_commands<V: Vm>(vm: &V, step: &StepExec, sink: &mut StepSink<'_>) {
    let files: Vec<&(FileCommand, String)> = step
        .files
        .iter()
        .filter(|(kind, _)| kind.is_read_back())
        .collect();
    let paths: Vec<String> = files.iter().map(|(_, path)| path.clone()).collect();
    let contents = vm.read_files(paths).await.unwrap_or_else(|err| {
        tracing::debug!(error = %err, "file command files not readable; skipped");
        vec![None; files.len()]
    });
    for ((kind, path), bytes) in files.into_iter().zip(contents) {
        // A file the step deleted is skipped, as the official runner does.
        let Some(bytes) = bytes else {
            tracing::debug!(file = %path, "file command file not readable; skipped");
            continue;
        };
        if let Err(message) = apply_file_command(*kind, &bytes, sink).await {
            sink.error(format!(
                "Unable to process file command '{}' successfully.",
                kind.context_name()
            ))
            .await;
            sink.error(message).await;
            sink.outcome.fail();
        }
    }
}

async fn apply_file_command(
    kind: FileCommand,
    bytes: &[u8],
    sink: &mut StepSink<'_>,
) -> Result<(), String> {
    let pairs = || filecmd::parse_key_values(bytes).map_err(|e| e.to_string());
    match kind {
        FileCommand::Path => sink.outcome.path.extend(filecmd::parse_path_lines(bytes)),
        FileCommand::Env => {
            for (name, value) in pairs()? {
                if filecmd::is_blocked_env(&name) {
                    sink.error(filecmd::blocked_env_message(&name)).await;
                } else {
                    set(&mut sink.outcome.env, name, value);
                }
            }
        }
        FileCommand::Output => {
            for (name, value) in pairs()? {
                set(&mut sink.outcome.outputs, name, value);
            }
        }
        FileCommand::State => {
            for (name, value) in pairs()? {
                set(&mut sink.outcome.state, name, value);
            }
        }
        FileCommand::Artifacts | FileCommand::ArtifactsList => {}
        FileCommand::StepSummary => match filecmd::parse_step_summary(bytes) {
            StepSummary::Empty => {}
            StepSummary::TooLarge(message) => sink.error(message).await,
            StepSummary::Markdown(markdown) => {
                let masked: Vec<String> = markdown
                    .split('\n')
                    .map(|line| sink.masker.mask(line))
                    .collect();
                let _ = sink
                    .events
                    .send(JobEvent::StepSummary {
                        step_id: sink.step_id,
                        markdown: masked.join("\n"),
                    })
                    .await;
            }
        },
    }
    Ok(())
}
