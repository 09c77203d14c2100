//! The host cache of `uses:` repository actions: each resolved commit is downloaded once,
//! unpacked once, and kept as `<dir>/actions/<owner>/<repo>/<sha>/` for every later job (the
//! official runner re-downloads per job; protocol-actions.md §8). Copying a tree into the guest
//! is the job runtime's business, not this module's.
//!
//! ```text
//!  fetch(info) ── entry dir exists? ──yes──► touch <sha>.used ──► CachedAction{downloaded: false}
//!                      │ no
//!                      ▼
//!   <repo>/.tmp-<sha>-<uuid>/archive.tar.gz  ◄── client::actions::download_tarball (cap, retries)
//!   <repo>/.tmp-<sha>-<uuid>/tree/           ◄── unpack::unpack_tarball (top folder stripped)
//!                      │ rename(tree, <sha>)   (fails if another job got there first: fine)
//!                      ▼
//!   touch <sha>.used ──► evict least recently used <sha> dirs beyond the size limit
//! ```
//!
//! Every failure (404, 403, a corrupt or oversized tarball, an unsafe archive) leaves no entry:
//! the temporary directory is removed whatever happens. Concurrent fetches of one commit both
//! succeed and leave one entry (rename is atomic; the loser's tree is discarded).
//! The `<sha>.used` marker beside the entry is touched on every use; its mtime orders eviction.
//! Eviction renames an entry aside before deleting it, so no reader sees half a tree appear,
//! but a job copying an entry while it is evicted can still lose files (not handled yet).

use std::path::{Path, PathBuf};

use crate::client::actions::{DownloadError, TarballRequest, download_tarball};
use crate::client::{HttpClient, RetryPolicy};
use crate::config::settings::ActionsCacheSettings;
use crate::protocol::actions::ActionDownloadInfo;

mod lru;
pub mod unpack;

pub use unpack::UnpackError;

/// Folder of the cache under the runner directory.
pub const CACHE_DIR: &str = "actions";
/// Tarball downloads: 3 attempts, 10–30 s random back-off, as `DownloadRepositoryArchive`.
pub const DOWNLOAD_RETRY: RetryPolicy = RetryPolicy::jittered(
    3,
    std::time::Duration::from_secs(10),
    std::time::Duration::from_secs(30),
);

/// Size limits of the cache, in bytes (0 = no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most bytes of unpacked actions kept.
    pub max_bytes: u64,
    /// Largest tarball downloaded.
    pub max_tarball_bytes: u64,
}

impl From<&ActionsCacheSettings> for CacheLimits {
    fn from(settings: &ActionsCacheSettings) -> Self {
        CacheLimits {
            max_bytes: settings.max_mib.saturating_mul(1024 * 1024),
            max_tarball_bytes: settings.max_tarball_mib.saturating_mul(1024 * 1024),
        }
    }
}

/// An action tree in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedAction {
    /// `<cache>/<owner>/<repo>/<sha>`: the action's files, top-level folder stripped.
    pub path: PathBuf,
    /// Whether this call downloaded it (false: it was already cached).
    pub downloaded: bool,
}

