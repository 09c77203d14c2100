//! Workflow commands: the `::name k=v::data` (and legacy `##[name k=v]data`) lines a step prints
//! to stdout or stderr to talk to the runner.
//!
//! Owns: parsing a line into a [`WorkflowCommand`] and the per-step [`CommandProcessor`] state
//! machine, which turns each output line into an ordered list of [`CommandEffect`]s: lines to
//! log, masks to add, outputs, state, env, path, annotations, debug text, step failure. Pure: the
//! step runtime applies the effects (and masks every logged line after applying them, so a line
//! printed after `::add-mask::` is already masked).
//!
//! ```text
//!              ::stop-commands::TOKEN (valid token)
//!   Processing ───────────────────────────────────► Stopped(TOKEN)
//!       ▲        every other command line is                │  command lines are logged
//!       │        handled; plain lines logged                │  as plain text
//!       └───────────────────────────────────────────────────┘
//!                         ::TOKEN:: (any case)
//! ```
//!
//! Echo (`::echo::on|off`, initially on with step debug) logs each handled command line
//! except `add-mask` (logged as `::add-mask::***`), `debug`, `error`, `warning` and `notice`.

use crate::job::events::{Annotation, AnnotationLevel};

mod annotation;
mod parse;

pub use annotation::annotation_log_line;
use annotation::build_annotation;
pub use parse::{
    WorkflowCommand, parse_legacy, parse_v2, unescape_data, unescape_legacy, unescape_property,
};

/// Commands the runner knows (besides the active stop token); other names are plain text.
const REGISTERED: &[&str] = &[
    "stop-commands",
    "set-env",
    "set-output",
    "save-state",
    "add-mask",
    "add-path",
    "add-matcher",
    "remove-matcher",
    "debug",
    "warning",
    "error",
    "notice",
    "group",
    "endgroup",
    "echo",
];

/// A stop token longer than this many characters is masked (it may be a secret-like nonce).
const STOP_TOKEN_MASK_MIN_CHARS: usize = 6;

/// Environment variable that re-enables `set-env` and `add-path`.
pub const ALLOW_UNSECURE_COMMANDS: &str = "ACTIONS_ALLOW_UNSECURE_COMMANDS";

/// Environment variable that allows weak `stop-commands` tokens.
pub const ALLOW_UNSECURE_STOP_TOKENS: &str = "ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS";

const DISABLED_COMMAND_MESSAGE: &str = "command is disabled. Please upgrade to using Environment \
     Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` \
     environment variable to `true`. For more information see: \
     https://github.blog/changelog/2020-10-01-github-actions-deprecating-set-env-and-add-path-commands/";

const WEAK_STOP_TOKEN_MESSAGE: &str = "You cannot use a endToken that is an empty string, the \
     string 'pause-logging', or another workflow command. For more information see: \
     https://docs.github.com/actions/learn-github-actions/workflow-commands-for-github-actions#example-stopping-and-starting-workflow-commands \
     or opt into insecure command execution by setting the \
     `ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` environment variable to `true`.";

/// What a line asks for, in the order to apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandEffect {
    /// Write this line to the step log (mask it first).
    Log(String),
    /// Register a secret (apply before logging later effects).
    AddMask(String),
    /// `steps.<id>.outputs.<name>` (deprecated `::set-output`).
    SetOutput {
        /// Output name.
        name: String,
        /// Value.
        value: String,
    },
    /// State for the action's post step (deprecated `::save-state`).
    SaveState {
        /// State name.
        name: String,
        /// Value.
        value: String,
    },
    /// Job environment for later steps (`::set-env`, only when allowed).
    SetEnv {
        /// Variable name.
        name: String,
        /// Value.
        value: String,
    },
    /// Prepend to `PATH` for later steps (`::add-path`, only when allowed).
    AddPath(String),
    /// An annotation; it is also logged as `##[error]…` etc. (see [`annotation_log_line`]).
    Annotation(Annotation),
    /// Debug text; logged as `##[debug]…` only with step debug.
    Debug(String),
    /// The step fails (its command result becomes Failed).
    Fail,
}

