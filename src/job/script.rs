//! Script rendering: a `run:` step's evaluated inputs → the script file, argv, environment and
//! working directory to run in the guest (protocol-jobs §6 steps 5–10). Pure.
//!
//! ```text
//! shell: inputs.shell ?? defaults.run.shell ?? (bash -e {0} | sh -e {0})
//!   built-in name ──► template + extension      custom "prog args {0}" ──► split at first space
//! script ──► <temp>/<uuid><ext>  (verbatim; cmd/pwsh get the runner's wrapper lines)
//! template ──{0} = path──► .NET composite format ──► Windows-style argv split
//! env: env context → PATH (GITHUB_PATH prepends) → GITHUB_*/RUNNER_* → OIDC → GITHUB_ACTIONS, CI
//! cwd: workspace joined with inputs.workingDirectory ?? defaults.run.working-directory
//! ```

use uuid::Uuid;

use crate::expr::Object;
use crate::job::plan::{JobPlan, RunDefaults, github_runner_env, merge_env, set_env};
use crate::vm::GuestCommand;

/// PATH assumed for the guest when GITHUB_PATH prepends exist but neither the env context nor
/// the caller knows the guest's own PATH.
pub const DEFAULT_GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a step's script cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A custom shell without `{0}` (the official message).
    #[error(
        "Invalid shell option. Shell must be a valid built-in (bash, sh, cmd, powershell, pwsh) or a format string containing '{{0}}'"
    )]
    InvalidShell {
        /// The shell text.
        shell: String,
    },
    /// The shell's argument template is not a valid .NET composite format.
    #[error("the shell's argument template {template:?} is not a valid format string")]
    BadTemplate {
        /// The template.
        template: String,
    },
}

/// How a shell is run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// The program (looked up on the guest's PATH).
    pub program: String,
    /// The argument template holding `{0}`.
    pub template: String,
    /// Extension of the script file (`.sh`, `.py`, … or empty).
    pub extension: &'static str,
    /// The built-in this is (for the script wrapper), if any.
    pub builtin: Option<&'static str>,
}

/// Built-in shells: name, argument template, script extension.
const BUILTIN_SHELLS: &[(&str, &str, &str)] = &[
    ("bash", "--noprofile --norc -e -o pipefail {0}", ".sh"),
    ("sh", "-e {0}", ".sh"),
    ("python", "{0}", ".py"),
    ("pwsh", "-command \". '{0}'\"", ".ps1"),
    ("powershell", "-command \". '{0}'\"", ".ps1"),
    ("cmd", "/D /E:ON /V:OFF /S /C \"CALL \"{0}\"\"", ".cmd"),
];

fn builtin(name: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    BUILTIN_SHELLS
        .iter()
        .find(|(n, _, _)| n.eq_ignore_ascii_case(name))
}

/// Resolves the shell of a step: `shell` (evaluated `inputs.shell`, else `defaults.run.shell`)
/// or the default, `bash -e {0}` when the image has bash, else `sh -e {0}`.
pub fn resolve_shell(shell: Option<&str>, has_bash: bool) -> Result<ShellCommand, ScriptError> {
    let shell = shell.map(str::trim).filter(|s| !s.is_empty());
    let Some(shell) = shell else {
        return Ok(ShellCommand {
            program: if has_bash { "bash" } else { "sh" }.to_owned(),
            template: "-e {0}".to_owned(),
            extension: ".sh",
            builtin: Some("sh"),
        });
    };
    if let Some((name, template, extension)) = builtin(shell) {
        return Ok(ShellCommand {
            program: shell.to_owned(),
            template: (*template).to_owned(),
            extension,
            builtin: Some(name),
        });
    }
    let (program, template) = shell.split_once(' ').unwrap_or((shell, ""));
    let known = builtin(program);
    let template = if template.is_empty() {
        known.map(|(_, t, _)| (*t).to_owned()).unwrap_or_default()
    } else {
        template.to_owned()
    };
    if !template.contains("{0}") {
        return Err(ScriptError::InvalidShell {
            shell: shell.to_owned(),
        });
    }
    Ok(ShellCommand {
        program: program.to_owned(),
        template,
        extension: known.map_or("", |(_, _, e)| *e),
        builtin: known.map(|(n, _, _)| *n),
    })
}

