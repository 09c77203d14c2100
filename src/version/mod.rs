//! The official runner version ghrunner-vm advertises (registration, sessions, polls,
//! acknowledges, User-Agent), and how it stays current.
//!
//! GitHub gives jobs only to runners whose advertised version is recent (registration needs
//! 2.329.0 or newer; since 2026-09-25 a version released more than 30 days ago receives no
//! jobs: the broker answers `RunnerVersionTooOld`). A pinned version string is an outage
//! within a month, so the default policy follows the official releases:
//!
//! ```text
//!  runner_version (config.yaml; GHRUNNER_VM_RUNNER_VERSION overrides)
//!   X.Y.Z ─► pinned: advertised as is (a rejection stops with exit 7 and says how to fix it)
//!   auto  ─► the newer of
//!              BASELINE: the newest release whose protocol changes were reviewed
//!                        (protocol-fixtures/RUNNER-VERSIONS.md), compiled in
//!              the latest release: GET <releases URL> (api.github.com by default), at most
//!                        once a day, cached in <dir>/runner-release.json with its fetch
//!                        time; offline → the cache; no cache → the baseline (warned once)
//!  RunnerVersionTooOld ─► auto: fetch now (at most once per REFRESH_MIN_INTERVAL) and
//!                         reconnect if a newer release exists; otherwise stop
//!  Agent/RunnerRefresh(target) ─► auto: advertise target from the next session if newer
//! ```
//!
//! One [`VersionPolicy`] serves every registration of a process; the User-Agent of every
//! HTTP client bound to it ([`VersionPolicy::bind`]) follows the advertised version.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::client::http::{HttpClient, UserAgent};

mod number;
mod release;
mod setup;

pub use number::{ParseVersionError, Version, VersionSetting};
pub use release::{CachedRelease, RELEASE_CACHE_FILE, fetch_latest, read_cache};
pub use setup::policy_for_dir;

/// The newest official release whose changes to the wire, the job message, step semantics and
/// the step environment have been reviewed (protocol-fixtures/RUNNER-VERSIONS.md).
pub const BASELINE: Version = Version::new(2, 336, 0);
/// When [`BASELINE`] was released (its tag, `actions/runner` v2.336.0).
pub const BASELINE_RELEASED: &str = "2026-07-20";
/// Where the latest official release is read by default.
pub const DEFAULT_RELEASES_URL: &str =
    "https://api.github.com/repos/actions/runner/releases/latest";
/// Overrides `runner_version` of config.yaml.
pub const VERSION_ENV: &str = "GHRUNNER_VM_RUNNER_VERSION";
/// Overrides `runner_releases_url` of config.yaml.
pub const RELEASES_URL_ENV: &str = "GHRUNNER_VM_RUNNER_RELEASES_URL";
/// How old a cached release may be before it is fetched again.
pub const FETCH_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// How often a rejection may trigger a fetch (a rejected runner never loops on the API).
pub const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(600);
/// GitHub refuses jobs to a runner whose version was released longer ago than this.
pub const MAX_RELEASE_AGE_DAYS: i64 = 30;

/// Where the advertised version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSource {
    /// `runner_version: X.Y.Z` or the environment.
    Pinned,
    /// The latest release, fetched now.
    LatestRelease,
    /// The latest release as cached (the fetch was not due, or failed).
    Cache,
    /// The compiled-in baseline (no newer release known).
    Baseline,
    /// The target of the service's `AgentRefresh`/`RunnerRefresh`.
    RefreshTarget,
}

impl VersionSource {
    /// The word shown by `status`, `doctor` and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionSource::Pinned => "pinned",
            VersionSource::LatestRelease => "latest release",
            VersionSource::Cache => "cache",
            VersionSource::Baseline => "baseline",
            VersionSource::RefreshTarget => "refresh target",
        }
    }
}

/// The version advertised now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    /// The version.
    pub version: Version,
    /// Where it came from.
    pub source: VersionSource,
    /// When it was released, if known.
    pub released_at: Option<DateTime<Utc>>,
}

