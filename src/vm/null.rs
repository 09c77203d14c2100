//! A backend whose VMs run nothing: "booting" is instant (a snapshot restore too), every command
//! exits 0 after a fixed delay with one line of output, uploads and copied trees are discarded
//! (a tree is still archived and checked, so an escaping symlink fails as it would on a real
//! VM) and downloads are empty.
//!
//! It exists to measure and test the agent itself: the host overhead of a job (decrypt,
//! acquire, plan, report, complete) without the cost of a guest, and concurrency and budgets
//! across registrations. `ghrunner-vm run` selects it only through the hidden test variable
//! `GHRUNNER_VM_TEST_HYPERVISOR=null[:<exec milliseconds>]` and warns loudly when it does:
//! jobs "succeed" without any of their code running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ExecOutcome, GuestCommand, Hypervisor, OutputChunk, Vm, VmError, VmSpec};

/// Creates [`NullVm`]s.
#[derive(Debug, Default)]
pub struct NullHypervisor {
    /// How long every command "runs" (cancellable).
    pub exec_delay: Duration,
    launched: AtomicU64,
}

impl NullHypervisor {
    /// A backend whose commands take `exec_delay`.
    pub fn new(exec_delay: Duration) -> Self {
        NullHypervisor {
            exec_delay,
            launched: AtomicU64::new(0),
        }
    }

    /// Parses the value of the test variable: `null` or `null:<milliseconds>`.
    pub fn from_spec(spec: &str) -> Option<Self> {
        let delay = match spec.strip_prefix("null") {
            Some("") => 0,
            Some(rest) => rest.strip_prefix(':')?.parse().ok()?,
            None => return None,
        };
        Some(NullHypervisor::new(Duration::from_millis(delay)))
    }
}

impl Hypervisor for NullHypervisor {
    type Vm = NullVm;

    async fn launch(&self, spec: VmSpec) -> Result<NullVm, VmError> {
        let n = self.launched.fetch_add(1, Ordering::Relaxed);
        Ok(NullVm {
            id: format!("null-{}-{n}", spec.name),
            exec_delay: self.exec_delay,
        })
    }
}

/// A VM of [`NullHypervisor`].
#[derive(Debug)]
pub struct NullVm {
    id: String,
    exec_delay: Duration,
}

impl Vm for NullVm {
    fn id(&self) -> &str {
        &self.id
    }

    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        let cancelled = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep(self.exec_delay) => false,
        };
        let program = cmd.argv.first().map_or("", String::as_str);
        let line = format!("null VM: {program} not run\n");
        let _ = output.send(OutputChunk::Stdout(line.into_bytes())).await;
        Ok(ExecOutcome {
            exit_code: if cancelled { 130 } else { 0 },
            cancelled,
        })
    }

    async fn upload(
        &self,
        _guest_path: &str,
        _contents: Vec<u8>,
        _mode: u32,
    ) -> Result<(), VmError> {
        Ok(())
    }

    async fn download(&self, _guest_path: &str) -> Result<Vec<u8>, VmError> {
        Ok(Vec::new())
    }

    async fn destroy(self) -> Result<(), VmError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_the_documented_forms_only() {
        assert_eq!(
            NullHypervisor::from_spec("null").map(|h| h.exec_delay),
            Some(Duration::ZERO)
        );
        assert_eq!(
            NullHypervisor::from_spec("null:250").map(|h| h.exec_delay),
            Some(Duration::from_millis(250))
        );
        for bad in ["", "nul", "null:", "null:x", "null250", "qemu"] {
            assert!(NullHypervisor::from_spec(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[tokio::test]
    async fn commands_exit_zero_unless_cancelled() {
        let vm = NullVm {
            id: "t".into(),
            exec_delay: Duration::from_secs(3600),
        };
        let (tx, mut rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let cmd = GuestCommand {
            argv: vec!["bash".into()],
            ..GuestCommand::default()
        };
        let outcome = vm.exec(cmd, tx, cancel).await.expect("exec");
        assert!(outcome.cancelled);
        assert_eq!(outcome.exit_code, 130);
        assert_eq!(
            rx.recv().await,
            Some(OutputChunk::Stdout(b"null VM: bash not run\n".to_vec()))
        );

        let vm = NullVm {
            id: "t".into(),
            exec_delay: Duration::ZERO,
        };
        let (tx, _rx) = mpsc::channel(4);
        let outcome = vm
            .exec(GuestCommand::default(), tx, CancellationToken::new())
            .await
            .expect("exec");
        assert_eq!(
            outcome,
            ExecOutcome {
                exit_code: 0,
                cancelled: false
            }
        );
    }

    #[tokio::test]
    async fn copy_tree_is_accepted_and_an_escaping_tree_still_refused() {
        use std::os::unix::fs::symlink;
        let vm = NullVm {
            id: "t".into(),
            exec_delay: Duration::ZERO,
        };
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir(tree.path().join("dist")).unwrap();
        std::fs::write(tree.path().join("dist/index.js"), "1").unwrap();
        vm.copy_tree(tree.path(), "/work/_actions/o/r/v1")
            .await
            .expect("the null VM takes any tree");
        symlink("../../etc", tree.path().join("dist/escape")).unwrap();
        let err = vm
            .copy_tree(tree.path(), "/work/_actions/o/r/v1")
            .await
            .unwrap_err();
        assert!(matches!(err, VmError::UncopyableTree { .. }), "{err}");
    }
}