/// The script file's contents: verbatim, except the runner's wrappers for cmd (`@echo off`)
/// and PowerShell (stop on error, exit with `$LASTEXITCODE`).
pub fn script_contents(script: &str, shell: &ShellCommand) -> String {
    match shell.builtin {
        Some("cmd") => format!("@echo off\n{script}"),
        Some("pwsh" | "powershell") => format!(
            "$ErrorActionPreference = 'stop'\n{script}\nif ((Test-Path -LiteralPath variable:\\LASTEXITCODE)) {{ exit $LASTEXITCODE }}"
        ),
        _ => script.to_owned(),
    }
}

/// .NET composite formatting with one argument: `{0}` → `arg`, `{{`/`}}` → braces; any other
/// placeholder, a format specifier or a lone brace is an error. Parsed by
/// [`crate::expr::composite`], the crate's one format-string parser.
pub fn format_template(template: &str, arg: &str) -> Result<String, ScriptError> {
    use crate::expr::composite::{self, Segment};
    let bad = || ScriptError::BadTemplate {
        template: template.to_owned(),
    };
    let mut out = String::with_capacity(template.len() + arg.len());
    for segment in composite::parse(template, 1).map_err(|_| bad())? {
        match segment {
            Segment::Text(text) => out.push_str(text),
            Segment::Arg { specifiers, .. } if specifiers.is_empty() => out.push_str(arg),
            Segment::Arg { .. } => return Err(bad()),
        }
    }
    Ok(out)
}

/// Splits a command line into arguments with .NET's rules (used on every OS): spaces/tabs
/// separate; `"` toggles quoting (`""` inside quotes is a literal quote); backslashes are
/// literal unless they precede a quote, where each pair yields one backslash and an odd one
/// escapes the quote.
pub fn split_args(line: &str) -> Vec<String> {
    let chars: Vec<char> = line.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        if i == chars.len() {
            break;
        }
        let mut arg = String::new();
        let mut in_quotes = false;
        while i < chars.len() {
            let backslashes = chars[i..].iter().take_while(|&&c| c == '\\').count();
            if backslashes > 0 {
                i += backslashes;
                if chars.get(i) == Some(&'"') {
                    arg.extend(std::iter::repeat_n('\\', backslashes / 2));
                    if backslashes % 2 == 1 {
                        arg.push('"');
                        i += 1;
                    }
                } else {
                    arg.extend(std::iter::repeat_n('\\', backslashes));
                }
                continue;
            }
            let c = chars[i];
            if c == '"' {
                if in_quotes && chars.get(i + 1) == Some(&'"') {
                    arg.push('"');
                    i += 1;
                } else {
                    in_quotes = !in_quotes;
                }
                i += 1;
                continue;
            }
            if matches!(c, ' ' | '\t') && !in_quotes {
                break;
            }
            arg.push(c);
            i += 1;
        }
        args.push(arg);
    }
    args
}

/// Joins the working directory: absolute `dir` replaces the workspace, relative is appended,
/// empty is the workspace (not normalised, as the runner does).
pub fn working_directory(workspace: &str, dir: Option<&str>) -> String {
    match dir.filter(|d| !d.is_empty()) {
        None => workspace.to_owned(),
        Some(dir) if dir.starts_with('/') => dir.to_owned(),
        Some(dir) if workspace.ends_with('/') => format!("{workspace}{dir}"),
        Some(dir) => format!("{workspace}/{dir}"),
    }
}

/// PATH with the GITHUB_PATH entries (in the order they were added) prepended newest-first;
/// nothing is prepended twice when `base` already starts with the prefix; an empty base gives
/// the prefix alone.
pub fn prepend_path(prepends: &[String], base: &str) -> String {
    let prefix = prepends
        .iter()
        .rev()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(":");
    if prefix.is_empty() {
        base.to_owned()
    } else if base.is_empty() {
        prefix
    } else if base.starts_with(&prefix) {
        base.to_owned()
    } else {
        format!("{prefix}:{base}")
    }
}