impl fmt::Display for Advertised {
    /// `2.337.0 (latest release, released 2026-09-16; protocol reviewed up to 2.336.0)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.version, self.source.as_str())?;
        if let Some(at) = self.released_at {
            write!(f, ", released {}", at.format("%Y-%m-%d"))?;
        }
        write!(f, "; protocol reviewed up to {BASELINE})")
    }
}

impl Advertised {
    fn baseline() -> Advertised {
        Advertised {
            version: BASELINE,
            source: VersionSource::Baseline,
            released_at: baseline_released(),
        }
    }

    /// Days since its release, if the release date is known.
    pub fn age_days(&self, now: DateTime<Utc>) -> Option<i64> {
        self.released_at.map(|at| (now - at).num_days())
    }
}

/// [`BASELINE_RELEASED`] as a time.
pub fn baseline_released() -> Option<DateTime<Utc>> {
    NaiveDate::parse_from_str(BASELINE_RELEASED, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

/// Where the policy's settings come from: config.yaml's `runner_version` and
/// `runner_releases_url`, overridden by [`VERSION_ENV`] and [`RELEASES_URL_ENV`].
#[derive(Debug, Clone)]
pub struct VersionConfig {
    /// auto or pinned.
    pub setting: VersionSetting,
    /// The latest-release endpoint.
    pub releases_url: String,
    /// Where the release cache lives (the runner directory); `None`: no cache.
    pub cache_dir: Option<PathBuf>,
}

impl VersionConfig {
    /// The configuration from settings values and the environment (`env` wins when set and
    /// not empty).
    pub fn from_settings(
        setting: VersionSetting,
        releases_url: Option<&str>,
        cache_dir: Option<&Path>,
    ) -> Result<VersionConfig, ParseVersionError> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let setting = match env(VERSION_ENV) {
            Some(value) => value.parse()?,
            None => setting,
        };
        let releases_url = env(RELEASES_URL_ENV)
            .or_else(|| releases_url.map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_RELEASES_URL.to_owned());
        Ok(VersionConfig {
            setting,
            releases_url,
            cache_dir: cache_dir.map(Path::to_owned),
        })
    }

    /// A pinned configuration without a release endpoint (tests, `expr`-like tools).
    pub fn pinned(version: Version) -> VersionConfig {
        VersionConfig {
            setting: VersionSetting::Pinned(version),
            releases_url: DEFAULT_RELEASES_URL.to_owned(),
            cache_dir: None,
        }
    }
}

/// What a rejection led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterRejection {
    /// A newer version is advertised now: reconnect with it.
    Newer(Version),
    /// Nothing newer is known (or the version is pinned): stop.
    Stop,
}

struct State {
    advertised: Advertised,
    /// When a rejection last fetched the release (rate limit).
    last_refresh: Option<std::time::Instant>,
    /// Whether a failed fetch was already warned about.
    warned_fetch: bool,
    /// User-Agents to keep in step.
    agents: Vec<UserAgent>,
}

/// The version policy of a process (see the module docs).
pub struct VersionPolicy {
    config: VersionConfig,
    http: Option<HttpClient>,
    state: Mutex<State>,
}

impl fmt::Debug for VersionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VersionPolicy")
            .field("config", &self.config)
            .field("advertised", &self.current())
            .finish_non_exhaustive()
    }
}

impl VersionPolicy {
    /// Resolves the version to advertise: pinned, or (auto) the newer of the baseline and the
    /// latest release (fetched when the cache is older than a day; on failure the cache, then
    /// the baseline, with one warning). `http` fetches releases (`None`: never fetch).
    pub async fn resolve(config: VersionConfig, http: Option<HttpClient>) -> VersionPolicy {
        let policy = VersionPolicy {
            config,
            http,
            state: Mutex::new(State {
                advertised: Advertised::baseline(),
                last_refresh: None,
                warned_fetch: false,
                agents: Vec::new(),
            }),
        };
        let advertised = match policy.config.setting {
            VersionSetting::Pinned(version) => Advertised {
                version,
                source: VersionSource::Pinned,
                released_at: policy.release_date_of(version),
            },
            VersionSetting::Auto => policy.latest(false).await,
        };
        policy.set(advertised);
        let now = policy.current();
        if now.version > BASELINE {
            tracing::info!(
                "advertising runner version {} ({}); protocol reviewed up to {BASELINE}",
                now.version,
                now.source.as_str()
            );
        } else {
            tracing::debug!(version = %now.version, source = now.source.as_str(), "runner version");
        }
        policy
    }

