//! Copying a host directory tree into the guest as one tar stream ([`super::Vm::copy_tree`]).
//!
//! Owns: walking the tree (sorted, so the same tree gives the same archive), what may be copied
//! and how (regular files with their permission bits, directories, symlinks whose target stays
//! inside the tree; anything else is refused), the archive's size cap, and the one guest
//! command that unpacks it. Does not own where trees come from (the action cache, a workspace).
//!
//! ```text
//!   host dir ──walk (no symlink followed)──► tar in memory (≤ COPY_TREE_MAX_BYTES)
//!        │ escaping symlink, fifo/socket/device, too large: VmError::UncopyableTree
//!        ▼
//!   one exec: sh -c 'mkdir -p -- "$1" && tar -x -o -f - -C "$1"; …'   (archive on stdin)
//! ```
//!
//! Entries carry uid/gid 0 and are unpacked with `-o`, so the files belong to the guest user
//! that runs the command, whoever owned them on the host. Permission bits are the host's
//! (`0o777` part); GNU tar run by a non-root user applies the guest umask on top. The archive
//! is held in memory until it is written to the command's stdin ([`super::GuestCommand::stdin`]
//! is a buffer), which is why its size is capped.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{GuestCommand, Vm, VmError};

/// Largest archive (file contents plus tar headers) [`super::Vm::copy_tree`] sends: the archive
/// is built in memory before it is written to the guest.
pub const COPY_TREE_MAX_BYTES: u64 = 256 << 20;

/// Most symlinks followed while checking where one symlink's target leads (as Linux's
/// `MAXSYMLINKS`); more is treated as a loop and refused.
const MAX_LINK_HOPS: usize = 40;

/// Most stderr kept from the unpacking command for its error message.
const STDERR_KEPT: usize = 4096;

/// Size of one tar header block.
const HEADER_BYTES: u64 = 512;

/// The guest shell snippet that creates the target directory and unpacks stdin into it; `$1`
/// is the directory. Whatever tar leaves unread (it failed early) is drained, so the host's
/// write of the archive never meets a closed pipe and the error that reaches the host is
/// tar's (or mkdir's) exit status and message.
const UNPACK_SCRIPT: &str =
    "mkdir -p -- \"$1\" && tar -x -o -f - -C \"$1\"; rc=$?; cat >/dev/null; exit $rc";

fn rejected(path: &Path, reason: impl Into<String>) -> VmError {
    VmError::UncopyableTree {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VmError {
    let path = path.to_path_buf();
    move |source| VmError::Io {
        action,
        path,
        source,
    }
}

/// Builds the tar archive of the contents of `root` (not `root` itself), at most `max_bytes`
/// long. Blocking: call it on a blocking thread.
pub fn archive_tree(root: &Path, max_bytes: u64) -> Result<Vec<u8>, VmError> {
    let meta = std::fs::metadata(root).map_err(io_error("reading", root))?;
    if !meta.is_dir() {
        return Err(rejected(root, "it is not a directory"));
    }
    let mut archive = Archive {
        root,
        max_bytes,
        used: 2 * HEADER_BYTES, // the two zero blocks that end the archive
        builder: tar::Builder::new(Vec::new()),
    };
    archive.add_dir_contents(Path::new(""))?;
    archive
        .builder
        .into_inner()
        .map_err(io_error("archiving", root))
}

/// The archive being built and its budget.
struct Archive<'a> {
    root: &'a Path,
    max_bytes: u64,
    used: u64,
    builder: tar::Builder<Vec<u8>>,
}

impl Archive<'_> {
    /// Adds the entries of directory `rel` (relative to the root), sorted by name, recursively.
    fn add_dir_contents(&mut self, rel: &Path) -> Result<(), VmError> {
        let dir = self.root.join(rel);
        let mut names: Vec<OsString> = std::fs::read_dir(&dir)
            .map_err(io_error("listing", &dir))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_error("listing", &dir))?;
        names.sort();
        for name in names {
            self.add(&rel.join(name))?;
        }
        Ok(())
    }

    /// Adds one entry (a directory with its contents).
    fn add(&mut self, rel: &Path) -> Result<(), VmError> {
        let path = self.root.join(rel);
        let meta = std::fs::symlink_metadata(&path).map_err(io_error("reading", &path))?;
        let kind = meta.file_type();
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_mode(meta.permissions().mode() & 0o777);
        if kind.is_dir() {
            self.charge(&path, 0)?;
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            self.builder
                .append_data(&mut header, rel, std::io::empty())
                .map_err(io_error("archiving", &path))?;
            self.add_dir_contents(rel)
        } else if kind.is_file() {
            self.charge(&path, meta.len())?;
            let contents = std::fs::read(&path).map_err(io_error("reading", &path))?;
            // The file may have grown since it was sized: charge what was read.
            self.charge(&path, (contents.len() as u64).saturating_sub(meta.len()))?;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(contents.len() as u64);
            self.builder
                .append_data(&mut header, rel, contents.as_slice())
                .map_err(io_error("archiving", &path))
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_error("reading", &path))?;
            if !stays_inside(self.root, rel, &target) {
                return Err(rejected(
                    &path,
                    format!(
                        "the symlink points to {}, outside the directory",
                        target.display()
                    ),
                ));
            }
            self.charge(&path, 0)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            self.builder
                .append_link(&mut header, rel, &target)
                .map_err(io_error("archiving", &path))
        } else {
            Err(rejected(
                &path,
                "it is not a regular file, a directory or a symlink",
            ))
        }
    }

    /// Counts an entry of `size` content bytes (plus its header and padding) against the cap.
    fn charge(&mut self, path: &Path, size: u64) -> Result<(), VmError> {
        let padded = size.div_ceil(HEADER_BYTES) * HEADER_BYTES;
        // Long names and link targets take extra header blocks; two more cover the usual case.
        self.used = self.used.saturating_add(padded + HEADER_BYTES);
        if self.used > self.max_bytes {
            return Err(rejected(
                path,
                format!(
                    "the tree is larger than {} MiB, the most copied into a VM at once",
                    self.max_bytes >> 20
                ),
            ));
        }
        Ok(())
    }
}

