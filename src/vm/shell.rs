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

use crate::vm::{GuestCommand, GuestRead};

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

/// Renders a snippet that writes at most `max_bytes + 1` bytes of the file at `path` to stdout
/// (one byte more than allowed tells the reader the file is too large).
pub fn render_download_capped(path: &str, max_bytes: u64) -> Result<String, ShellError> {
    check_nul(|| "the guest path".into(), path)?;
    Ok(format!(
        "exec head -c {} {}\n",
        max_bytes.saturating_add(1),
        quote(path)
    ))
}

/// Renders a snippet that creates `dirs` (with parents), creates every file of `empty` empty,
/// writes stdin to `from_stdin` (if any) and sets each file's mode; it stops at the first
/// failure. One round trip instead of one per directory set and file.
pub fn render_write_batch(
    dirs: &[&str],
    empty: &[(&str, u32)],
    from_stdin: Option<(&str, u32)>,
) -> Result<String, ShellError> {
    let mut script = String::from("set -e\n");
    if !dirs.is_empty() {
        script.push_str("mkdir -p");
        for dir in dirs {
            check_nul(|| "a guest directory".into(), dir)?;
            script.push(' ');
            script.push_str(&quote(dir));
        }
        script.push('\n');
    }
    let mut modes: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
    for (path, mode) in empty.iter().chain(from_stdin.as_ref()) {
        check_nul(|| "a guest path".into(), path)?;
        modes.entry(mode & 0o7777).or_default().push(quote(path));
    }
    for (path, _) in empty {
        script.push_str(&format!(": >{}\n", quote(path)));
    }
    if let Some((path, _)) = from_stdin {
        script.push_str(&format!("cat >{}\n", quote(path)));
    }
    for (mode, paths) in modes {
        script.push_str(&format!("chmod {mode:o} {}\n", paths.join(" ")));
    }
    Ok(script)
}

/// Renders a snippet that prints each of `paths` framed for [`parse_read_batch`]: a header line
/// (`-` for a missing or unreadable file, `+<size>` for one larger than `max_bytes`, which is
/// not sent, else its size), the bytes, then `sentinel` on its own line. The size is taken in
/// the guest before anything is read, so a huge (or sparse) file costs the host nothing; at most
/// that many bytes are sent even if the file grows meanwhile. Empty files cost no process.
pub fn render_read_batch(
    paths: &[&str],
    sentinel: &str,
    max_bytes: u64,
) -> Result<String, ShellError> {
    let mut words = Vec::with_capacity(paths.len());
    for path in paths {
        check_nul(|| "a guest path".into(), path)?;
        words.push(quote(path));
    }
    Ok(format!(
        "for f in {}; do\n\
         if [ -f \"$f\" ] && [ -r \"$f\" ]; then\n\
         s=$(wc -c <\"$f\" | tr -d ' ') || exit 1\n\
         if [ \"$s\" -gt {max_bytes} ]; then echo \"+$s\"\n\
         elif [ \"$s\" -gt 0 ]; then echo \"$s\" && head -c \"$s\" \"$f\" || exit 1\n\
         else echo 0; fi\n\
         else echo -; fi\n\
         echo {}\n\
         done\n",
        words.join(" "),
        quote(sentinel)
    ))
}

/// The most bytes [`render_read_batch`] output may have for `count` files of at most
/// `max_bytes` each (headers and sentinels included).
pub fn read_batch_limit(count: usize, max_bytes: u64, sentinel: &str) -> usize {
    let per_file = usize::try_from(max_bytes).unwrap_or(usize::MAX);
    count.saturating_mul(per_file.saturating_add(sentinel.len() + 32))
}

/// Why the output of [`render_read_batch`] could not be split (a file changed while it was
/// read, or the output was cut short).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the batched read of {files} files returned malformed output")]
pub struct ReadBatchError {
    /// How many files were asked for.
    pub files: usize,
}

