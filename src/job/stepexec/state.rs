//! The synchronous side of a running step ([`StepState`]): output chunks assembled into lines,
//! workflow commands processed, every logged line and annotation masked, and what the step
//! hands back (outputs, env, state, PATH entries, annotations) collected within the step's
//! limits.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    MAX_ANNOTATIONS_PER_TYPE, STEP_DATA_MAX_BYTES, StepExec, StepExecOutcome, runner_error,
};
use crate::job::commands::{CommandEffect, CommandProcessor, annotation_log_line};
use crate::job::events::{Annotation, AnnotationLevel, JobEvent};
use crate::job::filecmd;
use crate::job::lines::LineAssembler;
use crate::job::mask::SecretMasker;
use crate::vm::OutputChunk;

/// The synchronous side of a step: line assembly, workflow commands, masking and the outcome.
/// Its methods queue the [`JobEvent`]s to send in `out`; they never block on I/O, so a batch of
/// output runs on a blocking thread.
pub(super) struct StepState {
    pub(super) step_id: Uuid,
    step_debug: bool,
    pub(super) masker: SecretMasker,
    pub(super) outcome: StepExecOutcome,
    processor: CommandProcessor,
    stdout: LineAssembler,
    stderr: LineAssembler,
    /// Positions in `outcome.outputs`, `.env`, `.state` by name (updates in O(1)).
    index: [HashMap<String, usize>; 3],
    /// Bytes of outputs, environment, state and PATH entries handed back so far.
    data_bytes: usize,
    data_overflowed: bool,
}

/// Which list of the outcome a name-value pair goes to.
#[derive(Clone, Copy)]
pub(super) enum Data {
    Output = 0,
    Env = 1,
    State = 2,
}

impl StepState {
    pub(super) fn new(step: &StepExec, masker: SecretMasker) -> Self {
        StepState {
            step_id: step.step_id,
            step_debug: step.commands.step_debug,
            masker,
            outcome: StepExecOutcome::default(),
            processor: CommandProcessor::new(step.commands.clone()),
            stdout: LineAssembler::new(),
            stderr: LineAssembler::new(),
            index: Default::default(),
            data_bytes: 0,
            data_overflowed: false,
        }
    }

    fn log(&self, line: &str, out: &mut Vec<JobEvent>) {
        out.push(JobEvent::Log {
            step_id: Some(self.step_id),
            line: self.masker.mask(line),
        });
    }

    fn annotate(&mut self, annotation: Annotation, out: &mut Vec<JobEvent>) {
        let masked = Annotation {
            message: self.masker.mask(&annotation.message),
            title: annotation.title.map(|t| self.masker.mask(&t)),
            file: annotation.file.map(|f| self.masker.mask(&f)),
            ..annotation
        }
        .truncated();
        self.log(&annotation_log_line(&masked), out);
        let count = &mut self.outcome.annotation_counts[level_index(masked.level)];
        *count += 1;
        // Every annotation goes to the reporter (it counts them and keeps the official number);
        // the outcome keeps only as many as the official runner would.
        out.push(JobEvent::Annotation {
            step_id: Some(self.step_id),
            annotation: masked.clone(),
        });
        if *count <= MAX_ANNOTATIONS_PER_TYPE as u64 {
            self.outcome.annotations.push(masked);
        }
    }

    pub(super) fn error(&mut self, message: String, out: &mut Vec<JobEvent>) {
        self.annotate(runner_error(message), out);
    }

    /// Counts `bytes` of data handed back; false (and the step failed once, with the limit
    /// named) when the step exceeds [`STEP_DATA_MAX_BYTES`].
    fn take_data(&mut self, bytes: usize, out: &mut Vec<JobEvent>) -> bool {
        if self.data_overflowed {
            return false;
        }
        self.data_bytes += bytes;
        if self.data_bytes <= STEP_DATA_MAX_BYTES {
            return true;
        }
        self.data_overflowed = true;
        self.error(
            format!(
                "The step handed back more than {} MiB of outputs, environment variables, state \
                 and PATH entries (ghrunner-vm's limit per step); the rest is ignored.",
                STEP_DATA_MAX_BYTES >> 20
            ),
            out,
        );
        self.outcome.fail();
        false
    }

    pub(super) fn set(&mut self, list: Data, name: String, value: String, out: &mut Vec<JobEvent>) {
        if !self.take_data(name.len() + value.len(), out) {
            return;
        }
        let entries = match list {
            Data::Output => &mut self.outcome.outputs,
            Data::Env => &mut self.outcome.env,
            Data::State => &mut self.outcome.state,
        };
        let index = &mut self.index[list as usize];
        match index.get(&name) {
            Some(&at) => entries[at].1 = value,
            None => {
                index.insert(name.clone(), entries.len());
                entries.push((name, value));
            }
        }
    }

    pub(super) fn add_path(&mut self, entry: String, out: &mut Vec<JobEvent>) {
        if self.take_data(entry.len() + 1, out) {
            self.outcome.path.push(entry);
        }
    }

    pub(super) fn set_env(&mut self, name: String, value: String, out: &mut Vec<JobEvent>) {
        if value.len() > filecmd::MAX_ENV_VALUE_BYTES {
            self.error(filecmd::env_value_too_long_message(&name, value.len()), out);
            self.outcome.fail();
            return;
        }
        self.set(Data::Env, name, value, out);
    }

    fn apply(&mut self, effects: Vec<CommandEffect>, out: &mut Vec<JobEvent>) {
        for effect in effects {
            match effect {
                CommandEffect::Log(line) => self.log(&line, out),
                CommandEffect::AddMask(value) => self.masker.add_value(&value),
                CommandEffect::SetOutput { name, value } => {
                    self.set(Data::Output, name, value, out)
                }
                CommandEffect::SaveState { name, value } => self.set(Data::State, name, value, out),
                CommandEffect::SetEnv { name, value } => self.set_env(name, value, out),
                CommandEffect::AddPath(entry) => self.add_path(entry, out),
                CommandEffect::Annotation(annotation) => self.annotate(annotation, out),
                CommandEffect::Debug(text) => {
                    if self.step_debug {
                        for line in text.split('\n') {
                            self.log(&format!("##[debug]{}", line.trim_end_matches('\r')), out);
                        }
                    }
                }
                CommandEffect::Fail => self.outcome.fail(),
            }
        }
    }

    /// Assembles a chunk into lines and processes them.
    pub(super) fn on_chunk(&mut self, chunk: OutputChunk, out: &mut Vec<JobEvent>) {
        let (assembler, bytes) = match &chunk {
            OutputChunk::Stdout(b) => (&mut self.stdout, b),
            OutputChunk::Stderr(b) => (&mut self.stderr, b),
        };
        let lines = assembler.push(bytes, &self.masker);
        for line in lines {
            let effects = self.processor.process_line(&line);
            self.apply(effects, out);
        }
    }

    /// Processes the unterminated last lines.
    pub(super) fn end_of_output(&mut self, out: &mut Vec<JobEvent>) {
        for line in [self.stdout.finish(), self.stderr.finish()]
            .into_iter()
            .flatten()
        {
            let effects = self.processor.process_line(&line);
            self.apply(effects, out);
        }
    }
}

fn level_index(level: AnnotationLevel) -> usize {
    match level {
        AnnotationLevel::Error => 0,
        AnnotationLevel::Warning => 1,
        AnnotationLevel::Notice => 2,
    }
}
