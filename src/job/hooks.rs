//! Job hooks: host scripts run before a job's VM is launched (`job_started`) and after the job's
//! steps ended (`job_completed`), configured as `hooks.job_started` / `hooks.job_completed` in
//! `config.yaml` or, like the official runner, by `ACTIONS_RUNNER_HOOK_JOB_STARTED` /
//! `ACTIONS_RUNNER_HOOK_JOB_COMPLETED` (the config file wins).
//!
//! A hook gets the host environment plus the job's facts ([`HookFacts::env`]) and at most
//! [`HOOK_TIMEOUT`]; its output goes to the runner's own log (never the job log: host scripts
//! may print host details that do not belong in a repository's logs).
//!
//! Failure policy: a failing `job_started` hook fails the job before any VM is launched (as the
//! official runner does; operators use it as a pre-flight gate). A failing `job_completed` hook
//! is logged and shown as a warning in the job log, but does not change the result: the
//! job's work is already done, and the hook is host housekeeping.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a hook may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// Environment variable naming the job-started hook (official runner's name).
pub const ENV_HOOK_JOB_STARTED: &str = "ACTIONS_RUNNER_HOOK_JOB_STARTED";
/// Environment variable naming the job-completed hook (official runner's name).
pub const ENV_HOOK_JOB_COMPLETED: &str = "ACTIONS_RUNNER_HOOK_JOB_COMPLETED";
/// Output bytes of a hook kept for the runner log.
const OUTPUT_TAIL_BYTES: usize = 4096;

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// Before the job's VM is launched.
    JobStarted,
    /// After the job's steps ended.
    JobCompleted,
}

impl HookKind {
    /// `job_started` / `job_completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookKind::JobStarted => "job_started",
            HookKind::JobCompleted => "job_completed",
        }
    }
}

/// The configured hook scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Job-started script.
    pub job_started: Option<PathBuf>,
    /// Job-completed script.
    pub job_completed: Option<PathBuf>,
}

impl Hooks {
    /// The hooks from the config file's values, falling back to the official runner's
    /// environment variables (`env` looks one up; empty values count as unset).
    pub fn resolve(
        job_started: Option<PathBuf>,
        job_completed: Option<PathBuf>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Hooks {
        let from_env = |name: &str| {
            env(name)
                .filter(|v| !v.trim().is_empty())
                .map(PathBuf::from)
        };
        Hooks {
            job_started: job_started.or_else(|| from_env(ENV_HOOK_JOB_STARTED)),
            job_completed: job_completed.or_else(|| from_env(ENV_HOOK_JOB_COMPLETED)),
        }
    }

    /// The script of a hook, if configured.
    pub fn script(&self, kind: HookKind) -> Option<&Path> {
        match kind {
            HookKind::JobStarted => self.job_started.as_deref(),
            HookKind::JobCompleted => self.job_completed.as_deref(),
        }
    }
}

/// What a hook is told about the job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HookFacts {
    /// `owner/name`.
    pub repository: String,
    /// `github.run_id`.
    pub run_id: String,
    /// `github.job` (the workflow's job key).
    pub job: String,
    /// The workflow's name.
    pub workflow: String,
    /// The runner's name.
    pub runner_name: String,
    /// The job result (`succeeded`, `failed`, …), for `job_completed` only.
    pub result: Option<String>,
}

