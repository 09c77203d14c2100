//! The runner directory's version policy: its settings, the environment and the release cache
//! resolved into the [`VersionPolicy`] a process advertises.

use super::VersionPolicy;

/// The runner-version policy of the runner directory `dir` (its `runner_version` and
/// `runner_releases_url`, the environment overriding them); the latest release is cached in
/// `dir`, which is created if needed.
pub async fn policy_for_dir(
    dir: &std::path::Path,
    settings: &crate::config::Settings,
) -> anyhow::Result<VersionPolicy> {
    use anyhow::Context as _;
    let config = crate::version::VersionConfig::from_settings(
        settings.runner_version,
        settings.runner_releases_url.as_deref(),
        Some(dir),
    )
    .context(crate::version::VERSION_ENV)?;
    crate::config::fs::create_private_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    // One attempt, bounded: an unreachable endpoint delays start-up by at most the request
    // timeout and falls back to the cache or the baseline.
    let http = crate::client::HttpClient::with_retry(crate::client::http::RetryPolicy::NONE)?;
    Ok(VersionPolicy::resolve(config, Some(http)).await)
}
