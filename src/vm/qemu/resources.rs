//! What a VM owns on the host: its work directory `vms/<name>/` (name and socket path checked
//! first, created 0700 with the owner marker) and the processes started for it, all killed,
//! reaped and deleted when [`Resources`] is dropped.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Mutex;
use std::time::Duration;

use super::console::{self, ERROR_TAIL_LINES};
use super::reaper::{OwnerMarker, ProcessId, remove_vm_dir};
use crate::vm::VmError;

/// How long a guard may take to start its helper.
const HELPER_PATIENCE: Duration = Duration::from_secs(5);
/// Interval of polling the console file and the QEMU process during boot.
pub(super) const BOOT_POLL_INTERVAL: Duration = Duration::from_millis(25);
/// Longest accepted VM name (it becomes a directory name).
const MAX_NAME_LEN: usize = 64;

/// File name of the QMP socket in the VM directory.
pub(super) const QMP_SOCKET: &str = "qmp.sock";

/// Longest path a Unix socket may have (`sun_path` is 108 bytes with its NUL).
pub(super) const MAX_SOCKET_PATH: usize = 107;

/// Fails early when the QMP socket inside the VM directory `dir` would not fit in `sun_path`,
/// instead of QEMU failing later with a vague message. (passt needs no path: it talks to QEMU
/// over an inherited socket pair.)
pub(super) fn check_socket_paths(dir: &Path) -> Result<(), VmError> {
    let socket = dir.join(QMP_SOCKET);
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(VmError::SocketPathTooLong { path: socket, len });
    }
    Ok(())
}

pub(super) fn validate_name(name: &str) -> Result<(), VmError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VmError::InvalidName {
            name: name.to_owned(),
        })
    }
}

/// Everything a VM owns on the host. Dropping it kills the processes (and reaps them) and
/// deletes the work directory, synchronously.
pub(super) struct Resources {
    pub(super) dir: PathBuf,
    marker: OwnerMarker,
    /// Started processes, QEMU last.
    children: Mutex<Vec<Child>>,
    pub(super) console: PathBuf,
    pub(super) console_offset: u64,
    /// The QEMU process itself (its guard is the last of `children`).
    pub(super) qemu_pid: Option<u32>,
}

impl Resources {
    pub(super) fn create(dir: PathBuf) -> Result<Self, VmError> {
        use std::os::unix::fs::DirBuilderExt as _;
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| VmError::Io {
                action: "creating",
                path: parent.to_owned(),
                source,
            })?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| VmError::Io {
                action: "creating the vm directory",
                path: dir.clone(),
                source,
            })?;
        let res = Self {
            console: dir.join("console.log"),
            console_offset: 0,
            qemu_pid: None,
            dir,
            marker: OwnerMarker::for_current_process(),
            children: Mutex::new(Vec::new()),
        };
        res.marker.write(&res.dir)?;
        Ok(res)
    }

    /// Records a started process in the owner marker.
    pub(super) fn track(&mut self, child: Child) -> Result<(), VmError> {
        let id = ProcessId::of(child.id()).unwrap_or(ProcessId {
            pid: child.id(),
            start_ticks: 0,
        });
        self.children
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .push(child);
        self.marker.processes.push(id);
        self.marker.write(&self.dir)
    }

    /// Records the helper process a guard runs (see [`crate::vm::process::guarded_command`]),
    /// so the reaper finds it even if its guard is gone; returns its pid.
    pub(super) async fn track_helper(&mut self, guard: u32) -> Result<Option<u32>, VmError> {
        let Some(pid) = crate::vm::process::guarded_helper(guard, HELPER_PATIENCE).await else {
            return Ok(None);
        };
        if let Some(id) = ProcessId::of(pid) {
            self.marker.processes.push(id);
            self.marker.write(&self.dir)?;
        }
        Ok(Some(pid))
    }

    /// If QEMU (the last child) has exited, the error describing it.
    pub(super) fn check_exited(&self, name: &str) -> Option<VmError> {
        let mut children = self.children.lock().unwrap_or_else(|e| e.into_inner());
        let status = children.last_mut()?.try_wait().ok()??;
        let stderr = std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
        let console = console::tail(&self.console, self.console_offset, ERROR_TAIL_LINES);
        Some(VmError::Exited {
            name: name.to_owned(),
            detail: format!("{status}; qemu: {}; console:\n{console}", stderr.trim()),
        })
    }

    /// Returns once QEMU has exited.
    pub(super) async fn wait_exit_forever(&self) {
        while self.check_exited("").is_none() {
            tokio::time::sleep(BOOT_POLL_INTERVAL).await;
        }
    }

    /// Waits up to `grace` for QEMU to exit; true if it did.
    pub(super) async fn wait_exit(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            if self.check_exited("").is_some() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(BOOT_POLL_INTERVAL).await;
        }
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        let children = self.children.get_mut().unwrap_or_else(|e| e.into_inner());
        // QEMU first (it holds the passt connection), then the helpers; each with its guard.
        for child in children.iter_mut().rev() {
            crate::vm::process::kill_group(child.id());
            let _ = child.wait();
        }
        if let Err(e) = remove_vm_dir(&self.dir) {
            tracing::warn!(error = %e, dir = %self.dir.display(), "vm directory not removed");
        }
        tracing::debug!(dir = %self.dir.display(), "vm resources released");
    }
}