/// True if the symlink at `rel` (relative to `root`) with `target` resolves inside `root`: an
/// absolute target never does; a relative one is followed component by component, through the
/// tree's own symlinks (at most [`MAX_LINK_HOPS`]), never above the root. Components that do
/// not exist on the host are taken as written.
fn stays_inside(root: &Path, rel: &Path, target: &Path) -> bool {
    let mut at: Vec<OsString> = rel
        .parent()
        .into_iter()
        .flat_map(Path::components)
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut pending: VecDeque<OsString> = VecDeque::new();
    if !push_front(&mut pending, target) {
        return false;
    }
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            if at.pop().is_none() {
                return false;
            }
            continue;
        }
        let candidate: PathBuf = at
            .iter()
            .chain([&part])
            .fold(root.to_path_buf(), |p, c| p.join(c));
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                let Ok(next) = std::fs::read_link(&candidate) else {
                    return false;
                };
                if hops > MAX_LINK_HOPS || !push_front(&mut pending, &next) {
                    return false;
                }
            }
            _ => at.push(part),
        }
    }
    true
}

/// Puts the components of a relative `path` in front of `pending` (`.` dropped); false if the
/// path is absolute.
fn push_front(pending: &mut VecDeque<OsString>, path: &Path) -> bool {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => return false,
            Component::CurDir => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(name) => parts.push(name.to_owned()),
        }
    }
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
    true
}

/// The guest command that unpacks `archive` into `guest_dir` (created with its parents).
pub fn unpack_command(guest_dir: &str, archive: Vec<u8>) -> GuestCommand {
    GuestCommand {
        argv: vec![
            "sh".to_owned(),
            "-c".to_owned(),
            UNPACK_SCRIPT.to_owned(),
            "sh".to_owned(),
            guest_dir.to_owned(),
        ],
        stdin: Some(archive),
        ..GuestCommand::default()
    }
}

/// The default [`super::Vm::copy_tree`]: archives `local_dir` on a blocking thread, then runs
/// [`unpack_command`] once.
pub async fn copy_tree<V: Vm + ?Sized>(
    vm: &V,
    local_dir: PathBuf,
    guest_dir: String,
) -> Result<(), VmError> {
    let archive = tokio::task::spawn_blocking({
        let local_dir = local_dir.clone();
        move || archive_tree(&local_dir, COPY_TREE_MAX_BYTES)
    })
    .await
    .map_err(|e| io_error("archiving", &local_dir)(std::io::Error::other(e)))??;
    let (tx, mut rx) = mpsc::channel(16);
    let unpack = vm.exec(
        unpack_command(&guest_dir, archive),
        tx,
        CancellationToken::new(),
    );
    let drain = async {
        let mut stderr = Vec::new();
        while let Some(chunk) = rx.recv().await {
            if let super::OutputChunk::Stderr(bytes) = chunk {
                let room = STDERR_KEPT.saturating_sub(stderr.len());
                stderr.extend(bytes.into_iter().take(room));
            }
        }
        stderr
    };
    let (outcome, stderr) = tokio::join!(unpack, drain);
    let outcome = outcome?;
    if outcome.exit_code != 0 {
        return Err(VmError::Command {
            program: "tar".into(),
            stderr: format!(
                "unpacking into {guest_dir} exited with {}: {}",
                outcome.exit_code,
                String::from_utf8_lossy(&stderr).trim()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
