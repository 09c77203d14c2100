//! Pure rendering of the POSIX shell snippets the SSH layer runs in the guest.
//!
//! Owns: quoting argv, environment and working directory for the remote login shell, the exec
//! wrapper that records the command's PID (so it can be interrupted later), the signal snippet
//! that interrupts a command with all its descendants, and (in `transfer`) the snippets that
//! move files: upload, download, batched writes and framed batched reads. No I/O here:
//! everything is a string function with unit tests.
//!
//! The wrapper is:
//!
//! ```text
//! echo $$ >'<pidfile>' || exit 125   # the shell's PID; `exec` keeps it for the program
//! cd '<cwd>' || exit 125             # only if a cwd is given
//! export NAME='value'                # once per variable, in order
//! exec 'argv0' 'argv1' ...
//! ```

mod transfer;

use crate::vm::GuestCommand;
pub use transfer::{
    ReadBatchError, parse_read_batch, read_batch_limit, render_download, render_download_capped,
    render_read_batch, render_upload, render_write_batch,
};

/// Exit code of the wrapper when it cannot record its PID or enter the working directory.
pub const WRAPPER_FAILED_EXIT: i32 = 125;

/// A command that cannot be expressed safely for the remote shell.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// `argv` is empty.
    #[error("the command has no program")]
    EmptyArgv,
    /// A string contains a NUL byte, which no shell word can carry.
    #[error("{what} contains a NUL byte")]
    NulByte {
        /// Which part, e.g. `argument 2`.
        what: String,
    },
    /// An environment variable name is not a portable shell identifier.
    #[error("environment variable name {name:?} is not a valid shell identifier")]
    BadEnvName {
        /// The name.
        name: String,
    },
}

/// Quotes `word` as one single-quoted shell word (`'` becomes `'\''`).
pub fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

fn check_nul(what: impl FnOnce() -> String, s: &str) -> Result<(), ShellError> {
    if s.contains('\0') {
        return Err(ShellError::NulByte { what: what() });
    }
    Ok(())
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Renders the exec wrapper for `cmd`, recording the PID in `pidfile`.
pub fn render_exec(cmd: &GuestCommand, pidfile: &str) -> Result<String, ShellError> {
    if cmd.argv.is_empty() {
        return Err(ShellError::EmptyArgv);
    }
    check_nul(|| "the pid file path".into(), pidfile)?;
    let mut script = format!(
        "echo $$ >{} || exit {WRAPPER_FAILED_EXIT}\n",
        quote(pidfile)
    );
    if let Some(cwd) = &cmd.cwd {
        check_nul(|| "the working directory".into(), cwd)?;
        script.push_str(&format!(
            "cd {} || exit {WRAPPER_FAILED_EXIT}\n",
            quote(cwd)
        ));
    }
    for (name, value) in &cmd.env {
        if !is_identifier(name) {
            return Err(ShellError::BadEnvName { name: name.clone() });
        }
        check_nul(|| format!("the value of {name}"), value)?;
        script.push_str(&format!("export {name}={}\n", quote(value)));
    }
    script.push_str("exec");
    for (i, arg) in cmd.argv.iter().enumerate() {
        check_nul(|| format!("argument {i}"), arg)?;
        script.push(' ');
        script.push_str(&quote(arg));
    }
    script.push('\n');
    Ok(script)
}

/// Renders a snippet that sends `signal` (e.g. `INT`) to the process recorded in `pidfile` and
/// to all its descendants (found through `/proc`; where there is no `/proc`, only the recorded
/// process is signalled). A missing pid file is not an error: the command has not started or
/// has already ended.
pub fn render_signal(pidfile: &str, signal: &str) -> String {
    // The awk program computes the transitive children of the root from "pid ppid" pairs.
    format!(
        r#"p=$(cat {pidfile} 2>/dev/null) || exit 0
t=$(for s in /proc/[0-9]*/stat; do read -r a b c d e <"$s" 2>/dev/null && echo "$a $d"; done | awk -v r="$p" '{{par[$1]=$2}} END {{s[r]=1; n=1; while (n) {{n=0; for (c in par) if (!(c in s) && (par[c] in s)) {{s[c]=1; n=1}}}} for (x in s) print x}}')
kill -s {signal} ${{t:-$p}} 2>/dev/null
exit 0
"#,
        pidfile = quote(pidfile),
        signal = signal,
    )
}

#[cfg(test)]
mod tests;
