//! Image recipes: a directory with an executable `build.sh` and the files it needs.
//!
//! The recipes of `runner-images/` are embedded in the binary (`include_str!`), so an installed
//! `ghrunner-vm` builds them without the source tree. A recipe on disk (a path) is read into
//! memory the same way, so both are hashed and run identically.
//!
//! `build.sh` protocol (see runner-images/README.md):
//! - `build.sh check`: one `MISSING <debian-package> <what>` line per missing prerequisite on
//!   stdout, exit 2 if anything is missing, 0 otherwise.
//! - `build.sh build <dir>`: build the image files into the empty directory `<dir>` and write
//!   `<dir>/manifest.json` (checksums are added afterwards). Progress lines start with `==> `.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// The script every recipe has.
pub const BUILD_SCRIPT: &str = "build.sh";

/// Largest recipe directory read from disk (all files together); recipes are scripts and small
/// configuration files, not image payloads.
pub const MAX_RECIPE_BYTES: u64 = 16 * 1024 * 1024;

/// The built-in recipes: name and files (path relative to the recipe directory, contents).
const BUILTIN: &[(&str, &[(&str, &str)])] = &[
    (
        "tiny",
        &[
            (
                "build.sh",
                include_str!("../../runner-images/tiny/build.sh"),
            ),
            ("init", include_str!("../../runner-images/tiny/init")),
            ("facts.sh", include_str!("../../runner-images/lib/facts.sh")),
            (
                "udhcpc.script",
                include_str!("../../runner-images/tiny/udhcpc.script"),
            ),
        ],
    ),
    (
        "debian",
        &[
            (
                "build.sh",
                include_str!("../../runner-images/debian/build.sh"),
            ),
            ("facts.sh", include_str!("../../runner-images/lib/facts.sh")),
            (
                "ghrunner-guest.service",
                include_str!("../../runner-images/debian/ghrunner-guest.service"),
            ),
            (
                "ghrunner-guest.sh",
                include_str!("../../runner-images/debian/ghrunner-guest.sh"),
            ),
        ],
    ),
];

/// A recipe held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// Recipe name (the built-in name, or the directory's name); also the default image name.
    pub name: String,
    /// Files, sorted by relative path.
    files: Vec<(String, Vec<u8>)>,
}

impl Recipe {
    /// Names of the built-in recipes.
    pub fn builtin_names() -> impl Iterator<Item = &'static str> {
        BUILTIN.iter().map(|(name, _)| *name)
    }

    /// A built-in recipe by name.
    pub fn builtin(name: &str) -> Option<Recipe> {
        let (name, files) = BUILTIN.iter().find(|(n, _)| *n == name)?;
        Recipe::new(
            name,
            files
                .iter()
                .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
                .collect(),
        )
        .ok()
    }

    /// `tiny`/`debian`, or a path to a recipe directory (anything with a `/`, or an existing
    /// directory).
    pub fn resolve(arg: &str) -> Result<Recipe, ImageError> {
        let path = Path::new(arg);
        if arg.contains('/') || path.is_dir() {
            return Recipe::from_dir(path);
        }
        Recipe::builtin(arg).ok_or_else(|| ImageError::UnknownRecipe {
            name: arg.to_string(),
            available: Recipe::builtin_names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Reads a recipe directory (recursively; symlinks are not followed).
    pub fn from_dir(dir: &Path) -> Result<Recipe, ImageError> {
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "recipe".into());
        let mut files = Vec::new();
        let mut total = 0;
        read_tree(dir, dir, &mut files, &mut total)?;
        Recipe::new(&name, files).map_err(|reason| ImageError::InvalidRecipe {
            dir: dir.to_path_buf(),
            reason,
        })
    }

    fn new(name: &str, mut files: Vec<(String, Vec<u8>)>) -> Result<Recipe, String> {
        files.sort();
        if !files.iter().any(|(path, _)| path == BUILD_SCRIPT) {
            return Err(format!("it has no {BUILD_SCRIPT}"));
        }
        Ok(Recipe {
            name: name.to_string(),
            files,
        })
    }

    /// The recipe's files, sorted by relative path.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.files.iter().map(|(p, c)| (p.as_str(), c.as_slice()))
    }

    /// `sha256:<hex>` over every file's path and contents: changes whenever the recipe does.
    pub fn content_hash(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, contents) in &self.files {
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path.as_bytes());
            hasher.update((contents.len() as u64).to_le_bytes());
            hasher.update(contents);
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    }

    /// Writes the recipe into `dir` (which must exist); scripts (`#!`) are made executable.
    pub fn materialize(&self, dir: &Path) -> Result<PathBuf, ImageError> {
        for (rel, contents) in &self.files {
            let path = dir.join(rel);
            let io = |action| {
                let path = path.clone();
                move |source| ImageError::Io {
                    action,
                    path,
                    source,
                }
            };
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("creating"))?;
            }
            std::fs::write(&path, contents).map_err(io("writing"))?;
            let mode = if contents.starts_with(b"#!") {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(io("setting the mode of"))?;
        }
        Ok(dir.join(BUILD_SCRIPT))
    }
}

fn read_tree(
    root: &Path,
    dir: &Path,
    files: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), ImageError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    };
    for entry in std::fs::read_dir(dir).map_err(io("reading directory", dir))? {
        let entry = entry.map_err(io("reading directory", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("inspecting", &path))?;
        if kind.is_dir() {
            read_tree(root, &path, files, total)?;
        } else if kind.is_file() {
            let contents = std::fs::read(&path).map_err(io("reading", &path))?;
            *total += contents.len() as u64;
            if *total > MAX_RECIPE_BYTES {
                return Err(ImageError::InvalidRecipe {
                    dir: root.to_path_buf(),
                    reason: format!("its files exceed {MAX_RECIPE_BYTES} bytes"),
                });
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            files.push((rel, contents));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_have_a_build_script() {
        for name in Recipe::builtin_names() {
            let recipe = Recipe::builtin(name).unwrap();
            assert!(
                recipe
                    .files()
                    .any(|(p, c)| p == BUILD_SCRIPT && c.starts_with(b"#!"))
            );
        }
        assert!(Recipe::builtin("nope").is_none());
    }

    #[test]
    fn resolve_names_the_available_recipes() {
        let err = Recipe::resolve("nope").unwrap_err().to_string();
        assert!(err.contains("tiny, debian"), "{err}");
    }

    #[test]
    fn content_hash_changes_with_any_file() {
        let a = Recipe::new("r", vec![("build.sh".into(), b"#!/bin/sh\n".to_vec())]).unwrap();
        let b = Recipe::new(
            "r",
            vec![
                ("build.sh".into(), b"#!/bin/sh\n".to_vec()),
                ("x".into(), Vec::new()),
            ],
        )
        .unwrap();
        let c = Recipe::new("r", vec![("build.sh".into(), b"#!/bin/bash\n".to_vec())]).unwrap();
        assert_ne!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_eq!(a.content_hash(), a.clone().content_hash());
        assert!(a.content_hash().starts_with("sha256:"));
    }

    #[test]
    fn from_dir_round_trips_through_materialize() {
        let tiny = Recipe::builtin("tiny").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let script = tiny.materialize(dir.path()).unwrap();
        let mode = std::fs::metadata(&script).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111);
        let read = Recipe::from_dir(dir.path()).unwrap();
        assert_eq!(read.content_hash(), tiny.content_hash());
    }

    #[test]
    fn from_dir_requires_a_build_script() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("other"), "x").unwrap();
        let err = Recipe::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no build.sh"), "{err}");
    }
}
