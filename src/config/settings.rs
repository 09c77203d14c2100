//! `<dir>/config.yaml`: ghrunner-vm's own settings (images per label, VM defaults, host limits,
//! hooks). A missing file means the defaults; unknown fields are rejected so a typo never goes
//! unnoticed.
//!
//! ```yaml
//! images: {tiny: /path/to/image-dir}   # label -> image directory
//! default_image: null                  # label used when runs-on names no image label
//! vm: {accel: auto, cpus: 2, memory_mib: 2048, network: user, boot_timeout_secs: 120,
//!      run_as: ghrunner-vm-guest}       # QEMU and passt drop to this user when run as root
//! network: {allow: []}                 # CIDRs, addresses, host:port the guest may reach
//!                                      # besides the public internet (see vm::egress)
//! limits: {max_vm_cpus: 0, max_vm_memory_mib: 0}   # 0 = derive from the host
//! hooks: {job_started: null, job_completed: null}  # host scripts
//! runner_version: auto                 # or X.Y.Z (env GHRUNNER_VM_RUNNER_VERSION overrides)
//! runner_releases_url: null            # latest-release endpoint (default: api.github.com)
//! actions_cache: {max_mib: 2048, max_tarball_mib: 100}   # `uses:` action cache (LRU), 0 = no limit
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, fs};
use crate::version::VersionSetting;

/// File name of the settings inside the runner directory.
pub const SETTINGS_FILE: &str = "config.yaml";
/// Smallest VM memory we accept.
pub const MIN_VM_MEMORY_MIB: u64 = 64;

/// ghrunner-vm settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Runner image directory per label: a job whose `runs-on` names the label runs in a VM
    /// from that image. `register --image LABEL=DIR` adds entries.
    pub images: BTreeMap<String, PathBuf>,
    /// Label of the image used when `runs-on` names no image label (none: such jobs fail).
    pub default_image: Option<String>,
    /// Defaults for every job's VM.
    pub vm: VmSettings,
    /// Upper bounds for what a job may ask for.
    pub limits: Limits,
    /// Host scripts run around each job.
    pub hooks: Hooks,
    /// What guests may connect to.
    pub network: NetworkSettings,
    /// The official runner version to advertise: `auto` (follow the releases) or `X.Y.Z`
    /// (see [`crate::version`]).
    pub runner_version: VersionSetting,
    /// Where `auto` reads the latest official release (a GitHub REST `releases/latest`
    /// document); default `https://api.github.com/repos/actions/runner/releases/latest`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runner_releases_url: Option<String>,
    /// The host cache of downloaded `uses:` actions (`<dir>/actions/`).
    pub actions_cache: ActionsCacheSettings,
}

/// The `uses:` action cache: unpacked trees by `owner/repo/sha`, least recently used evicted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActionsCacheSettings {
    /// Most disk space the unpacked actions may take, in MiB (0 = no limit); least recently
    /// used commits are evicted beyond it.
    pub max_mib: u64,
    /// Largest action tarball downloaded, in MiB (0 = no limit).
    pub max_tarball_mib: u64,
}

/// Default [`ActionsCacheSettings::max_mib`].
pub const DEFAULT_ACTIONS_CACHE_MIB: u64 = 2048;
/// Default [`ActionsCacheSettings::max_tarball_mib`] (the official runner has none; 100 MiB
/// holds every action we know of).
pub const DEFAULT_MAX_TARBALL_MIB: u64 = 100;

impl Default for ActionsCacheSettings {
    fn default() -> Self {
        ActionsCacheSettings {
            max_mib: DEFAULT_ACTIONS_CACHE_MIB,
            max_tarball_mib: DEFAULT_MAX_TARBALL_MIB,
        }
    }
}

/// VM defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmSettings {
    /// CPU acceleration.
    pub accel: Accel,
    /// Virtual CPUs per VM.
    pub cpus: u32,
    /// Memory per VM in MiB.
    pub memory_mib: u64,
    /// Guest networking.
    pub network: Network,
    /// Seconds to wait for a VM to boot and answer on SSH.
    pub boot_timeout_secs: u64,
    /// The unprivileged user QEMU and passt run as when the agent runs as root (created as a
    /// system account if missing); the egress rules match its connections.
    pub run_as: String,
}

