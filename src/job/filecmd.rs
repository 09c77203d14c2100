//! File commands: the files a step writes to talk back to the runner (`GITHUB_ENV`,
//! `GITHUB_OUTPUT`, `GITHUB_STATE`, `GITHUB_PATH`, `GITHUB_STEP_SUMMARY`).
//!
//! Owns: the file names, and parsing each file's contents after the step (pure). Does not own
//! creating or downloading the files (the step runtime does, through the VM) or applying the
//! results (also the runtime).
//!
//! The key-value grammar (ENV, OUTPUT, STATE), read as UTF-8 (a leading BOM dropped), lines
//! split on `\n` only (a `\r` stays in values):
//!
//! ```text
//! (empty line)             skipped
//! NAME=VALUE               when a `=` comes before any `<<`; split at the first `=`
//! NAME<<DELIM              a heredoc: the value is the following lines up to a line equal to
//! line…                    DELIM, joined with their newlines, without the newline before
//! DELIM                    DELIM (no lines: ""); the DELIM line may lack a newline
//! anything else            error "Invalid format"
//! ```

/// Directory under the runner temp dir holding the per-step files.
pub const FILE_COMMANDS_DIR: &str = "_runner_file_commands";

/// Largest step summary uploaded (bytes); larger ones are refused with an error (the official
/// `AttachmentSizeLimit`, `FileCommandManager.cs`).
pub const STEP_SUMMARY_MAX_BYTES: usize = 1024 * 1024;

/// Largest file-command file read back from the guest. The official runner reads these files
/// whole with no limit; here the guest controls them, so a larger one is sized in the guest,
/// not read, and fails the step. 1 MiB matches GitHub's documented limit for an output and the
/// step summary's limit.
pub const FILE_COMMAND_MAX_BYTES: u64 = 1024 * 1024;

/// Longest environment value (PATH included): Linux refuses to start a program whose
/// environment holds a longer string (`MAX_ARG_STRLEN`), so a longer one could only break every
/// later step.
pub const MAX_ENV_VALUE_BYTES: usize = 128 * 1024;

/// How a file command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCommandFailure {
    /// Report the message as an error; the step goes on (the step summary's official rule).
    Report(String),
    /// Report "Unable to process file command …" and the message, and fail the step.
    FailStep(String),
}

/// The failure for a file of `size` bytes, larger than [`FILE_COMMAND_MAX_BYTES`].
pub fn too_large(kind: FileCommand, size: u64) -> FileCommandFailure {
    if kind == FileCommand::StepSummary {
        return FileCommandFailure::Report(summary_too_large_message(size));
    }
    FileCommandFailure::FailStep(format!(
        "${} is {size} bytes; ghrunner-vm reads at most {} KiB of a file command (the limit \
         per file and step)",
        kind.env_var(),
        FILE_COMMAND_MAX_BYTES / 1024
    ))
}

/// The error for an environment value longer than [`MAX_ENV_VALUE_BYTES`].
pub fn env_value_too_long_message(name: &str, len: usize) -> String {
    format!(
        "The value of environment variable '{name}' is {len} bytes; a variable may hold at most \
         {MAX_ENV_VALUE_BYTES} bytes (Linux refuses to start programs with a longer one)"
    )
}

/// The official message for a step summary of `size` bytes.
fn summary_too_large_message(size: u64) -> String {
    format!(
        "$GITHUB_STEP_SUMMARY upload aborted, supports content up to a size of {}k, got {}k. \
         For more information see: https://docs.github.com/actions/using-workflows/\
         workflow-commands-for-github-actions#adding-a-markdown-summary",
        STEP_SUMMARY_MAX_BYTES / 1024,
        size / 1024
    )
}

/// Variables that `GITHUB_ENV` may not set (compared case-insensitively).
pub const ENV_BLOCK_LIST: &[&str] = &["NODE_OPTIONS"];

/// One kind of file command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileCommand {
    /// `GITHUB_ENV`: environment for later steps.
    Env,
    /// `GITHUB_OUTPUT`: `steps.<id>.outputs`.
    Output,
    /// `GITHUB_STATE`: state for an action's post step.
    State,
    /// `GITHUB_PATH`: directories prepended to `PATH` for later steps.
    Path,
    /// `GITHUB_STEP_SUMMARY`: markdown for the run summary.
    StepSummary,
    /// `GITHUB_ARTIFACTS` (actions/runner 2.336.0): artifact subjects a step declares. Created
    /// and exported; not processed (the official runner processes it only behind a server
    /// flag and sends the subjects nowhere), see protocol-fixtures/RUNNER-VERSIONS.md.
    Artifacts,
    /// `GITHUB_ARTIFACTS_LIST`: the subjects captured so far (read-only; always empty here).
    ArtifactsList,
}