impl HookFacts {
    /// The environment a hook gets on top of the host's.
    pub fn env(&self, kind: HookKind) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("GITHUB_REPOSITORY", self.repository.clone()),
            ("GITHUB_RUN_ID", self.run_id.clone()),
            ("GITHUB_JOB", self.job.clone()),
            ("GITHUB_WORKFLOW", self.workflow.clone()),
            ("RUNNER_NAME", self.runner_name.clone()),
            ("GHRUNNER_VM_HOOK", kind.as_str().to_owned()),
        ];
        if let Some(result) = &self.result {
            env.push(("GHRUNNER_VM_JOB_RESULT", result.clone()));
        }
        env
    }
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The script could not be started.
    #[error("the {hook} hook {script} could not be started")]
    Spawn {
        /// Which hook.
        hook: &'static str,
        /// The script.
        script: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The script exited non-zero (or by a signal).
    #[error("the {hook} hook {script} failed ({status})")]
    Failed {
        /// Which hook.
        hook: &'static str,
        /// The script.
        script: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// The script ran longer than [`HOOK_TIMEOUT`] and was killed.
    #[error("the {hook} hook {script} did not finish within {timeout:?} and was killed")]
    TimedOut {
        /// Which hook.
        hook: &'static str,
        /// The script.
        script: PathBuf,
        /// The limit.
        timeout: Duration,
    },
}

/// Runs one hook if it is configured; `Ok(false)` if it is not.
pub async fn run_hook(
    hooks: &Hooks,
    kind: HookKind,
    facts: &HookFacts,
    timeout: Duration,
) -> Result<bool, HookError> {
    let Some(script) = hooks.script(kind) else {
        return Ok(false);
    };
    let hook = kind.as_str();
    let child = tokio::process::Command::new(script)
        .envs(facts.env(kind))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| HookError::Spawn {
            hook,
            script: script.to_owned(),
            source,
        })?;
    tracing::info!(hook, script = %script.display(), "running hook");
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(HookError::Spawn {
                hook,
                script: script.to_owned(),
                source,
            });
        }
        // Dropping the wait future drops the child, which kills it (kill_on_drop).
        Err(_) => {
            return Err(HookError::TimedOut {
                hook,
                script: script.to_owned(),
                timeout,
            });
        }
    };
    let tail = |bytes: &[u8]| {
        let start = bytes.len().saturating_sub(OUTPUT_TAIL_BYTES);
        String::from_utf8_lossy(&bytes[start..])
            .trim_end()
            .to_owned()
    };
    tracing::info!(
        hook,
        status = %output.status,
        stdout = %tail(&output.stdout),
        stderr = %tail(&output.stderr),
        "hook finished"
    );
    if output.status.success() {
        Ok(true)
    } else {
        Err(HookError::Failed {
            hook,
            script: script.to_owned(),
            status: output.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn facts() -> HookFacts {
        HookFacts {
            repository: "octo/hello".into(),
            run_id: "77".into(),
            job: "build".into(),
            workflow: "CI".into(),
            runner_name: "vm-1".into(),
            result: Some("failed".into()),
        }
    }

    #[test]
    fn config_wins_over_the_environment_and_empty_env_is_unset() {
        let env = |name: &str| match name {
            ENV_HOOK_JOB_STARTED => Some("/env/started".to_owned()),
            ENV_HOOK_JOB_COMPLETED => Some(" ".to_owned()),
            _ => None,
        };
        let hooks = Hooks::resolve(None, None, env);
        assert_eq!(hooks.job_started, Some(PathBuf::from("/env/started")));
        assert_eq!(hooks.job_completed, None);
        let hooks = Hooks::resolve(Some("/cfg/started".into()), None, env);
        assert_eq!(hooks.job_started, Some(PathBuf::from("/cfg/started")));
    }

    #[tokio::test]
    async fn a_hook_sees_the_job_facts() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let body = format!(
            "echo \"$GITHUB_REPOSITORY $GITHUB_RUN_ID $GITHUB_JOB $RUNNER_NAME $GHRUNNER_VM_JOB_RESULT $GHRUNNER_VM_HOOK\" > {}",
            out.display()
        );
        let hooks = Hooks {
            job_completed: Some(script(dir.path(), "done.sh", &body)),
            ..Hooks::default()
        };
        let ran = run_hook(&hooks, HookKind::JobCompleted, &facts(), HOOK_TIMEOUT)
            .await
            .unwrap();
        assert!(ran);
        let text = std::fs::read_to_string(out).unwrap();
        assert_eq!(text.trim(), "octo/hello 77 build vm-1 failed job_completed");
        let ran = run_hook(&hooks, HookKind::JobStarted, &facts(), HOOK_TIMEOUT)
            .await
            .unwrap();
        assert!(!ran, "an unconfigured hook does not run");
    }

    #[tokio::test]
    async fn failing_missing_and_slow_hooks_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let hooks = Hooks {
            job_started: Some(script(dir.path(), "fail.sh", "exit 3")),
            job_completed: Some(script(dir.path(), "slow.sh", "sleep 30")),
        };
        let err = run_hook(&hooks, HookKind::JobStarted, &facts(), HOOK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Failed { .. }), "{err}");
        let err = run_hook(
            &hooks,
            HookKind::JobCompleted,
            &facts(),
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        let missing = Hooks {
            job_started: Some(dir.path().join("nope.sh")),
            ..Hooks::default()
        };
        let err = run_hook(&missing, HookKind::JobStarted, &facts(), HOOK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Spawn { .. }), "{err}");
    }
}