/// Settings of a step's command processing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandConfig {
    /// Step debug (`ACTIONS_STEP_DEBUG`): echo starts on.
    pub step_debug: bool,
    /// `ACTIONS_ALLOW_UNSECURE_COMMANDS` is true (runner env or the step's env context).
    pub allow_unsecure_commands: bool,
    /// `ACTIONS_ALLOW_UNSECURE_STOPCOMMAND_TOKENS` is true.
    pub allow_unsecure_stop_tokens: bool,
    /// The service enables `notice` (`DistributedTask.EnhancedAnnotations`); without it a
    /// `::notice::` line is plain text.
    pub enhanced_annotations: bool,
    /// `github.workspace`, to make annotation file paths workspace-relative.
    pub workspace: Option<String>,
}

/// Parses a boolean setting the way the official runner does (`true`/`false`, any case,
/// surrounding whitespace ignored); anything else is `false`.
pub fn parse_bool_setting(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("true")
}

/// The per-step command state machine (see the module doc).
#[derive(Debug, Clone)]
pub struct CommandProcessor {
    config: CommandConfig,
    echo: bool,
    stop_token: Option<String>,
}

impl CommandProcessor {
    /// A processor for one step.
    pub fn new(config: CommandConfig) -> Self {
        CommandProcessor {
            echo: config.step_debug,
            config,
            stop_token: None,
        }
    }

    /// True while `::stop-commands::` is in effect.
    pub fn is_stopped(&self) -> bool {
        self.stop_token.is_some()
    }

