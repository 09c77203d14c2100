//! Runner images: the image directory's manifest, and the recipes that build images.
//!
//! An image directory holds `manifest.json` ([`ImageManifest`]) and the files it names.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json` of an image directory. Paths are relative to the image directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ImageManifest {
    /// Image name, e.g. `tiny`.
    pub name: String,
    /// Guest architecture, e.g. `x86_64`.
    pub arch: String,
    /// Template disk (qcow2) that each job's overlay is cloned from, if the image has a disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Kernel for direct boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Initial ramdisk for direct boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Extra kernel command line for direct boot (the backend appends its own parameters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// User the job's commands run as over SSH.
    pub user: String,
    /// Default shell of the image (`bash` or `sh`).
    pub shell: String,
    /// Directory in the guest under which the job's work folder is created.
    pub work_dir: String,
}

/// An image directory with its parsed manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image directory.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: ImageManifest,
}

impl Image {
    /// Resolves a path named in the manifest against the image directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    /// The manifest file of an image directory.
    pub fn manifest_path(dir: &Path) -> PathBuf {
        dir.join(MANIFEST_FILE)
    }
}
