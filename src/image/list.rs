//! Listing images: the directories under `<runner dir>/images/` plus the ones registered to
//! labels in the runner's settings, each with its manifest or the reason it is unusable.

use crate::errors::error_chain;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Image, ImageManifest};

/// One image directory as `image list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedImage {
    /// The image directory.
    pub dir: PathBuf,
    /// Labels registered to this directory (sorted).
    pub labels: Vec<String>,
    /// The manifest, if the directory is a usable image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ImageManifest>,
    /// Why the image is not usable, if it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lists the subdirectories of `images_dir` (hidden ones, e.g. staging directories, skipped)
/// and every directory of `labels` (label → image directory), merged by directory and sorted.
/// A missing `images_dir` lists only the labelled images.
pub fn list(images_dir: &Path, labels: &BTreeMap<String, PathBuf>) -> Vec<ListedImage> {
    let mut by_dir: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(images_dir) {
        for entry in entries.flatten() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.path().is_dir() {
                by_dir.entry(entry.path()).or_default();
            }
        }
    }
    for (label, dir) in labels {
        by_dir.entry(dir.clone()).or_default().push(label.clone());
    }
    by_dir
        .into_iter()
        .map(|(dir, mut labels)| {
            labels.sort();
            let (manifest, error) = match Image::load(&dir) {
                Ok(image) => (Some(image.manifest), None),
                Err(e) => (None, Some(error_chain(&e))),
            };
            ListedImage {
                dir,
                labels,
                manifest,
                error,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("vmlinux"), "k").unwrap();
        std::fs::write(
            dir.join("manifest.json"),
            r#"{"name":"tiny","arch":"x86_64","kernel":"vmlinux","user":"root","shell":"sh",
                "work_dir":"/work"}"#,
        )
        .unwrap();
    }

    #[test]
    fn lists_installed_and_labelled_images_with_errors() {
        let root = tempfile::tempdir().unwrap();
        let images = root.path().join("images");
        write_image(&images.join("tiny"));
        std::fs::create_dir_all(images.join("broken")).unwrap();
        std::fs::create_dir_all(images.join(".tiny.partial-x")).unwrap();
        let elsewhere = root.path().join("elsewhere");
        let labels = BTreeMap::from([
            ("small".to_string(), images.join("tiny")),
            ("gone".to_string(), elsewhere.clone()),
        ]);
        let listed = list(&images, &labels);
        let dirs: Vec<_> = listed.iter().map(|l| l.dir.clone()).collect();
        assert_eq!(
            dirs,
            vec![elsewhere, images.join("broken"), images.join("tiny")]
        );
        assert_eq!(listed[0].labels, vec!["gone"]);
        assert!(listed[0].error.as_deref().unwrap().contains("No such file"));
        assert!(listed[1].error.is_some());
        assert_eq!(listed[2].labels, vec!["small"]);
        assert_eq!(listed[2].manifest.as_ref().unwrap().name, "tiny");
    }
}
