//! Runner images: the image directory's manifest, and the recipes that build images.
//!
//! An image directory holds `manifest.json` ([`ImageManifest`]) and the files it names. Images
//! are built from recipes ([`recipe`]: `runner-images/<name>/`, embedded in the binary) by
//! [`build::build`], which stages the files in a temporary directory next to the destination,
//! checksums them into the manifest and swaps the finished directory into place atomically.
//!
//! ```text
//!   Recipe::resolve("tiny" | path)
//!        │
//!   build(): check prerequisites ── missing ──► ImageError::MissingPrerequisites (packages named)
//!        │ ok
//!   run `build.sh build <staging>` (progress streamed) ── fails ──► staging removed, old image kept
//!        │ ok
//!   manifest + sha256 of every file ──► rename/exchange staging into `out` ──► Image
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod build;
pub mod facts;
pub mod list;
pub mod recipe;
mod staging;

pub use build::{BuildOptions, Progress, ProgressKind, build};
pub use facts::{ImageFacts, NodeRuntime};
pub use recipe::Recipe;

/// File name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// `manifest.json` of an image directory. Paths are relative to the image directory.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// What the guest provides (shells, tools, Node.js), recorded by the build; `None` in
    /// manifests written before facts existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<ImageFacts>,
    /// Version of the guest kernel, if the recipe knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    /// Name of the recipe that built the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Content hash of that recipe (`sha256:<hex>`, see [`Recipe::content_hash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_hash: Option<String>,
    /// When the image was built (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_at: Option<String>,
    /// SHA-256 (lowercase hex) of every file of the image except the manifest, by path relative
    /// to the image directory.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sha256: BTreeMap<String, String>,
}

impl ImageManifest {
    /// The files the manifest names for booting (disk, kernel, initrd), relative to the image
    /// directory.
    pub fn boot_files(&self) -> impl Iterator<Item = &str> {
        [&self.disk, &self.kernel, &self.initrd]
            .into_iter()
            .filter_map(|f| f.as_deref())
    }

    /// Checks what a backend relies on: something to boot, relative paths that stay inside the
    /// image directory, and a user and work directory.
    pub fn validate(&self) -> Result<(), String> {
        if self.kernel.is_none() && self.disk.is_none() {
            return Err("names neither a kernel nor a disk".into());
        }
        if self.initrd.is_some() && self.kernel.is_none() {
            return Err("names an initrd but no kernel".into());
        }
        for file in self
            .boot_files()
            .chain(self.sha256.keys().map(String::as_str))
        {
            let path = Path::new(file);
            if file.is_empty()
                || path.is_absolute()
                || path
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(format!("file {file:?} is not a plain relative path"));
            }
        }
        if self.user.is_empty() || self.shell.is_empty() {
            return Err("user and shell must not be empty".into());
        }
        if !self.work_dir.starts_with('/') {
            return Err(format!("work_dir {:?} is not absolute", self.work_dir));
        }
        if let Some(facts) = &self.facts {
            facts.validate()?;
        }
        Ok(())
    }
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

    /// Reads and validates the manifest of an image directory and checks that the files it
    /// boots from exist. Does not hash the files (see [`Image::verify`]).
    pub fn load(dir: &Path) -> Result<Image, ImageError> {
        let path = Image::manifest_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ImageError::Io {
            action: "reading",
            path: path.clone(),
            source,
        })?;
        let manifest: ImageManifest =
            serde_json::from_str(&text).map_err(|source| ImageError::InvalidManifest {
                path: path.clone(),
                source,
            })?;
        manifest.validate().map_err(|reason| ImageError::Invalid {
            dir: dir.to_path_buf(),
            reason,
        })?;
        let image = Image {
            dir: dir.to_path_buf(),
            manifest,
        };
        for file in image.manifest.boot_files() {
            if !image.path(file).is_file() {
                return Err(ImageError::Invalid {
                    dir: dir.to_path_buf(),
                    reason: format!("{file} (named in {MANIFEST_FILE}) does not exist"),
                });
            }
        }
        Ok(image)
    }

    /// Recomputes the SHA-256 of every file listed in the manifest and fails on the first
    /// mismatch or missing file.
    pub fn verify(&self) -> Result<(), ImageError> {
        for (file, expected) in &self.manifest.sha256 {
            let actual = build::sha256_file(&self.path(file))?;
            if &actual != expected {
                return Err(ImageError::Invalid {
                    dir: self.dir.clone(),
                    reason: format!("{file} has sha256 {actual}, the manifest says {expected}"),
                });
            }
        }
        Ok(())
    }
}

/// A prerequisite a recipe reported missing, with the Debian package that provides it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// The Debian package to install.
    pub package: String,
    /// What exactly is missing.
    pub what: String,
}