    /// Processes one output line (without its newline).
    pub fn process_line(&mut self, line: &str) -> Vec<CommandEffect> {
        let plain = || vec![CommandEffect::Log(escape_runner_markers(line))];
        if !line.contains("::") && !line.contains("##[") {
            return plain();
        }
        let registered = |name: &str| {
            REGISTERED.iter().any(|r| r.eq_ignore_ascii_case(name))
                || self
                    .stop_token
                    .as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(name))
        };
        let Some(command) = parse_v2(line, registered).or_else(|| parse_legacy(line, registered))
        else {
            return plain();
        };
        let name = command.name.to_ascii_lowercase();
        if name == "notice" && !self.config.enhanced_annotations {
            return plain();
        }
        if let Some(token) = &self.stop_token {
            if token.eq_ignore_ascii_case(&command.name) {
                self.stop_token = None;
                return vec![
                    CommandEffect::Log(line.to_owned()),
                    CommandEffect::Debug("Resume processing commands".into()),
                ];
            }
            return plain();
        }
        let mut out = Vec::new();
        if let Err(message) = self.handle(&name, line, command, &mut out) {
            let shown = if omits_echo(&name) {
                name.as_str()
            } else {
                line
            };
            out.push(error(format!(
                "Unable to process command '{shown}' successfully."
            )));
            out.push(error(message));
            out.push(CommandEffect::Fail);
        }
        out
    }

    /// Runs one recognised command; `Err` is the handler's failure message.
    fn handle(
        &mut self,
        name: &str,
        line: &str,
        command: WorkflowCommand,
        out: &mut Vec<CommandEffect>,
    ) -> Result<(), String> {
        if name == "stop-commands" {
            return self.stop(line, command.data, out);
        }
        if self.echo && !omits_echo(name) {
            out.push(CommandEffect::Log(line.to_owned()));
        }
        match name {
            "set-output" | "save-state" => {
                let key = required_name(&command, name)?;
                let value = command.data;
                out.push(if name == "set-output" {
                    CommandEffect::SetOutput { name: key, value }
                } else {
                    CommandEffect::SaveState { name: key, value }
                });
            }
            "set-env" | "add-path" => self.unsecure(name, command, out)?,
            "add-mask" => {
                if command.data.trim().is_empty() {
                    out.push(warning(
                        "Can't add secret mask for empty string in ##[add-mask] command.".into(),
                    ));
                } else {
                    out.push(CommandEffect::AddMask(command.data));
                    if self.echo {
                        out.push(CommandEffect::Log("::add-mask::***".into()));
                    }
                }
            }
            "debug" => out.push(CommandEffect::Debug(command.data)),
            "error" | "warning" | "notice" => {
                let annotation = build_annotation(name, &command, &self.config, out);
                out.push(CommandEffect::Annotation(annotation));
            }
            "group" => out.push(CommandEffect::Log(format!("##[group]{}", command.data))),
            "endgroup" => out.push(CommandEffect::Log("##[endgroup]".into())),
            "echo" => self.set_echo(&command.data, out)?,
            _ => out.push(warning(format!(
                "Problem matchers are not supported by this runner; ##[{name}] was ignored."
            ))),
        }
        Ok(())
    }

    fn stop(
        &mut self,
        line: &str,
        token: String,
        out: &mut Vec<CommandEffect>,
    ) -> Result<(), String> {
        let weak = token.is_empty()
            || token.eq_ignore_ascii_case("pause-logging")
            || REGISTERED.iter().any(|r| r.eq_ignore_ascii_case(&token));
        if weak && !self.config.allow_unsecure_stop_tokens {
            return Err(WEAK_STOP_TOKEN_MESSAGE.into());
        }
        if token.chars().count() > STOP_TOKEN_MASK_MIN_CHARS {
            out.push(CommandEffect::AddMask(token.clone()));
        }
        out.push(CommandEffect::Log(line.to_owned()));
        out.push(CommandEffect::Debug(
            "Paused processing commands until the token you called ::stopCommands:: with is \
             received"
                .into(),
        ));
        self.stop_token = Some(token);
        Ok(())
    }

    fn unsecure(
        &self,
        name: &str,
        command: WorkflowCommand,
        out: &mut Vec<CommandEffect>,
    ) -> Result<(), String> {
        if !self.config.allow_unsecure_commands {
            return Err(format!("The `{name}` {DISABLED_COMMAND_MESSAGE}"));
        }
        if name == "add-path" {
            if command.data.is_empty() {
                return Err("Required field 'path' is missing in ##[add-path] command.".into());
            }
            out.push(CommandEffect::AddPath(command.data));
            return Ok(());
        }
        let key = required_name(&command, name)?;
        if crate::job::filecmd::is_blocked_env(&key) {
            out.push(error(format!(
                "Can't update {} environment variable using ::set-env:: command.",
                key.to_ascii_uppercase()
            )));
        } else {
            out.push(CommandEffect::SetEnv {
                name: key,
                value: command.data,
            });
        }
        Ok(())
    }

    fn set_echo(&mut self, data: &str, out: &mut Vec<CommandEffect>) -> Result<(), String> {
        match data.trim().to_ascii_uppercase().as_str() {
            "ON" => self.echo = true,
            "OFF" => self.echo = false,
            _ => {
                return Err(format!(
                    "Invalid echo command value. Possible values can be: 'on', 'off'. Current \
                     value is: '{data}'."
                ));
            }
        }
        out.push(CommandEffect::Debug(format!(
            "Setting echo command value to '{}'",
            if self.echo { "on" } else { "off" }
        )));
        Ok(())
    }
}

/// Commands whose line is never echoed.
fn omits_echo(name: &str) -> bool {
    matches!(name, "add-mask" | "debug" | "error" | "warning" | "notice")
}

fn required_name(command: &WorkflowCommand, name: &str) -> Result<String, String> {
    match command.property("name") {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(format!(
            "Required field 'name' is missing in ##[{name}] command."
        )),
    }
}

fn runner_annotation(level: AnnotationLevel, message: String) -> CommandEffect {
    CommandEffect::Annotation(Annotation::runner(level, message))
}

fn error(message: String) -> CommandEffect {
    runner_annotation(AnnotationLevel::Error, message)
}

fn warning(message: String) -> CommandEffect {
    runner_annotation(AnnotationLevel::Warning, message)
}

/// Output a step prints may not forge the runner's composite-action markers: `##[start-action`
/// and `##[end-action` become `##[\start-action` and `##[\end-action` in every line that is not a
/// command (actions/runner #4243/#4267, `src/Runner.Worker/Handlers/OutputManager.cs`).
pub fn escape_runner_markers(line: &str) -> String {
    if line.contains("##[start-action") || line.contains("##[end-action") {
        line.replace("##[start-action", "##[\\start-action")
            .replace("##[end-action", "##[\\end-action")
    } else {
        line.to_owned()
    }
}

#[cfg(test)]
mod tests;