impl FileCommand {
    /// All file commands, in the order the runtime processes them.
    pub const ALL: [FileCommand; 7] = [
        FileCommand::Path,
        FileCommand::Env,
        FileCommand::StepSummary,
        FileCommand::State,
        FileCommand::Output,
        FileCommand::Artifacts,
        FileCommand::ArtifactsList,
    ];

    /// Whether the runtime reads the file back after the step.
    pub fn is_read_back(self) -> bool {
        !matches!(self, FileCommand::Artifacts | FileCommand::ArtifactsList)
    }

    /// The environment variable holding the file's path (`GITHUB_ENV`, …).
    pub fn env_var(self) -> &'static str {
        match self {
            FileCommand::Env => "GITHUB_ENV",
            FileCommand::Output => "GITHUB_OUTPUT",
            FileCommand::State => "GITHUB_STATE",
            FileCommand::Path => "GITHUB_PATH",
            FileCommand::StepSummary => "GITHUB_STEP_SUMMARY",
            FileCommand::Artifacts => "GITHUB_ARTIFACTS",
            FileCommand::ArtifactsList => "GITHUB_ARTIFACTS_LIST",
        }
    }

    /// The `github` context key holding the path (`env`, `output`, …).
    pub fn context_name(self) -> &'static str {
        match self {
            FileCommand::Env => "env",
            FileCommand::Output => "output",
            FileCommand::State => "state",
            FileCommand::Path => "path",
            FileCommand::StepSummary => "step_summary",
            FileCommand::Artifacts => "artifacts",
            FileCommand::ArtifactsList => "artifacts_list",
        }
    }

    /// The file name prefix; the runtime appends a fresh UUID per step.
    pub fn file_prefix(self) -> &'static str {
        match self {
            FileCommand::Env => "set_env_",
            FileCommand::Output => "set_output_",
            FileCommand::State => "save_state_",
            FileCommand::Path => "add_path_",
            FileCommand::StepSummary => "step_summary_",
            FileCommand::Artifacts => "artifacts_",
            FileCommand::ArtifactsList => "artifacts_list_",
        }
    }

    /// The file name for a step whose files carry `suffix` (a UUID).
    pub fn file_name(self, suffix: &str) -> String {
        format!("{}{suffix}", self.file_prefix())
    }
}

/// Why a file command's contents were refused. The runtime reports
/// "Unable to process file command '<name>' successfully." and this message, and fails the step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCommandError {
    /// A line is neither `NAME=VALUE` nor `NAME<<DELIM`.
    #[error("Invalid format '{line}'")]
    InvalidFormat {
        /// The line.
        line: String,
    },
    /// `=VALUE`: the name is empty.
    #[error("Invalid format '{line}'. Name must not be empty")]
    EmptyName {
        /// The line.
        line: String,
    },
    /// `<<DELIM`, `NAME<<`: name or delimiter empty.
    #[error("Invalid format '{line}'. Name must not be empty and delimiter must not be empty")]
    EmptyNameOrDelimiter {
        /// The line.
        line: String,
    },
    /// The file ended before the heredoc delimiter.
    #[error("Invalid value. Matching delimiter not found '{delimiter}'")]
    DelimiterNotFound {
        /// The delimiter.
        delimiter: String,
    },
    /// A heredoc value line ended the file without a newline (the delimiter line was missing).
    #[error("Invalid value. EOF marker missing new line.")]
    MissingNewline,
}

/// Parses the key-value grammar (ENV, OUTPUT, STATE). Pairs come in file order; a later pair
/// with the same name wins when applied.
pub fn parse_key_values(bytes: &[u8]) -> Result<Vec<(String, String)>, FileCommandError> {
    let text = decode(bytes);
    let mut pairs = Vec::new();
    let mut lines = Lines::new(&text);
    while let Some((line, _)) = lines.next_line() {
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(eq), h) if h.is_none_or(|h| eq < h) => {
                if eq == 0 {
                    return Err(FileCommandError::EmptyName { line: line.into() });
                }
                pairs.push((line[..eq].to_owned(), line[eq + 1..].to_owned()));
            }
            (_, Some(h)) => {
                let (name, delimiter) = (&line[..h], &line[h + 2..]);
                if name.is_empty() || delimiter.is_empty() {
                    return Err(FileCommandError::EmptyNameOrDelimiter { line: line.into() });
                }
                let value = read_heredoc(&text, &mut lines, delimiter)?;
                pairs.push((name.to_owned(), value));
            }
            _ => return Err(FileCommandError::InvalidFormat { line: line.into() }),
        }
    }
    Ok(pairs)
}

