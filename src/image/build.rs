//! Building an image directory from a recipe: prerequisite check, the recipe's script with its
//! output streamed as progress, checksums into the manifest, and an atomic install.
//!
//! The build is synchronous (it runs a child process and hashes files); async callers run it on
//! a blocking thread. A failed or cancelled build leaves the destination untouched and removes
//! its staging directory (unless something is still mounted inside it, which is reported).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use super::recipe::Recipe;
use super::staging::{Staging, check_replaceable};
use super::{Image, ImageError, ImageManifest, MANIFEST_FILE, Missing};

/// How many of the script's last output lines a failure report quotes.
pub const FAILURE_TAIL_LINES: usize = 25;

/// How often the build loop looks at the cancellation flag while the script is quiet.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long a cancelled script may take to exit after SIGTERM before it gets SIGKILL.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Read buffer for hashing files.
const HASH_BUFFER_BYTES: usize = 1024 * 1024;

/// What to build and how.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The image directory to create or replace.
    pub out: PathBuf,
    /// Extra environment for the recipe script (e.g. `GHRUNNER_TINY_KERNEL`), later wins.
    pub env: Vec<(String, String)>,
    /// When set to true, the script is stopped and the build fails with
    /// [`ImageError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Kind of a progress line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressKind {
    /// A step began (the recipe's `==> ` lines and the builder's own steps).
    Step,
    /// Detail on stdout of the recipe.
    Detail,
    /// A line on stderr of the recipe.
    Stderr,
}

/// One line of build progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Time since the build started.
    pub elapsed: Duration,
    /// What kind of line it is.
    pub kind: ProgressKind,
    /// The text, without the `==> ` marker and the line end.
    pub text: String,
}