/// Errors of building, loading and listing images. Context in fields, the cause in `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No built-in recipe has this name and it is not a recipe directory.
    #[error(
        "unknown recipe {name:?}: built-in recipes are {available}, or pass a recipe directory"
    )]
    UnknownRecipe {
        /// The name asked for.
        name: String,
        /// The built-in recipe names, comma-separated.
        available: String,
    },
    /// A recipe directory is unusable.
    #[error("recipe directory {dir} is not usable: {reason}")]
    InvalidRecipe {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The recipe's prerequisite check found missing host tools or files.
    #[error("{}", missing_message(recipe, missing))]
    MissingPrerequisites {
        /// The recipe.
        recipe: String,
        /// What is missing.
        missing: Vec<Missing>,
    },
    /// A recipe program could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The recipe's build script failed; the destination is untouched.
    #[error("recipe {recipe} failed ({status}); last output:\n{tail}")]
    BuildFailed {
        /// The recipe.
        recipe: String,
        /// How the script ended.
        status: String,
        /// Its last output lines.
        tail: String,
    },
    /// The build was cancelled; the destination is untouched.
    #[error("building recipe {recipe} was cancelled")]
    Cancelled {
        /// The recipe.
        recipe: String,
    },
    /// `manifest.json` is not valid JSON of the expected shape.
    #[error("{path} is not a valid image manifest")]
    InvalidManifest {
        /// The manifest file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An image directory is inconsistent.
    #[error("image {dir} is not usable: {reason}")]
    Invalid {
        /// The image directory.
        dir: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The destination exists and is not an image directory, so it is not replaced.
    #[error(
        "{dir} exists and is not an image directory (no {MANIFEST_FILE}); refusing to replace it"
    )]
    NotAnImageDir {
        /// The destination.
        dir: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{action} {path} failed")]
    Io {
        /// What was done, e.g. `reading`.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn missing_message(recipe: &str, missing: &[Missing]) -> String {
    let mut packages: Vec<&str> = missing.iter().map(|m| m.package.as_str()).collect();
    packages.sort_unstable();
    packages.dedup();
    let what: Vec<&str> = missing.iter().map(|m| m.what.as_str()).collect();
    format!(
        "recipe {recipe} cannot be built: {}; install with `apt-get install {}`",
        what.join("; "),
        packages.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageManifest {
        ImageManifest {
            name: "tiny".into(),
            arch: "x86_64".into(),
            kernel: Some("vmlinux".into()),
            initrd: Some("initramfs.cpio".into()),
            user: "root".into(),
            shell: "sh".into(),
            work_dir: "/work".into(),
            ..ImageManifest::default()
        }
    }

    #[test]
    fn manifest_round_trips_and_omits_empty_fields() {
        let mut m = tiny();
        m.sha256.insert("vmlinux".into(), "ab".repeat(32));
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("disk"), "{json}");
        assert!(!json.contains("recipe_hash"), "{json}");
        assert!(!json.contains("facts"), "{json}");
        let back: ImageManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        m.facts = Some(ImageFacts {
            shells: vec!["sh".into()],
            tools: vec!["tar".into()],
            ..ImageFacts::default()
        });
        let json = serde_json::to_string(&m).unwrap();
        let back: ImageManifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn manifest_tolerates_unknown_fields_and_old_manifests() {
        let json = r#"{"name":"x","arch":"x86_64","disk":"d.qcow2","user":"u","shell":"bash",
            "work_dir":"/w","future_field":1}"#;
        let m: ImageManifest = serde_json::from_str(json).unwrap();
        assert!(m.sha256.is_empty());
        assert_eq!(m.facts, None, "a manifest from before facts has none");
        assert_eq!(m.disk.as_deref(), Some("d.qcow2"));
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_escaping_paths_and_missing_boot_files() {
        let mut m = tiny();
        m.kernel = Some("../etc/passwd".into());
        assert!(m.validate().unwrap_err().contains("../etc/passwd"));
        let mut m = tiny();
        m.sha256.insert("/abs".into(), String::new());
        assert!(m.validate().is_err());
        let mut m = tiny();
        m.kernel = None;
        assert!(m.validate().is_err());
        let mut m = tiny();
        m.work_dir = "work".into();
        assert!(m.validate().is_err());
        let mut m = tiny();
        m.facts = Some(ImageFacts {
            node: vec![NodeRuntime {
                version: "20.0.0".into(),
                path: "node".into(),
            }],
            ..ImageFacts::default()
        });
        assert!(m.validate().is_err());
    }

    #[test]
    fn missing_prerequisites_name_each_package_once() {
        let err = ImageError::MissingPrerequisites {
            recipe: "tiny".into(),
            missing: vec![
                Missing {
                    package: "dropbear-bin".into(),
                    what: "command `dropbear` not found".into(),
                },
                Missing {
                    package: "dropbear-bin".into(),
                    what: "command `dropbearkey` not found".into(),
                },
                Missing {
                    package: "busybox-static".into(),
                    what: "command `busybox` not found".into(),
                },
            ],
        };
        let text = err.to_string();
        assert!(
            text.ends_with("install with `apt-get install busybox-static dropbear-bin`"),
            "{text}"
        );
        assert!(text.contains("command `dropbearkey` not found"), "{text}");
    }
}
