//! The runner's settings and credential files on disk (`.runner`, `.credentials`,
//! `.credentials_rsaparams`) in the official runner's formats, plus ghrunner-vm's own settings.
//!
//! ```text
//! <dir>/                       the runner directory (--dir, $GHRUNNER_VM_DIR)
//!   config.yaml                ghrunner-vm settings: images, VM defaults, limits, hooks
//!   runners/<name>/            one registration per runner name (--count N makes N of them)
//!     .runner                  RunnerSettings (camelCase JSON)
//!     .credentials             Credentials (OAuth client id, token endpoint)       0600
//!     .credentials_rsaparams   the RSA private key (RsaParams)                      0600
//! ```
//!
//! Everything is written atomically with mode 0600; credential files readable by group or
//! others are refused on load. Readers accept any key casing, numbers or strings for scalars,
//! and a leading UTF-8 BOM, as the official runner and JIT configs may write them.
//! This module owns no network code and no logging of file contents.

use std::path::PathBuf;

use crate::crypto::CryptoError;

pub mod fs;
pub mod jit;
pub mod runner;
pub mod settings;

pub use runner::{CredentialData, Credentials, Registration, RunnerSettings};
pub use settings::Settings;

/// Errors reading or writing the runner directory.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A directory could not be created.
    #[error("cannot create directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A required file is missing.
    #[error("{} does not exist", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A JSON file is corrupt or has the wrong shape.
    #[error("{} is corrupt: not a valid {what} file", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The key file holds no valid RSA key.
    #[error("{} does not hold a valid RSA key", path.display())]
    InvalidKey {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: CryptoError,
    },
    /// A credential file can be read by other users.
    #[error(
        "{} is readable by group or others (mode {mode:o}): run `chmod 600 {}` and make sure \
         nobody else copied it",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `config.yaml` is invalid.
    #[error("{} is invalid", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The YAML error (names the line and the unknown or bad field).
        #[source]
        source: serde_yaml::Error,
    },
    /// A value in `config.yaml` is out of range.
    #[error("{}: {message}", path.display())]
    InvalidSetting {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A runner name cannot be used as a directory name.
    #[error("invalid runner name {name:?}: use letters, digits, '.', '_' and '-' only")]
    InvalidName {
        /// The name.
        name: String,
    },
    /// The JIT configuration blob is malformed.
    #[error("invalid --jitconfig: {reason}")]
    InvalidJit {
        /// What is wrong.
        reason: String,
    },
}