/// Splits the output of [`render_read_batch`] into `count` files; a file claiming more than
/// `max_bytes` (a guest that does not follow the snippet) makes the output malformed.
pub fn parse_read_batch(
    output: &[u8],
    count: usize,
    sentinel: &str,
    max_bytes: u64,
) -> Result<Vec<GuestRead>, ReadBatchError> {
    let bad = || ReadBatchError { files: count };
    let mut rest = output;
    let mut files = Vec::with_capacity(count);
    let mut terminator = sentinel.as_bytes().to_vec();
    terminator.push(b'\n');
    for _ in 0..count {
        let newline = rest.iter().position(|b| *b == b'\n').ok_or_else(bad)?;
        let header = std::str::from_utf8(&rest[..newline])
            .map_err(|_| bad())?
            .trim();
        rest = &rest[newline + 1..];
        let contents = if header == "-" {
            GuestRead::Missing
        } else if let Some(size) = header.strip_prefix('+') {
            let size: u64 = size.parse().map_err(|_| bad())?;
            if size <= max_bytes {
                return Err(bad());
            }
            GuestRead::TooLarge { size }
        } else {
            let size: u64 = header.parse().map_err(|_| bad())?;
            if size > max_bytes {
                return Err(bad());
            }
            let size = usize::try_from(size).map_err(|_| bad())?;
            let bytes = rest.get(..size).ok_or_else(bad)?;
            rest = &rest[size..];
            GuestRead::Contents(bytes.to_vec())
        };
        rest = rest.strip_prefix(terminator.as_slice()).ok_or_else(bad)?;
        files.push(contents);
    }
    if rest.is_empty() {
        Ok(files)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::GuestRead;
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

    #[test]
    fn write_batch_creates_dirs_files_and_modes_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("it's a dir");
        let sub = base.join("sub");
        let (a, b, s) = (sub.join("a"), sub.join("$b"), sub.join("script.sh"));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(&a, b"old content").unwrap();
        let script = render_write_batch(
            &[
                sub.to_str().unwrap(),
                base.join("other/deep").to_str().unwrap(),
            ],
            &[(a.to_str().unwrap(), 0o644), (b.to_str().unwrap(), 0o600)],
            Some((s.to_str().unwrap(), 0o755)),
        )
        .unwrap();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo 'hi'\n")
            .unwrap();
        assert!(child.wait().unwrap().success(), "{script}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            std::fs::read(&a).unwrap(),
            b"",
            "existing files are truncated"
        );
        assert_eq!(std::fs::read(&s).unwrap(), b"echo 'hi'\n");
        assert_eq!((mode(&a), mode(&b), mode(&s)), (0o644, 0o600, 0o755));
        assert!(base.join("other/deep").is_dir());
        assert!(render_write_batch(&["a\0b"], &[], None).is_err());
    }

    #[test]
    fn read_batch_round_trips_through_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full");
        let empty = dir.path().join("empty");
        let missing = dir.path().join("missing");
        let tricky = dir.path().join("it's");
        std::fs::write(&full, b"K=V\nno newline at the end").unwrap();
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&tricky, b"--sentinel-lookalike--\n\n").unwrap();
        let paths = [&full, &empty, &missing, &tricky].map(|p| p.to_str().unwrap().to_owned());
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let sentinel = "--ghrunner-end-0123--";
        let script = render_read_batch(&refs, sentinel, 1024).unwrap();
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{script}");
        let files = parse_read_batch(&out.stdout, 4, sentinel, 1024).unwrap();
        assert_eq!(
            files,
            vec![
                GuestRead::Contents(b"K=V\nno newline at the end".to_vec()),
                GuestRead::Contents(Vec::new()),
                GuestRead::Missing,
                GuestRead::Contents(b"--sentinel-lookalike--\n\n".to_vec()),
            ]
        );
    }

    #[test]
    fn read_batch_sizes_files_before_reading_and_skips_the_large_ones() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        let sparse = dir.path().join("sparse");
        std::fs::write(&small, b"0123456789").unwrap();
        // A sparse file: huge by size, nothing on disk; it must not be read at all.
        let file = std::fs::File::create(&sparse).unwrap();
        file.set_len(500 << 20).unwrap();
        let paths = [&small, &sparse].map(|p| p.to_str().unwrap().to_owned());
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let sentinel = "--end--";
        let script = render_read_batch(&refs, sentinel, 10).unwrap();
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{script}");
        assert!(out.stdout.len() < 100, "the sparse file was not sent");
        let files = parse_read_batch(&out.stdout, 2, sentinel, 10).unwrap();
        assert_eq!(
            files,
            vec![
                GuestRead::Contents(b"0123456789".to_vec()),
                GuestRead::TooLarge { size: 500 << 20 },
            ]
        );
        assert_eq!(
            run_sh(&render_download_capped(paths[1].as_str(), 4).unwrap()).len(),
            5,
            "a capped download sends one byte more than allowed"
        );
    }

    #[test]
    fn read_batch_output_that_does_not_frame_is_refused() {
        let s = "--end--";
        assert_eq!(
            parse_read_batch(b"0\n--end--\n", 1, s, 8),
            Ok(vec![GuestRead::Contents(vec![])])
        );
        assert_eq!(
            parse_read_batch(b"+9\n--end--\n", 1, s, 8),
            Ok(vec![GuestRead::TooLarge { size: 9 }])
        );
        for bad in [
            &b""[..],
            b"0\n",
            b"3\nab--end--\n",
            b"1\nabc\n--end--\n",
            b"x\n--end--\n",
            b"0\n--end--\nextra",
            // A guest that lies about the cap.
            b"9\n123456789\n--end--\n",
            b"+3\n--end--\n",
        ] {
            assert!(parse_read_batch(bad, 1, s, 8).is_err(), "{bad:?} accepted");
        }
    }
}