    /// What `config` advertises without any network access: the pinned version, or (auto) the
    /// cached release whatever its age if newer than the baseline, else the baseline. For
    /// `status`, which never fetches.
    pub fn offline(config: &VersionConfig) -> Advertised {
        match config.setting {
            VersionSetting::Pinned(version) => Advertised {
                version,
                source: VersionSource::Pinned,
                released_at: (version == BASELINE).then(baseline_released).flatten(),
            },
            VersionSetting::Auto => config
                .cache_dir
                .as_deref()
                .and_then(read_cache)
                .filter(|c| c.version > BASELINE)
                .map_or_else(Advertised::baseline, |c| Advertised {
                    version: c.version,
                    source: VersionSource::Cache,
                    released_at: c.published_at,
                }),
        }
    }

    /// A policy that always advertises `version` (tests).
    pub fn pinned(version: Version) -> VersionPolicy {
        let advertised = Advertised {
            version,
            source: VersionSource::Pinned,
            released_at: None,
        };
        VersionPolicy {
            config: VersionConfig::pinned(version),
            http: None,
            state: Mutex::new(State {
                advertised,
                last_refresh: None,
                warned_fetch: false,
                agents: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Plain data: a panic elsewhere cannot leave it inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The version advertised now.
    pub fn current(&self) -> Advertised {
        self.state().advertised.clone()
    }

    /// The configuration.
    pub fn config(&self) -> &VersionConfig {
        &self.config
    }

    /// Keeps `http`'s User-Agent on the advertised version from now on.
    pub fn bind(&self, http: &HttpClient) {
        let agent = http.user_agent();
        let mut state = self.state();
        agent.set_runner_version(&state.advertised.version.to_string());
        state.agents.push(agent);
    }

    fn set(&self, advertised: Advertised) {
        let mut state = self.state();
        for agent in &state.agents {
            agent.set_runner_version(&advertised.version.to_string());
        }
        state.advertised = advertised;
    }

    /// The release date of `version` if the cache knows it (or it is the baseline).
    fn release_date_of(&self, version: Version) -> Option<DateTime<Utc>> {
        if version == BASELINE {
            return baseline_released();
        }
        let cached = self.config.cache_dir.as_deref().and_then(read_cache)?;
        (cached.version == version)
            .then_some(cached.published_at)
            .flatten()
    }

    /// The newer of the baseline and the latest release: from the cache when it is younger
    /// than [`FETCH_INTERVAL`] (unless `force`), else fetched (and cached); on failure the
    /// cache, then the baseline.
    async fn latest(&self, force: bool) -> Advertised {
        let dir = self.config.cache_dir.as_deref();
        let cached = dir.and_then(read_cache);
        let fresh = cached.as_ref().filter(|c| {
            let age = Utc::now() - c.fetched_at;
            age.to_std().is_ok_and(|age| age < FETCH_INTERVAL)
        });
        let from_cache = |c: &CachedRelease| Advertised {
            version: c.version,
            source: VersionSource::Cache,
            released_at: c.published_at,
        };
        let release = match (fresh, force, &self.http) {
            (Some(c), false, _) => Some(from_cache(c)),
            (_, _, None) => cached.as_ref().map(from_cache),
            (_, _, Some(http)) => match fetch_latest(http, &self.config.releases_url).await {
                Ok(latest) => {
                    if let Some(dir) = dir {
                        release::write_cache(dir, &latest);
                    }
                    Some(Advertised {
                        version: latest.version,
                        source: VersionSource::LatestRelease,
                        released_at: latest.published_at,
                    })
                }
                Err(err) => {
                    let mut state = self.state();
                    let fallback = if cached.is_some() {
                        "the cached release"
                    } else {
                        "the baseline"
                    };
                    if state.warned_fetch {
                        tracing::debug!(error = %err, "latest runner release unavailable");
                    } else {
                        state.warned_fetch = true;
                        tracing::warn!(
                            url = %self.config.releases_url,
                            error = %crate::errors::ErrorChain(&err),
                            "cannot read the latest official runner release; advertising {fallback}"
                        );
                    }
                    cached.as_ref().map(from_cache)
                }
            },
        };
        match release {
            Some(release) if release.version > BASELINE => release,
            _ => Advertised::baseline(),
        }
    }

    /// With `auto`, reads the latest release once it is due (cache older than a day) and
    /// advertises it if newer: listeners take it at their next session (or at once when the
    /// service refuses the old one). Never downgrades.
    pub async fn refresh_if_due(&self) {
        if let VersionSetting::Pinned(_) = self.config.setting {
            return;
        }
        let latest = self.latest(false).await;
        if latest.version > self.current().version {
            tracing::info!(
                "a newer official runner release is out: advertising {} from the next session \
                 (protocol reviewed up to {BASELINE})",
                latest.version
            );
            self.set(latest);
        }
    }

    /// Refreshes every [`FETCH_INTERVAL`] for the life of the process (`run`).
    pub fn spawn_daily_refresh(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let policy = std::sync::Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FETCH_INTERVAL).await;
                policy.refresh_if_due().await;
            }
        })
    }

