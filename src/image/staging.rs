//! The staging directory of a build and its atomic installation.
//!
//! A build writes into `.<name>.partial-XXXXXX` next to the destination (same filesystem, so
//! the final move is a rename). Installing renames it into place, or atomically exchanges it
//! with the previous image (`renameat2(RENAME_EXCHANGE)`), whose files then go with the staging
//! directory. A staging directory is never removed while something is mounted inside it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{RenameFlags, renameat2};
use tempfile::TempDir;

use super::build::io;
use super::{ImageError, MANIFEST_FILE};

/// The staging directory next to the destination. Removed on drop unless installed, and never
/// removed while something is mounted inside it (a recipe killed mid-way may leave mounts).
pub(super) struct Staging {
    dir: Option<TempDir>,
}

impl Staging {
    pub(super) fn new(out: &Path) -> Result<Staging, ImageError> {
        let parent = out.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let dir = tempfile::Builder::new()
            .prefix(&format!(".{name}.partial-"))
            .tempdir_in(parent)
            .map_err(io("creating a staging directory in", parent))?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(io("setting the mode of", dir.path()))?;
        Ok(Staging { dir: Some(dir) })
    }

    pub(super) fn path(&self) -> &Path {
        // Only `install` and `drop` take the directory out.
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// Moves the staged image to `out`: a rename if `out` does not exist, else an atomic
    /// exchange with the previous image, which is then removed with the staging directory.
    pub(super) fn install(mut self, out: &Path) -> Result<(), ImageError> {
        let staged = self.path().to_path_buf();
        match std::fs::symlink_metadata(out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::rename(&staged, out).map_err(io("moving the image to", out))?;
                if let Some(dir) = self.dir.take() {
                    let _ = dir.keep();
                }
                Ok(())
            }
            Err(e) => Err(io("inspecting", out)(e)),
            Ok(_) => {
                check_replaceable(out)?;
                renameat2(None, &staged, None, out, RenameFlags::RENAME_EXCHANGE)
                    .map_err(|e| io("replacing", out)(std::io::Error::from(e)))
            }
        }
    }
}

/// `out` may be replaced if it does not exist, is an empty directory, or is an image directory.
pub(super) fn check_replaceable(out: &Path) -> Result<(), ImageError> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspecting", out)(e)),
        Ok(meta) if meta.is_dir() && (out.join(MANIFEST_FILE).exists() || is_empty_dir(out)) => {
            Ok(())
        }
        Ok(_) => Err(ImageError::NotAnImageDir {
            dir: out.to_path_buf(),
        }),
    }
}

fn is_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

impl Drop for Staging {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let mounts = mounts_under(dir.path());
        if !mounts.is_empty() {
            let path = dir.keep();
            tracing::warn!(
                staging = %path.display(),
                mounts = ?mounts,
                "not removing the staging directory: filesystems are still mounted inside it"
            );
        }
    }
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    mount_points(&info)
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect()
}

/// The mount points (5th field, octal escapes decoded) of a mountinfo text.
fn mount_points(info: &str) -> Vec<PathBuf> {
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_octal(field)))
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = "22 1 0:21 / /proc rw,nosuid shared:5 - proc proc rw\n\
                    99 22 0:50 / /tmp/a\\040b/root/proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(info),
            vec![PathBuf::from("/proc"), PathBuf::from("/tmp/a b/root/proc")]
        );
    }
}
