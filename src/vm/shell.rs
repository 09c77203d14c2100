//! Pure rendering of the POSIX shell snippets the SSH layer runs in the guest.
//!
//! Owns: quoting argv, environment and working directory for the remote login shell, the exec
//! wrapper that records the command's PID (so it can be interrupted later), the signal snippet
//! that interrupts a command with all its descendants, and the `cat` snippets of upload and
//! download. No I/O here: everything is a string function with unit tests.
//!
//! The wrapper is:
//!
//! ```text
//! echo $$ >'<pidfile>' || exit 125   # the shell's PID; `exec` keeps it for the program
//! cd '<cwd>' || exit 125             # only if a cwd is given
//! export NAME='value'                # once per variable, in order
//! exec 'argv0' 'argv1' ...
//! ```

use crate::vm::GuestCommand;

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

/// Renders a snippet that writes stdin to `path` with `mode`.
pub fn render_upload(path: &str, mode: u32) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    let path = quote(path);
    Ok(format!("cat >{path} && chmod {:o} {path}\n", mode & 0o7777))
}

/// Renders a snippet that writes the file at `path` to stdout.
pub fn render_download(path: &str) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    Ok(format!("exec cat {}\n", quote(path)))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    const NASTY: &[&str] = &[
        "",
        "plain",
        "with space",
        "it's",
        "'",
        "''",
        "\"double\"",
        "$HOME",
        "${PATH}",
        "`id`",
        "$(id)",
        "a\\b",
        "semi;colon",
        "pipe|amp&",
        "glob*?[x]",
        "new\nline",
        "tab\there",
        "~tilde",
        "#hash",
        "-n",
        "unicode ✓ é",
        "!bang",
    ];

    /// Runs a rendered snippet with the host's /bin/sh and returns stdout.
    fn run_sh(script: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
        assert!(
            out.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoted_words_survive_the_shell_unchanged() {
        for word in NASTY {
            let script = format!("printf '%s' {}", quote(word));
            assert_eq!(run_sh(&script), *word, "word {word:?}");
        }
    }

    #[test]
    fn exec_wrapper_passes_argv_env_and_cwd_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid it's");
        let cwd = dir.path().join("work dir $x");
        std::fs::create_dir(&cwd).unwrap();
        let mut argv = vec!["printf".to_owned(), "[%s]\\n".to_owned()];
        argv.extend(NASTY.iter().map(|s| (*s).to_owned()));
        argv.push("$GREETING".into());
        let cmd = GuestCommand {
            argv,
            env: vec![
                ("GREETING".into(), "old".into()),
                ("GREETING".into(), "it's $(new)".into()),
            ],
            cwd: Some(cwd.to_str().unwrap().to_owned()),
            stdin: None,
        };
        let mut script = render_exec(&cmd, pidfile.to_str().unwrap()).unwrap();
        // Append checks by replacing the final exec with a subshell that also prints env and cwd.
        script = script.replacen("exec ", "", 1);
        script.push_str("printf '%s\\n' \"$GREETING\" \"$PWD\"\n");
        let expected: String = NASTY
            .iter()
            .chain(["$GREETING"].iter())
            .map(|w| format!("[{w}]\n"))
            .chain([format!("it's $(new)\n{}\n", cwd.display())])
            .collect();
        assert_eq!(run_sh(&script), expected);
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(pid > 0);
    }

    #[test]
    fn exec_wrapper_fails_cleanly_on_missing_cwd() {
        let cmd = GuestCommand {
            argv: vec!["true".into()],
            cwd: Some("/nonexistent/ghrunner".into()),
            ..Default::default()
        };
        let script = render_exec(&cmd, "/dev/null").unwrap();
        let status = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert_eq!(status.code(), Some(WRAPPER_FAILED_EXIT));
    }

    #[test]
    fn rejects_what_cannot_be_quoted() {
        let base = GuestCommand {
            argv: vec!["true".into()],
            ..Default::default()
        };
        assert_eq!(
            render_exec(&GuestCommand::default(), "/p"),
            Err(ShellError::EmptyArgv)
        );
        let nul_arg = GuestCommand {
            argv: vec!["a\0b".into()],
            ..base.clone()
        };
        assert!(matches!(
            render_exec(&nul_arg, "/p"),
            Err(ShellError::NulByte { .. })
        ));
        for name in ["", "1A", "A-B", "A B", "A=B", "$X", "é"] {
            let cmd = GuestCommand {
                env: vec![(name.into(), "v".into())],
                ..base.clone()
            };
            assert_eq!(
                render_exec(&cmd, "/p"),
                Err(ShellError::BadEnvName { name: name.into() }),
                "{name:?}"
            );
        }
        assert!(render_upload("a\0b", 0o644).is_err());
    }

    #[test]
    fn signal_snippet_stops_a_process_tree() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let cmd = GuestCommand {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "sleep 600 & sleep 600; wait".into(),
            ],
            ..Default::default()
        };
        let script = render_exec(&cmd, pidfile.to_str().unwrap()).unwrap();
        let mut child = Command::new("sh").arg("-c").arg(&script).spawn().unwrap();
        while std::fs::read_to_string(&pidfile).map_or(true, |s| s.trim().is_empty()) {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Let the inner shell fork its sleeps before signalling the tree.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let root: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let children = children_of(root);
        assert_eq!(children.len(), 2, "the two sleeps");
        run_sh(&render_signal(pidfile.to_str().unwrap(), "TERM"));
        let status = child.wait().unwrap();
        assert!(!status.success());
        for pid in children {
            // Reparented to init once signalled; wait until reaped (bounded).
            let mut tries = 0;
            while alive(pid) && tries < 100 {
                std::thread::sleep(std::time::Duration::from_millis(20));
                tries += 1;
            }
            assert!(!alive(pid), "{pid} survived");
        }
        // Signalling again when everything is gone is harmless.
        run_sh(&render_signal(pidfile.to_str().unwrap(), "KILL"));
        run_sh(&render_signal("/nonexistent/pid", "KILL"));
    }

    /// True if `pid` exists and is not a zombie.
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    }

    fn children_of(parent: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some(after_comm) = stat.rsplit_once(')').map(|(_, rest)| rest.to_owned()) else {
                continue;
            };
            let ppid: Option<u32> = after_comm
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok());
            if ppid == Some(parent) {
                out.push(entry.file_name().to_str().unwrap().parse().unwrap());
            }
        }
        out
    }

    #[test]
    fn upload_and_download_round_trip_a_nasty_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("it's a $file");
        let path = path.to_str().unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(render_upload(path, 0o640).unwrap())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(b"payload").unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(run_sh(&render_download(path).unwrap()), "payload");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
