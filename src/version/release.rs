//! The latest official runner release: read from the GitHub REST API
//! (`GET /repos/actions/runner/releases/latest`, or a mirror) and cached in
//! `<dir>/runner-release.json` with its fetch time. A cache that is missing, unreadable or
//! corrupt is ignored (debug log); it never causes an error.

use std::path::Path;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use reqwest::header::ACCEPT;
use serde::{Deserialize, Serialize};

use super::{ParseVersionError, Version};
use crate::client::Timeouts;
use crate::client::http::HttpClient;

/// File in the runner directory caching the latest release.
pub const RELEASE_CACHE_FILE: &str = "runner-release.json";
/// Largest release document read (the real one is tens of KiB).
const MAX_RELEASE_BYTES: usize = 1 << 20;

/// The latest release as read from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestRelease {
    /// Its version (from `tag_name`).
    pub version: Version,
    /// `published_at`, if given.
    pub published_at: Option<DateTime<Utc>>,
}

/// The cache file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedRelease {
    /// The release's version.
    pub version: Version,
    /// When it was published.
    #[serde(default)]
    pub published_at: Option<DateTime<Utc>>,
    /// When it was fetched.
    pub fetched_at: DateTime<Utc>,
}

/// Why the latest release could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// The request failed or the server answered an error.
    #[error("GET {url} failed")]
    Request {
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The answer is larger than [`MAX_RELEASE_BYTES`].
    #[error("the answer of {url} is larger than {MAX_RELEASE_BYTES} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
    /// The answer is not a release document.
    #[error("the answer of {url} is not a release (no `tag_name`)")]
    NotARelease {
        /// The URL.
        url: String,
    },
    /// `tag_name` is not a version.
    #[error("the latest release of {url} has an unusable tag")]
    BadTag {
        /// The URL.
        url: String,
        /// The parse error.
        #[source]
        source: ParseVersionError,
    },
}

/// The part of the REST API's release document we use.
#[derive(Deserialize)]
struct ReleaseDocument {
    tag_name: Option<String>,
    #[serde(default)]
    published_at: Option<DateTime<Utc>>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    prerelease: bool,
}

/// Reads the latest release from `url` (a GitHub REST `releases/latest` document).
pub async fn fetch_latest(http: &HttpClient, url: &str) -> Result<LatestRelease, ReleaseError> {
    let request_failed = |source: Box<dyn std::error::Error + Send + Sync>| ReleaseError::Request {
        url: url.to_owned(),
        source,
    };
    let request = http
        .request(reqwest::Method::GET, url)
        .header(ACCEPT, "application/vnd.github+json")
        .timeout(Timeouts::OFFICIAL.release_fetch);
    let response = http
        .execute(request)
        .await
        .map_err(|e| request_failed(Box::new(e)))?;
    let response = crate::client::http::error_for_status(&reqwest::Method::GET, response)
        .await
        .map_err(|e| request_failed(Box::new(e)))?;
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| request_failed(Box::new(e)))?;
        if body.len() + chunk.len() > MAX_RELEASE_BYTES {
            return Err(ReleaseError::TooLarge {
                url: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    let document: ReleaseDocument =
        serde_json::from_slice(&body).map_err(|e| request_failed(Box::new(e)))?;
    let tag = match document.tag_name {
        Some(tag) if !document.draft && !document.prerelease => tag,
        _ => {
            return Err(ReleaseError::NotARelease {
                url: url.to_owned(),
            });
        }
    };
    let version = tag.parse().map_err(|source| ReleaseError::BadTag {
        url: url.to_owned(),
        source,
    })?;
    Ok(LatestRelease {
        version,
        published_at: document.published_at,
    })
}

/// The cached release in `dir`, if readable and well-formed.
pub fn read_cache(dir: &Path) -> Option<CachedRelease> {
    let path = dir.join(RELEASE_CACHE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "runner release cache unreadable, ignored");
            return None;
        }
    };
    match serde_json::from_str(&text) {
        Ok(cached) => Some(cached),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "runner release cache corrupt, ignored");
            None
        }
    }
}

/// Caches `release` in `dir` (atomically; a failure is only logged).
pub(super) fn write_cache(dir: &Path, release: &LatestRelease) {
    let cached = CachedRelease {
        version: release.version,
        published_at: release.published_at,
        fetched_at: Utc::now(),
    };
    let path = dir.join(RELEASE_CACHE_FILE);
    let written = serde_json::to_vec_pretty(&cached)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            crate::config::fs::write_atomic(&path, &bytes).map_err(std::io::Error::other)
        });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot cache the latest runner release");
    }
}
