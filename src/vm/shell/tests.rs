//! Unit tests of the shell snippets, each run by the host's `/bin/sh` where it matters.

use std::process::Command;

use super::*;
use crate::vm::GuestRead;

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
