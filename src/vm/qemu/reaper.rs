//! Ownership markers of VM directories and the start-up reaper of what a crash left behind.
//!
//! Every VM lives in `<runner dir>/vms/<name>/` with an `owner.json` marker naming the agent
//! process that launched it and the helper processes (QEMU, passt) it started, each identified
//! by pid *and* start time (so a recycled pid is never mistaken for ours), plus the boot id.
//!
//! ```text
//!   for each vms/<name>/:
//!     no readable marker ── older than MARKER_GRACE? ──yes──► orphan   (no: being created)
//!     other boot id ────────────────────────────────────────► orphan   (processes are gone)
//!     agent pid alive with the same start time ─────────────► keep
//!     otherwise ─────────────────────────────────────────────► orphan
//!   orphan: SIGKILL each recorded process still alive with its recorded start time,
//!           then delete the directory
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::vm::VmError;

/// Name of the marker file inside a VM directory.
pub const MARKER_FILE: &str = "owner.json";

/// Subdirectory of the runner directory holding VM directories.
pub const VMS_DIR: &str = "vms";

/// A directory without a readable marker younger than this is left alone (being created).
pub const MARKER_GRACE: Duration = Duration::from_secs(60);

/// How long the reaper waits for a killed process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A process identified by pid and start time (clock ticks since boot, from `/proc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// The pid.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcessId {
    /// Identifies a running process, if it exists.
    pub fn of(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may contain spaces and parentheses).
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            return None;
        }
        // Field 22 of stat is the start time; `rest` starts at field 3.
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(Self { pid, start_ticks })
    }

    /// The current process.
    pub fn current() -> Option<Self> {
        Self::of(std::process::id())
    }

    /// True if this very process still runs (same pid, same start time, not a zombie).
    pub fn is_alive(&self) -> bool {
        Self::of(self.pid) == Some(*self)
    }
}

/// The content of `owner.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerMarker {
    /// The kernel's boot id when the VM was created.
    pub boot_id: String,
    /// The agent process that owns the VM.
    pub agent: ProcessId,
    /// Processes started for the VM (QEMU, passt).
    #[serde(default)]
    pub processes: Vec<ProcessId>,
}

/// The kernel's boot id (changes at every boot).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

impl OwnerMarker {
    /// A marker owned by the current process, with no helper processes yet.
    pub fn for_current_process() -> Self {
        let agent = ProcessId::current().unwrap_or(ProcessId {
            pid: std::process::id(),
            start_ticks: 0,
        });
        Self {
            boot_id: boot_id(),
            agent,
            processes: Vec::new(),
        }
    }

    /// Writes the marker into `dir` atomically (temporary file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), VmError> {
        let path = dir.join(MARKER_FILE);
        let tmp = dir.join(".owner.json.tmp");
        let io = |source| VmError::Io {
            action: "writing the owner marker",
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)
    }

    /// Reads the marker of `dir`.
    pub fn read(dir: &Path) -> Option<Self> {
        serde_json::from_slice(&std::fs::read(dir.join(MARKER_FILE)).ok()?).ok()
    }
}

/// Kills the processes of VMs whose agent is gone and deletes their directories. Returns the
/// names of the reaped VMs. Call once at start-up, before launching VMs.
pub fn reap_orphans(runner_dir: &Path) -> Result<Vec<String>, VmError> {
    let vms = runner_dir.join(VMS_DIR);
    let entries = match std::fs::read_dir(&vms) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(VmError::Io {
                action: "listing",
                path: vms,
                source,
            });
        }
    };
    let current_boot = boot_id();
    let mut reaped = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() || !is_orphan(&dir, &current_boot) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(marker) = OwnerMarker::read(&dir).filter(|m| m.boot_id == current_boot) {
            for process in &marker.processes {
                kill_and_wait(process);
            }
        }
        remove_vm_dir(&dir)?;
        tracing::info!(vm = %name, "reaped orphaned vm");
        reaped.push(name);
    }
    Ok(reaped)
}

fn is_orphan(dir: &Path, current_boot: &str) -> bool {
    match OwnerMarker::read(dir) {
        Some(marker) => marker.boot_id != current_boot || !marker.agent.is_alive(),
        None => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > MARKER_GRACE),
    }
}

fn kill_and_wait(process: &ProcessId) {
    if !process.is_alive() {
        return;
    }
    let Ok(pid) = i32::try_from(process.pid) else {
        return;
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let deadline = std::time::Instant::now() + KILL_WAIT;
    while process.is_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Deletes a VM directory (a missing one is fine).
pub fn remove_vm_dir(dir: &Path) -> Result<(), VmError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(VmError::Io {
            action: "removing",
            path: PathBuf::from(dir),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    fn vm_dir(runner: &Path, name: &str) -> PathBuf {
        let dir = runner.join(VMS_DIR).join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("disk.qcow2"), b"overlay").unwrap();
        dir
    }

    #[test]
    fn process_identity_includes_start_time() {
        let me = ProcessId::current().unwrap();
        assert!(me.is_alive());
        let recycled = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!recycled.is_alive());
    }

    #[test]
    fn reaps_a_fake_orphan_and_keeps_live_and_fresh_dirs() {
        let runner = tempfile::tempdir().unwrap();
        // The "QEMU" of the orphan: a real process the reaper must kill.
        let mut fake_qemu = Command::new("sleep").arg("600").spawn().unwrap();
        let qemu_id = ProcessId::of(fake_qemu.id()).unwrap();
        // Its agent: a process that has exited.
        let mut dead_agent = Command::new("true").spawn().unwrap();
        let dead_id = ProcessId {
            pid: dead_agent.id(),
            start_ticks: 0,
        };
        dead_agent.wait().unwrap();

        let orphan = vm_dir(runner.path(), "orphan");
        OwnerMarker {
            boot_id: boot_id(),
            agent: dead_id,
            processes: vec![qemu_id],
        }
        .write(&orphan)
        .unwrap();
        let live = vm_dir(runner.path(), "live");
        OwnerMarker::for_current_process().write(&live).unwrap();
        let stale_boot = vm_dir(runner.path(), "previous-boot");
        let marker = OwnerMarker {
            boot_id: "another-boot".into(),
            ..OwnerMarker::for_current_process()
        };
        marker.write(&stale_boot).unwrap();
        let fresh_unmarked = vm_dir(runner.path(), "being-created");

        let mut reaped = reap_orphans(runner.path()).unwrap();
        reaped.sort();
        assert_eq!(reaped, ["orphan", "previous-boot"]);
        assert!(!orphan.exists() && !stale_boot.exists());
        assert!(live.exists() && fresh_unmarked.exists());
        let status = fake_qemu.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "the orphan's qemu was killed");
    }

    #[test]
    fn missing_vms_dir_is_nothing_to_reap() {
        let runner = tempfile::tempdir().unwrap();
        assert!(reap_orphans(runner.path()).unwrap().is_empty());
    }
}