/// Guest egress (see [`crate::vm::egress`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSettings {
    /// Destinations a guest may reach besides the public internet, which it always reaches:
    /// CIDRs (`10.1.0.0/16`), addresses, `host:port` or host names. Private, link-local and
    /// this host's addresses are refused unless listed here; the runner's own server (a GHES
    /// on a private network) and DNS to the host's resolvers are allowed automatically.
    pub allow: Vec<String>,
}

/// How QEMU accelerates the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a bounded probe shows it works, TCG otherwise.
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG (software emulation).
    Tcg,
}

/// Guest networking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// User-mode networking: outbound allowed, the host's loopback services unreachable.
    User,
    /// No network besides the SSH channel.
    None,
}

/// Host limits (0 = derive from the host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most virtual CPUs a VM may get.
    pub max_vm_cpus: u32,
    /// Most memory a VM may get, in MiB.
    pub max_vm_memory_mib: u64,
}

/// Host scripts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hooks {
    /// Run on the host before a job starts.
    pub job_started: Option<PathBuf>,
    /// Run on the host after a job completed.
    pub job_completed: Option<PathBuf>,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            accel: Accel::Auto,
            cpus: 2,
            memory_mib: 2048,
            network: Network::User,
            boot_timeout_secs: 120,
            run_as: crate::vm::guest_user::DEFAULT_GUEST_USER.to_owned(),
        }
    }
}

