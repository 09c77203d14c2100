//! Least-recently-used bookkeeping of the action cache: a `<sha>.used` marker beside each entry
//! (its mtime is the last use) and eviction of the oldest entries beyond a size limit.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Suffix of the marker file beside each entry.
const MARKER_SUFFIX: &str = ".used";

/// Records a use of `<repo_dir>/<sha>` now.
pub(super) fn touch(repo_dir: &Path, sha: &str) -> io::Result<()> {
    let marker = repo_dir.join(format!("{sha}{MARKER_SUFFIX}"));
    fs::write(&marker, chrono::Utc::now().to_rfc3339())
}

/// One cached commit.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    marker: PathBuf,
    last_used: SystemTime,
    bytes: u64,
}

/// Deletes least recently used entries under `root` (`<owner>/<repo>/<sha>`) until the total
/// is at most `max_bytes`; `keep` (the entry just used) is never deleted. Returns how many
/// entries were evicted.
pub(super) fn evict(root: &Path, max_bytes: u64, keep: &Path) -> io::Result<usize> {
    let mut entries = list(root)?;
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    entries.sort_by_key(|e| e.last_used);
    let mut evicted = 0;
    for entry in entries {
        if total <= max_bytes {
            break;
        }
        if entry.path == keep {
            continue;
        }
        let Some(parent) = entry.path.parent() else {
            continue;
        };
        // Rename aside first: the entry disappears at once, never half-deleted.
        let aside = parent.join(format!(".evict-{}", uuid::Uuid::new_v4()));
        if fs::rename(&entry.path, &aside).is_err() {
            continue; // evicted by someone else meanwhile
        }
        let _ = fs::remove_file(&entry.marker);
        fs::remove_dir_all(&aside)?;
        total = total.saturating_sub(entry.bytes);
        evicted += 1;
        tracing::debug!(path = %entry.path.display(), bytes = entry.bytes, "evicted a cached action");
    }
    Ok(evicted)
}

fn list(root: &Path) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for owner in dirs(root)? {
        for repo in dirs(&owner)? {
            for sha in dirs(&repo)? {
                let name = sha
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let marker = repo.join(format!("{name}{MARKER_SUFFIX}"));
                let last_used = fs::metadata(&marker)
                    .or_else(|_| fs::metadata(&sha))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push(Entry {
                    bytes: tree_bytes(&sha),
                    path: sha,
                    marker,
                    last_used,
                });
            }
        }
    }
    Ok(entries)
}

/// Sub-directories of `dir` whose names do not start with `.` (temporary and evicted trees).
fn dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(err) => return Err(err),
    };
    for item in read {
        let item = item?;
        let hidden = item.file_name().to_string_lossy().starts_with('.');
        if !hidden && item.file_type()?.is_dir() {
            out.push(item.path());
        }
    }
    Ok(out)
}

/// Bytes of the files under `dir` (symlinks not followed; unreadable parts count as 0).
fn tree_bytes(dir: &Path) -> u64 {
    let Ok(read) = fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .map(|item| match item.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&item.path()),
            Ok(_) => item.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(root: &Path, repo: &str, sha: &str, bytes: usize) -> PathBuf {
        let dir = root.join("o").join(repo).join(sha);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("f"), vec![0u8; bytes]).unwrap();
        touch(dir.parent().unwrap(), sha).unwrap();
        dir
    }

    #[test]
    fn evicts_the_least_recently_used_until_under_the_limit() {
        let root = tempfile::tempdir().unwrap();
        let a = entry(root.path(), "r1", "a", 100);
        let b = entry(root.path(), "r2", "b", 100);
        std::thread::sleep(std::time::Duration::from_millis(20));
        touch(a.parent().unwrap(), "a").unwrap(); // a is now newer than b
        std::thread::sleep(std::time::Duration::from_millis(20));
        let c = entry(root.path(), "r1", "c", 100);
        assert_eq!(evict(root.path(), 250, &c).unwrap(), 1);
        assert!(a.is_dir() && c.is_dir());
        assert!(!b.exists());
        assert!(!root.path().join("o/r2/b.used").exists());
        // Never the entry in use, even when it alone exceeds the limit.
        assert_eq!(evict(root.path(), 10, &c).unwrap(), 1);
        assert!(c.is_dir() && !a.exists());
    }
}