/// What went wrong fetching one action.
#[derive(Debug, thiserror::Error)]
pub enum FetchProblem {
    /// The resolved name is not `owner/repo` of safe path segments.
    #[error("the resolved name {0:?} is not owner/repo")]
    InvalidName(String),
    /// The resolved SHA is not 40 (or 64) hex digits.
    #[error("the resolved commit {0:?} is not a hex SHA")]
    InvalidSha(String),
    /// The download failed.
    #[error(transparent)]
    Download(DownloadError),
    /// The archive was refused.
    #[error("the archive cannot be unpacked")]
    Unpack(#[source] UnpackError),
    /// The cache directory could not be written.
    #[error("cannot write the cache at {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Fetching an action into the cache failed; nothing of it was left in the cache.
#[derive(Debug, thiserror::Error)]
#[error("cannot download action {action}")]
pub struct ActionCacheError {
    /// `owner/repo@ref` as the workflow named it (and the commit, when known).
    pub action: String,
    /// What went wrong.
    #[source]
    pub problem: FetchProblem,
}

impl ActionCacheError {
    /// The problem.
    pub fn problem(&self) -> &FetchProblem {
        &self.problem
    }
}

/// The action cache under one directory.
#[derive(Debug, Clone)]
pub struct ActionCache {
    root: PathBuf,
    limits: CacheLimits,
    http: HttpClient,
    retry: RetryPolicy,
}

impl ActionCache {
    /// The cache at `<runner dir>/actions` with the given limits, downloading through `http`
    /// with [`DOWNLOAD_RETRY`].
    pub fn new(runner_dir: &Path, limits: CacheLimits, http: HttpClient) -> ActionCache {
        ActionCache::at(runner_dir.join(CACHE_DIR), limits, http)
    }

    /// The cache rooted exactly at `root`.
    pub fn at(root: PathBuf, limits: CacheLimits, http: HttpClient) -> ActionCache {
        ActionCache {
            root,
            limits,
            http,
            retry: DOWNLOAD_RETRY,
        }
    }

    /// The same cache with another download retry policy (tests use a short one).
    pub fn with_retry(mut self, retry: RetryPolicy) -> ActionCache {
        self.retry = retry;
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Makes the action `info` resolved to available in the cache and returns its tree.
    /// `fallback_token` (`github.token`) is sent when the answer carried no token;
    /// `bearer_for_codeload` is the job variable `actions_use_bearer_token_for_codeload`.
    pub async fn fetch(
        &self,
        info: &ActionDownloadInfo,
        fallback_token: Option<&str>,
        bearer_for_codeload: bool,
    ) -> Result<CachedAction, ActionCacheError> {
        let action = format!(
            "{}@{} ({})",
            info.name_with_owner, info.git_ref, info.resolved_sha
        );
        let fail = |problem| ActionCacheError {
            action: action.clone(),
            problem,
        };
        let name = if info.resolved_name_with_owner.is_empty() {
            &info.name_with_owner
        } else {
            &info.resolved_name_with_owner
        };
        let (owner, repo) =
            split_name(name).ok_or_else(|| fail(FetchProblem::InvalidName(name.clone())))?;
        let sha = info.resolved_sha.to_ascii_lowercase();
        if !is_sha(&sha) {
            return Err(fail(FetchProblem::InvalidSha(info.resolved_sha.clone())));
        }
        let repo_dir = self.root.join(owner).join(repo);
        let entry = repo_dir.join(&sha);
        let downloaded = if entry.is_dir() {
            false
        } else {
            let token = info.token().or(fallback_token);
            let request = TarballRequest {
                url: &info.tarball_url,
                token,
                bearer_for_codeload,
                max_bytes: match self.limits.max_tarball_bytes {
                    0 => u64::MAX,
                    n => n,
                },
            };
            self.download_into(&repo_dir, &entry, &sha, &request)
                .await
                .map_err(fail)?;
            true
        };
        lru::touch(&repo_dir, &sha).map_err(|source| {
            fail(FetchProblem::Io {
                path: repo_dir.clone(),
                source,
            })
        })?;
        if self.limits.max_bytes > 0 {
            let (root, max, keep) = (self.root.clone(), self.limits.max_bytes, entry.clone());
            // Eviction is best effort: a failure to delete an old entry never fails this job.
            let outcome = tokio::task::spawn_blocking(move || lru::evict(&root, max, &keep)).await;
            if let Ok(Err(err)) = outcome {
                tracing::warn!(error = %err, "action cache eviction failed");
            }
        }
        tracing::debug!(action = %action, downloaded, "action available in the cache");
        Ok(CachedAction {
            path: entry,
            downloaded,
        })
    }

    async fn download_into(
        &self,
        repo_dir: &Path,
        entry: &Path,
        sha: &str,
        request: &TarballRequest<'_>,
    ) -> Result<(), FetchProblem> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| FetchProblem::Io { path, source }
        };
        tokio::fs::create_dir_all(repo_dir)
            .await
            .map_err(io(repo_dir))?;
        let temp = TempDir::create(repo_dir.join(format!(".tmp-{sha}-{}", uuid::Uuid::new_v4())))
            .map_err(io(repo_dir))?;
        let archive = temp.0.join("archive.tar.gz");
        download_tarball(&self.http, self.retry, request, &archive)
            .await
            .map_err(FetchProblem::Download)?;
        let tree = temp.0.join("tree");
        let (from, to) = (archive.clone(), tree.clone());
        tokio::task::spawn_blocking(move || unpack::unpack_tarball(&from, &to))
            .await
            .map_err(|e| FetchProblem::Io {
                path: tree.clone(),
                source: std::io::Error::other(e),
            })?
            .map_err(FetchProblem::Unpack)?;
        match std::fs::rename(&tree, entry) {
            Ok(()) => Ok(()),
            // Another fetch of the same commit won the race; its tree is as good as ours.
            Err(_) if entry.is_dir() => Ok(()),
            Err(source) => Err(FetchProblem::Io {
                path: entry.to_owned(),
                source,
            }),
        }
    }
}

/// A directory removed (with its contents) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: PathBuf) -> std::io::Result<TempDir> {
        std::fs::create_dir(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `owner/repo` as two safe path segments.
fn split_name(name: &str) -> Option<(&str, &str)> {
    let (owner, repo) = name.split_once('/')?;
    let safe = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (safe(owner) && safe(repo)).then_some((owner, repo))
}

fn is_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_shas_must_be_safe_path_segments() {
        assert_eq!(
            split_name("actions/checkout"),
            Some(("actions", "checkout"))
        );
        assert_eq!(split_name("a/b.c-d_e"), Some(("a", "b.c-d_e")));
        for bad in ["actions", "a/b/c", "../x", "a/..", "a/.hidden", "/b", "a/"] {
            assert_eq!(split_name(bad), None, "{bad}");
        }
        assert!(is_sha("11d5960a326750d5838078e36cf38b85af677262"));
        assert!(!is_sha("11d5960"));
        assert!(!is_sha("../../../../../../../../../../../../../../x"));
    }

    #[test]
    fn limits_come_from_the_settings_in_mib() {
        let limits = CacheLimits::from(&ActionsCacheSettings {
            max_mib: 2,
            max_tarball_mib: 1,
        });
        assert_eq!(limits.max_bytes, 2 * 1024 * 1024);
        assert_eq!(limits.max_tarball_bytes, 1024 * 1024);
    }
}