/// Reads heredoc value lines up to `delimiter`; returns the value as a slice of `text`.
fn read_heredoc(
    text: &str,
    lines: &mut Lines<'_>,
    delimiter: &str,
) -> Result<String, FileCommandError> {
    let start = lines.pos;
    let mut end = start;
    loop {
        match lines.next_line() {
            None => {
                return Err(FileCommandError::DelimiterNotFound {
                    delimiter: delimiter.into(),
                });
            }
            Some((line, _)) if line == delimiter => break,
            Some((_, false)) => return Err(FileCommandError::MissingNewline),
            Some((_, true)) => end = lines.pos - 1,
        }
    }
    Ok(text[start..end].to_owned())
}

/// `\n`-separated lines with their position; the flag says whether a newline ended the line.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines { text, pos: 0 }
    }

    fn next_line(&mut self) -> Option<(&'a str, bool)> {
        if self.pos >= self.text.len() {
            return None;
        }
        let rest = &self.text[self.pos..];
        match rest.find('\n') {
            Some(i) => {
                self.pos += i + 1;
                Some((&rest[..i], true))
            }
            None => {
                self.pos = self.text.len();
                Some((rest, false))
            }
        }
    }
}

/// Parses `GITHUB_PATH`: each non-empty line (lines end at `\n`, `\r\n` or `\r`, as .NET's
/// `ReadAllLines`), untrimmed, in file order.
pub fn parse_path_lines(bytes: &[u8]) -> Vec<String> {
    let text = decode(bytes);
    text.split('\n')
        .flat_map(|l| l.split('\r'))
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Adds `GITHUB_PATH` entries to the prepend list: re-adding an entry moves it to the end (the
/// newest entries come first in `PATH`, see [`crate::job::script::prepend_path`]). Linear in
/// the sizes of both lists.
pub fn add_path_entries(prepend: &mut Vec<String>, entries: &[String]) {
    if entries.is_empty() {
        return;
    }
    // The last occurrence of each new entry wins its position.
    let mut last_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        last_at.insert(entry.as_str(), i);
    }
    prepend.retain(|existing| !last_at.contains_key(existing.as_str()));
    prepend.extend(
        entries
            .iter()
            .enumerate()
            .filter(|(i, e)| last_at.get(e.as_str()) == Some(i))
            .map(|(_, e)| e.clone()),
    );
}

/// True if `GITHUB_ENV` may not set `name`.
pub fn is_blocked_env(name: &str) -> bool {
    ENV_BLOCK_LIST.iter().any(|b| b.eq_ignore_ascii_case(name))
}

/// The error annotation for a blocked `GITHUB_ENV` variable.
pub fn blocked_env_message(name: &str) -> String {
    let blocked = ENV_BLOCK_LIST
        .iter()
        .find(|b| b.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or(name);
    format!("Can't store {blocked} output parameter using '$GITHUB_ENV' command.")
}

/// Outcome of reading a step summary file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepSummary {
    /// The file is empty: nothing to upload.
    Empty,
    /// The markdown (unmasked; mask it line by line before it leaves the runtime).
    Markdown(String),
    /// The file is too large; the string is the error to report (not a step failure).
    TooLarge(String),
}

/// Reads a `GITHUB_STEP_SUMMARY` file's contents.
pub fn parse_step_summary(bytes: &[u8]) -> StepSummary {
    if bytes.is_empty() {
        return StepSummary::Empty;
    }
    if bytes.len() > STEP_SUMMARY_MAX_BYTES {
        return StepSummary::TooLarge(summary_too_large_message(bytes.len() as u64));
    }
    StepSummary::Markdown(decode(bytes))
}

/// UTF-8 (lossy) without a leading BOM, as .NET's `File.ReadAllText` reads it.
fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
#[path = "filecmd_tests.rs"]
mod tests;