/// What the step runtime knows when it runs a script step.
#[derive(Debug, Clone)]
pub struct ScriptRequest<'a> {
    /// The evaluated `run:` text.
    pub script: &'a str,
    /// The evaluated `inputs.shell` (empty or `None` = unset).
    pub shell: Option<&'a str>,
    /// The evaluated `inputs.workingDirectory` (`Some("")` = the workspace, defaults ignored).
    pub working_directory: Option<&'a str>,
    /// `defaults.run` of the job.
    pub defaults: &'a RunDefaults,
    /// The env context of this step (job env, GITHUB_ENV, step env merged; later wins).
    pub env: &'a [(String, String)],
    /// GITHUB_PATH entries in the order added.
    pub path_prepends: &'a [String],
    /// The guest's own PATH, if known (else [`DEFAULT_GUEST_PATH`] when a PATH is needed).
    pub guest_path: Option<&'a str>,
    /// The contexts of this step (`github` with `action`, file-command paths, …; `runner`).
    pub contexts: &'a Object,
    /// Id naming the script file.
    pub script_id: Uuid,
}

/// A step ready to run in the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RenderedStep {
    /// `<temp>/<uuid><ext>`; upload [`RenderedStep::script`] there first.
    pub script_path: String,
    /// The script file's contents (UTF-8, no BOM).
    pub script: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Environment, in order (keys unique).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: String,
}

impl RenderedStep {
    /// The guest command (stdin as given, e.g. the step's `standardInInput`).
    pub fn to_guest_command(&self, stdin: Option<Vec<u8>>) -> GuestCommand {
        GuestCommand {
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: Some(self.cwd.clone()),
            stdin,
        }
    }
}

/// Renders a script step for `plan`'s guest.
pub fn render_step(
    plan: &JobPlan,
    request: &ScriptRequest<'_>,
) -> Result<RenderedStep, ScriptError> {
    let shell_text = request
        .shell
        .filter(|s| !s.trim().is_empty())
        .or(request.defaults.shell.as_deref());
    let shell = resolve_shell(shell_text, plan.facts.has_bash)?;
    let script_path = format!(
        "{}/{}{}",
        plan.layout.temp,
        request.script_id.hyphenated(),
        shell.extension
    );
    let arguments = format_template(&shell.template, &script_path.replace('"', "\\\""))?;
    let mut argv = vec![shell.program.clone()];
    argv.extend(split_args(&arguments));
    // A given input wins even when empty (the runner only falls back when the input is absent).
    let dir = request
        .working_directory
        .or(request.defaults.working_directory.as_deref());
    Ok(RenderedStep {
        script: script_contents(request.script, &shell),
        script_path,
        argv,
        env: step_environment(plan, request),
        cwd: working_directory(&plan.layout.workspace, dir),
    })
}

/// The environment of a script step, in the runner's order (later wins, keys unique).
pub fn step_environment(plan: &JobPlan, request: &ScriptRequest<'_>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    merge_env(&mut env, request.env.iter().cloned());
    if !request.path_prepends.is_empty() {
        let base = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str())
            .or(request.guest_path)
            .unwrap_or(DEFAULT_GUEST_PATH)
            .to_owned();
        set_env(
            &mut env,
            "PATH".into(),
            prepend_path(request.path_prepends, &base),
        );
    }
    for (k, v) in github_runner_env(request.contexts) {
        set_env(&mut env, k, v);
    }
    if let (Some(url), Some(token)) = (&plan.id_token_url, &plan.id_token_request_token) {
        set_env(&mut env, "ACTIONS_ID_TOKEN_REQUEST_URL".into(), url.clone());
        set_env(
            &mut env,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN".into(),
            token.clone(),
        );
    }
    if let Some(id) = &plan.orchestration_id {
        set_env(&mut env, "ACTIONS_ORCHESTRATION_ID".into(), id.clone());
    }
    set_env(&mut env, "GITHUB_ACTIONS".into(), "true".into());
    if !env.iter().any(|(k, _)| k == "CI") {
        env.push(("CI".into(), "true".into()));
    }
    env
}

#[cfg(test)]
mod tests;