    /// The service refused `rejected` (`RunnerVersionTooOld`): with `auto`, look for a newer
    /// release now (at most once per [`REFRESH_MIN_INTERVAL`]) and advertise it.
    pub async fn after_rejection(&self, rejected: Version) -> AfterRejection {
        if let VersionSetting::Pinned(_) = self.config.setting {
            return AfterRejection::Stop;
        }
        let current = self.current();
        if current.version > rejected {
            // Another registration already moved on.
            return AfterRejection::Newer(current.version);
        }
        let due = {
            let mut state = self.state();
            let due = state
                .last_refresh
                .is_none_or(|at| at.elapsed() >= REFRESH_MIN_INTERVAL);
            if due {
                state.last_refresh = Some(std::time::Instant::now());
            }
            due
        };
        if !due {
            return AfterRejection::Stop;
        }
        let latest = self.latest(true).await;
        if latest.version > rejected {
            tracing::info!(
                rejected = %rejected,
                now = %latest.version,
                "the service refused runner version {rejected}; advertising {} ({}) from the next session",
                latest.version,
                latest.source.as_str()
            );
            let version = latest.version;
            self.set(latest);
            AfterRejection::Newer(version)
        } else {
            AfterRejection::Stop
        }
    }

    /// The service asks for `target` (`AgentRefresh`/`RunnerRefresh`). ghrunner-vm never
    /// replaces its binary: with `auto` a newer target is advertised from the next session
    /// on; a pinned version is kept (with a warning and the fix). Returns the version to use.
    pub fn offer_target(&self, target: &str) -> Version {
        let current = self.current();
        let Ok(target) = target.parse::<Version>() else {
            tracing::warn!(
                target,
                "self-update request with an unreadable target version ignored"
            );
            return current.version;
        };
        match self.config.setting {
            VersionSetting::Pinned(pinned) => {
                if target != pinned {
                    tracing::warn!(
                        "the service asks for runner version {target}, but ghrunner-vm is pinned \
                         to {pinned}: set `runner_version: auto` in config.yaml (or \
                         {VERSION_ENV}=auto), or pin {target}"
                    );
                }
                pinned
            }
            VersionSetting::Auto if target > current.version => {
                tracing::info!(
                    "the service asks for runner version {target}: advertising it from the next \
                     session (ghrunner-vm does not replace its binary)"
                );
                self.set(Advertised {
                    version: target,
                    source: VersionSource::RefreshTarget,
                    released_at: None,
                });
                target
            }
            VersionSetting::Auto => {
                tracing::info!(target = %target, current = %current.version, "self-update request for a version not newer than the advertised one ignored");
                current.version
            }
        }
    }
}

#[cfg(test)]
mod tests;