impl Settings {
    /// `<dir>/config.yaml`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(SETTINGS_FILE)
    }

    /// Loads `<dir>/config.yaml`; a missing file gives the defaults.
    pub fn load(dir: &Path) -> Result<Self, ConfigError> {
        let path = Self::path(dir);
        match fs::read_optional(&path)? {
            None => Ok(Settings::default()),
            Some(bytes) => Self::parse(&path, &bytes),
        }
    }

    /// Parses and validates settings; `path` only names the file in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        // An empty file (or only comments) means the defaults.
        let value: serde_yaml::Value =
            serde_yaml::from_slice(bytes).map_err(|source| ConfigError::Yaml {
                path: path.to_owned(),
                source,
            })?;
        let settings = if value.is_null() {
            Settings::default()
        } else {
            serde_yaml::from_value(value).map_err(|source| ConfigError::Yaml {
                path: path.to_owned(),
                source,
            })?
        };
        settings.validate(path)?;
        Ok(settings)
    }

    /// Writes `<dir>/config.yaml` atomically (mode 0600).
    pub fn save(&self, dir: &Path) -> Result<(), ConfigError> {
        let path = Self::path(dir);
        let text = serde_yaml::to_string(self).map_err(|source| ConfigError::Yaml {
            path: path.clone(),
            source,
        })?;
        fs::write_atomic(&path, text.as_bytes())
    }

    /// Checks values serde cannot: ranges and references between fields.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::InvalidSetting {
            path: path.to_owned(),
            message,
        };
        if self.vm.cpus == 0 {
            return Err(invalid("vm.cpus must be at least 1".into()));
        }
        if self.vm.memory_mib < MIN_VM_MEMORY_MIB {
            return Err(invalid(format!(
                "vm.memory_mib must be at least {MIN_VM_MEMORY_MIB}"
            )));
        }
        if self.vm.boot_timeout_secs == 0 {
            return Err(invalid("vm.boot_timeout_secs must be at least 1".into()));
        }
        if self.vm.run_as.trim().is_empty() {
            return Err(invalid("vm.run_as must name a user".into()));
        }
        for entry in &self.network.allow {
            crate::vm::egress::AllowEntry::parse(entry).map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(label) = &self.default_image
            && !self.images.contains_key(label)
        {
            return Err(invalid(format!(
                "default_image {label:?} is not a label under images"
            )));
        }
        if let Some(label) = self
            .images
            .keys()
            .find(|l| l.trim().is_empty() || l.contains(','))
        {
            return Err(invalid(format!(
                "image label {label:?} is empty or contains a comma"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documented_schema() {
        let s = Settings::default();
        assert_eq!(s.vm.cpus, 2);
        assert_eq!(s.vm.memory_mib, 2048);
        assert_eq!(s.vm.accel, Accel::Auto);
        assert_eq!(s.vm.network, Network::User);
        assert_eq!(s.vm.boot_timeout_secs, 120);
        assert_eq!(s.limits, Limits::default());
    }

    #[test]
    fn parses_the_documented_example() {
        let yaml = "images: {tiny: /img/tiny}\ndefault_image: tiny\n\
                    vm: {accel: tcg, cpus: 1, memory_mib: 512, network: none, boot_timeout_secs: 60}\n\
                    limits: {max_vm_cpus: 4, max_vm_memory_mib: 4096}\n\
                    hooks: {job_started: /bin/true, job_completed: null}\n";
        let s = Settings::parse(Path::new("config.yaml"), yaml.as_bytes()).unwrap();
        assert_eq!(s.images["tiny"], PathBuf::from("/img/tiny"));
        assert_eq!(s.vm.accel, Accel::Tcg);
        assert_eq!(s.vm.network, Network::None);
        assert_eq!(s.hooks.job_started, Some(PathBuf::from("/bin/true")));
        // Partial files fill in defaults.
        let partial = Settings::parse(Path::new("c"), b"vm: {cpus: 4}\n").unwrap();
        assert_eq!(partial.vm.cpus, 4);
        assert_eq!(partial.vm.memory_mib, 2048);
        assert_eq!(
            Settings::parse(Path::new("c"), b"").unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn actions_cache_limits_parse_and_default_and_reject_typos() {
        assert_eq!(
            Settings::default().actions_cache.max_mib,
            DEFAULT_ACTIONS_CACHE_MIB
        );
        assert_eq!(Settings::default().actions_cache.max_tarball_mib, 100);
        let s = Settings::parse(Path::new("c"), b"actions_cache: {max_mib: 10}\n").unwrap();
        assert_eq!(s.actions_cache.max_mib, 10);
        assert_eq!(s.actions_cache.max_tarball_mib, DEFAULT_MAX_TARBALL_MIB);
        assert!(Settings::parse(Path::new("c"), b"actions_cache: {max_gib: 1}\n").is_err());
    }

    #[test]
    fn unknown_fields_and_bad_values_are_rejected_clearly() {
        let err = Settings::parse(Path::new("/d/config.yaml"), b"vm: {cpu: 4}\n").unwrap_err();
        let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            chain.contains("/d/config.yaml") && chain.contains("cpu"),
            "{chain}"
        );
        assert!(Settings::parse(Path::new("c"), b"vm: {accel: fast}\n").is_err());
        assert!(Settings::parse(Path::new("c"), b"vm: {cpus: 0}\n").is_err());
        assert!(Settings::parse(Path::new("c"), b"default_image: nope\n").is_err());
        let err = Settings::parse(
            Path::new("c"),
            b"network: {allow: [10.0.0.0/8, 'http://x']}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("http://x"), "{err}");
        assert!(Settings::parse(Path::new("c"), b"vm: {run_as: ''}\n").is_err());
    }

    #[test]
    fn network_allow_and_run_as_are_read() {
        let yaml = b"vm: {run_as: qemu-guest}\nnetwork:\n  allow: [10.1.0.0/16, 'ghes.corp:443', '[fd00::1]:22']\n";
        let s = Settings::parse(Path::new("c"), yaml).unwrap();
        assert_eq!(s.vm.run_as, "qemu-guest");
        assert_eq!(
            s.network.allow,
            ["10.1.0.0/16", "ghes.corp:443", "[fd00::1]:22"]
        );
        assert_eq!(Settings::default().vm.run_as, "ghrunner-vm-guest");
        assert!(Settings::default().network.allow.is_empty());
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), Settings::default());
        let mut s = Settings::default();
        s.images.insert("tiny".into(), "/img".into());
        s.default_image = Some("tiny".into());
        s.save(dir.path()).unwrap();
        assert_eq!(Settings::load(dir.path()).unwrap(), s);
    }
}