/// Builds `recipe` into `opts.out` and returns the installed image.
pub fn build(
    recipe: &Recipe,
    opts: &BuildOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Image, ImageError> {
    let start = Instant::now();
    let mut emit = |kind, text: String| {
        progress(&Progress {
            elapsed: start.elapsed(),
            kind,
            text,
        })
    };
    let (_recipe_dir, script) = materialize(recipe)?;

    emit(
        ProgressKind::Step,
        format!("recipe {}: checking prerequisites", recipe.name),
    );
    check_prerequisites(recipe, &script, opts)?;

    let out = absolute(&opts.out)?;
    // Fail before a long build, not after it (install checks again).
    check_replaceable(&out)?;
    let staging = Staging::new(&out)?;
    run_script(recipe, &script, staging.path(), opts, &mut emit)?;

    emit(ProgressKind::Step, "checksumming the image files".into());
    let manifest = finalize_manifest(recipe, staging.path())?;
    emit(
        ProgressKind::Step,
        format!("installing into {}", out.display()),
    );
    staging.install(&out)?;
    emit(
        ProgressKind::Step,
        format!(
            "image {} built in {:.1}s",
            manifest.name,
            start.elapsed().as_secs_f64()
        ),
    );
    Image::load(&out)
}

pub(super) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

fn absolute(path: &Path) -> Result<PathBuf, ImageError> {
    std::path::absolute(path).map_err(io("resolving", path))
}

/// Parses `MISSING <package> <what>` lines of a recipe's `check`.
pub fn parse_missing(stdout: &str) -> Vec<Missing> {
    stdout
        .lines()
        .filter_map(|line| line.trim_end().strip_prefix("MISSING "))
        .filter_map(|rest| {
            let (package, what) = rest.split_once(' ')?;
            Some(Missing {
                package: package.to_string(),
                what: what.trim().to_string(),
            })
        })
        .collect()
}

fn script_command(script: &Path, opts: &BuildOptions) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .envs(opts.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    cmd
}

/// The recipe's files in a fresh temporary directory (removed when dropped), and its script.
fn materialize(recipe: &Recipe) -> Result<(tempfile::TempDir, PathBuf), ImageError> {
    let dir = tempfile::Builder::new()
        .prefix("ghrunner-recipe-")
        .tempdir()
        .map_err(io(
            "creating a temporary directory in",
            std::env::temp_dir(),
        ))?;
    let script = recipe.materialize(dir.path())?;
    Ok((dir, script))
}

/// What the recipe's `check` says is missing on this host to build it (empty: nothing).
pub fn missing_prerequisites(
    recipe: &Recipe,
    opts: &BuildOptions,
) -> Result<Vec<Missing>, ImageError> {
    let (_recipe_dir, script) = materialize(recipe)?;
    match check_prerequisites(recipe, &script, opts) {
        Ok(()) => Ok(Vec::new()),
        Err(ImageError::MissingPrerequisites { missing, .. }) => Ok(missing),
        Err(other) => Err(other),
    }
}

fn check_prerequisites(
    recipe: &Recipe,
    script: &Path,
    opts: &BuildOptions,
) -> Result<(), ImageError> {
    let output = script_command(script, opts)
        .arg("check")
        .output()
        .map_err(|source| ImageError::Spawn {
            program: "bash".into(),
            source,
        })?;
    let missing = parse_missing(&String::from_utf8_lossy(&output.stdout));
    if !missing.is_empty() {
        return Err(ImageError::MissingPrerequisites {
            recipe: recipe.name.clone(),
            missing,
        });
    }
    if !output.status.success() {
        return Err(ImageError::BuildFailed {
            recipe: recipe.name.clone(),
            status: format!("prerequisite check {}", output.status),
            tail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Runs `build.sh build <staging>`, streaming its lines, honouring cancellation.
fn run_script(
    recipe: &Recipe,
    script: &Path,
    staging: &Path,
    opts: &BuildOptions,
    emit: &mut dyn FnMut(ProgressKind, String),
) -> Result<(), ImageError> {
    let mut child = script_command(script, opts)
        .arg("build")
        .arg(staging)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: cancellation stops the whole tree, and a terminal's Ctrl-C
        // reaches only us, so the build is stopped and cleaned up by this code.
        .process_group(0)
        .spawn()
        .map_err(|source| ImageError::Spawn {
            program: "bash".into(),
            source,
        })?;
    let (tx, rx) = mpsc::channel();
    // Both pipes exist: they were requested above.
    let readers = [
        spawn_reader(
            child.stdout.take().map(|p| Box::new(p) as _),
            false,
            tx.clone(),
        ),
        spawn_reader(child.stderr.take().map(|p| Box::new(p) as _), true, tx),
    ];
    let mut tail = VecDeque::with_capacity(FAILURE_TAIL_LINES);
    let mut cancelled = false;
    loop {
        match rx.recv_timeout(POLL_INTERVAL) {
            Ok((kind, text)) => {
                if tail.len() == FAILURE_TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(text.clone());
                emit(kind, text);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        let cancel = opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        if cancel && !cancelled {
            cancelled = true;
            stop_group(&mut child);
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|source| ImageError::Spawn {
        program: "bash".into(),
        source,
    })?;
    if cancelled {
        return Err(ImageError::Cancelled {
            recipe: recipe.name.clone(),
        });
    }
    if !status.success() {
        return Err(ImageError::BuildFailed {
            recipe: recipe.name.clone(),
            status: describe(status),
            tail: Vec::from(tail).join("\n"),
        });
    }
    Ok(())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// SIGTERM to the script's process group, SIGKILL after [`CANCEL_GRACE`].
fn stop_group(child: &mut std::process::Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + CANCEL_GRACE;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = killpg(group, Signal::SIGKILL);
}

type Line = (ProgressKind, String);

fn spawn_reader(
    pipe: Option<Box<dyn Read + Send>>,
    is_stderr: bool,
    tx: mpsc::Sender<Line>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Some(pipe) = pipe else { return };
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            let item = match (is_stderr, line.strip_prefix("==> ")) {
                (true, _) => (ProgressKind::Stderr, line),
                (false, Some(step)) => (ProgressKind::Step, step.to_string()),
                (false, None) => (ProgressKind::Detail, line),
            };
            if tx.send(item).is_err() {
                return;
            }
        }
    })
}

/// SHA-256 of a file as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut file = std::fs::File::open(path).map_err(io("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; HASH_BUFFER_BYTES];
    loop {
        let n = file.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Regular files under `dir`, as paths relative to it, sorted.
fn files_under(dir: &Path) -> Result<Vec<String>, ImageError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).map_err(io("reading directory", &current))? {
            let entry = entry.map_err(io("reading directory", &current))?;
            let kind = entry.file_type().map_err(io("inspecting", entry.path()))?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Reads the manifest the script wrote, adds recipe, time and checksums, and writes it back.
fn finalize_manifest(recipe: &Recipe, dir: &Path) -> Result<ImageManifest, ImageError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    let mut manifest: ImageManifest =
        serde_json::from_str(&text).map_err(|source| ImageError::InvalidManifest {
            path: path.clone(),
            source,
        })?;
    manifest.recipe = Some(recipe.name.clone());
    manifest.recipe_hash = Some(recipe.content_hash());
    manifest.built_at = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    manifest.sha256.clear();
    for file in files_under(dir)? {
        if file != MANIFEST_FILE {
            let sum = sha256_file(&dir.join(&file))?;
            manifest.sha256.insert(file, sum);
        }
    }
    let invalid = |reason| ImageError::Invalid {
        dir: dir.to_path_buf(),
        reason,
    };
    manifest.validate().map_err(invalid)?;
    if let Some(file) = manifest
        .boot_files()
        .find(|f| !manifest.sha256.contains_key(*f))
    {
        return Err(invalid(format!(
            "the recipe did not produce {file} (named in {MANIFEST_FILE})"
        )));
    }
    let mut json =
        serde_json::to_string_pretty(&manifest).map_err(|source| ImageError::InvalidManifest {
            path: path.clone(),
            source,
        })?;
    json.push('\n');
    std::fs::write(&path, json).map_err(io("writing", &path))?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_missing_reads_only_missing_lines() {
        let out = "noise\nMISSING busybox-static command `busybox` not found\n\
                   MISSING linux-image-amd64 kernel /x does not exist\nMISSING bad\n";
        let missing = parse_missing(out);
        assert_eq!(missing.len(), 2);
        assert_eq!(missing[0].package, "busybox-static");
        assert_eq!(missing[0].what, "command `busybox` not found");
        assert_eq!(missing[1].what, "kernel /x does not exist");
    }

    fn fake_recipe(script: &str) -> Recipe {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.sh"), script).unwrap();
        Recipe::from_dir(dir.path()).unwrap()
    }

    const GOOD: &str = r#"#!/bin/bash
set -e
[ "$1" = check ] && exit 0
echo "==> writing"
echo detail
echo warn >&2
printf k >"$2/vmlinux"
cat >"$2/manifest.json" <<EOF
{"name":"fake","arch":"x86_64","kernel":"vmlinux","user":"root","shell":"sh","work_dir":"/w"}
EOF
"#;

    #[test]
    fn build_streams_progress_checksums_and_replaces_atomically() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("img");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(MANIFEST_FILE), "{}").unwrap();
        std::fs::write(out.join("old-file"), "old").unwrap();
        let opts = BuildOptions {
            out: out.clone(),
            ..BuildOptions::default()
        };
        let mut lines = Vec::new();
        let image = build(&fake_recipe(GOOD), &opts, &mut |p| lines.push(p.clone())).unwrap();
        assert!(
            lines
                .iter()
                .any(|p| p.kind == ProgressKind::Step && p.text == "writing")
        );
        assert!(
            lines
                .iter()
                .any(|p| p.kind == ProgressKind::Detail && p.text == "detail")
        );
        assert!(
            lines
                .iter()
                .any(|p| p.kind == ProgressKind::Stderr && p.text == "warn")
        );
        // sha256("k")
        assert_eq!(
            image.manifest.sha256["vmlinux"],
            "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a"
        );
        assert!(!out.join("old-file").exists(), "the old image was replaced");
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no staging directory is left behind");
        image.verify().unwrap();
    }

    #[test]
    fn failed_build_leaves_the_old_image_and_no_staging_dir() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("img");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(MANIFEST_FILE), "old").unwrap();
        let script = "#!/bin/bash\n[ \"$1\" = check ] && exit 0\necho half >\"$2/vmlinux\"\n\
                      echo boom >&2\nexit 3\n";
        let opts = BuildOptions {
            out: out.clone(),
            ..BuildOptions::default()
        };
        let err = build(&fake_recipe(script), &opts, &mut |_| {}).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("exit code 3") && text.contains("boom"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join(MANIFEST_FILE)).unwrap(),
            "old"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_replace_a_directory_that_is_not_an_image() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("precious"), "data").unwrap();
        let opts = BuildOptions {
            out: root.path().to_path_buf(),
            ..BuildOptions::default()
        };
        let mut ran = false;
        let err = build(&fake_recipe(GOOD), &opts, &mut |p| {
            ran |= p.text == "writing"
        })
        .unwrap_err();
        assert!(matches!(err, ImageError::NotAnImageDir { .. }), "{err}");
        assert!(
            !ran,
            "the recipe must not run when its output could not be installed"
        );
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_prerequisites_stop_before_building() {
        let root = tempfile::tempdir().unwrap();
        let script = "#!/bin/bash\nif [ \"$1\" = check ]; then\n\
                      echo \"MISSING cpio command \\`cpio\\` not found\"; exit 2; fi\n\
                      touch /nonexistent-should-not-run\n";
        let opts = BuildOptions {
            out: root.path().join("img"),
            ..BuildOptions::default()
        };
        let err = build(&fake_recipe(script), &opts, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("apt-get install cpio"), "{err}");
        assert!(!root.path().join("img").exists());
    }

    #[test]
    fn cancellation_stops_the_script() {
        let root = tempfile::tempdir().unwrap();
        let script = "#!/bin/bash\n[ \"$1\" = check ] && exit 0\necho started\nsleep 30\n";
        let cancel = Arc::new(AtomicBool::new(false));
        let opts = BuildOptions {
            out: root.path().join("img"),
            cancel: Some(cancel.clone()),
            ..BuildOptions::default()
        };
        let err = build(&fake_recipe(script), &opts, &mut |p| {
            if p.text == "started" {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .unwrap_err();
        assert!(matches!(err, ImageError::Cancelled { .. }), "{err}");
        assert!(!root.path().join("img").exists());
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
