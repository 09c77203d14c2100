//! Reading back a step's file commands after it ran (`GITHUB_OUTPUT`, `GITHUB_ENV`,
//! `GITHUB_PATH`, `GITHUB_STATE`, `GITHUB_STEP_SUMMARY`): each sized in the guest before it is
//! read, parsed by [`crate::job::filecmd`] and applied to the step's state.

use super::StepExec;
use super::state::{Data, StepState};
use crate::job::events::JobEvent;
use crate::job::filecmd::{self, FileCommand, StepSummary};
use crate::vm::{GuestRead, Vm};

/// Reads and applies the step's file commands (always, whatever the exit code). Each file is
/// sized in the guest first: one larger than [`filecmd::FILE_COMMAND_MAX_BYTES`] is not read.
pub(super) async fn process_file_commands<V: Vm>(
    vm: &V,
    step: &StepExec,
    state: &mut StepState,
    out: &mut Vec<JobEvent>,
) {
    let files: Vec<&(FileCommand, String)> = step
        .files
        .iter()
        .filter(|(kind, _)| kind.is_read_back())
        .collect();
    let paths: Vec<String> = files.iter().map(|(_, path)| path.clone()).collect();
    let contents = vm
        .read_files(paths, filecmd::FILE_COMMAND_MAX_BYTES)
        .await
        .unwrap_or_else(|err| {
            tracing::debug!(error = %err, "file command files not readable; skipped");
            vec![GuestRead::Missing; files.len()]
        });
    for ((kind, path), read) in files.into_iter().zip(contents) {
        let result = match read {
            // A file the step deleted is skipped, as the official runner does.
            GuestRead::Missing => {
                tracing::debug!(file = %path, "file command file not readable; skipped");
                continue;
            }
            GuestRead::TooLarge { size } => Err(filecmd::too_large(*kind, size)),
            GuestRead::Contents(bytes) => apply_file_command(*kind, &bytes, state, out),
        };
        match result {
            Ok(()) => {}
            // The step summary's official rule: an error, no upload, the step goes on.
            Err(filecmd::FileCommandFailure::Report(message)) => state.error(message, out),
            Err(filecmd::FileCommandFailure::FailStep(message)) => {
                state.error(
                    format!(
                        "Unable to process file command '{}' successfully.",
                        kind.context_name()
                    ),
                    out,
                );
                state.error(message, out);
                state.outcome.fail();
            }
        }
    }
}

fn apply_file_command(
    kind: FileCommand,
    bytes: &[u8],
    state: &mut StepState,
    out: &mut Vec<JobEvent>,
) -> Result<(), filecmd::FileCommandFailure> {
    let pairs = || {
        filecmd::parse_key_values(bytes)
            .map_err(|e| filecmd::FileCommandFailure::FailStep(e.to_string()))
    };
    match kind {
        FileCommand::Path => {
            for entry in filecmd::parse_path_lines(bytes) {
                state.add_path(entry, out);
            }
        }
        FileCommand::Env => {
            for (name, value) in pairs()? {
                if filecmd::is_blocked_env(&name) {
                    state.error(filecmd::blocked_env_message(&name), out);
                } else {
                    state.set_env(name, value, out);
                }
            }
        }
        FileCommand::Output => {
            for (name, value) in pairs()? {
                state.set(Data::Output, name, value, out);
            }
        }
        FileCommand::State => {
            for (name, value) in pairs()? {
                state.set(Data::State, name, value, out);
            }
        }
        FileCommand::Artifacts | FileCommand::ArtifactsList => {}
        FileCommand::StepSummary => match filecmd::parse_step_summary(bytes) {
            StepSummary::Empty => {}
            StepSummary::TooLarge(message) => {
                return Err(filecmd::FileCommandFailure::Report(message));
            }
            StepSummary::Markdown(markdown) => {
                let masked: Vec<String> = markdown
                    .split('\n')
                    .map(|line| state.masker.mask(line))
                    .collect();
                out.push(JobEvent::StepSummary {
                    step_id: state.step_id,
                    markdown: masked.join("\n"),
                });
            }
        },
    }
    Ok(())
}
