//! Which VM image a registration's jobs boot: the catalog of images by label from
//! `config.yaml` and the rule that picks one for the runner's labels.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Images by label, as configured in `<dir>/config.yaml`.
#[derive(Debug, Clone, Default)]
pub struct ImageCatalog {
    /// Image directory per label (`images:`).
    pub images: BTreeMap<String, PathBuf>,
    /// Label used when the runner's labels name no image (`default_image:`).
    pub default_image: Option<String>,
    /// The settings file, named in error messages.
    pub config_path: PathBuf,
}

/// Why no image could be chosen for a runner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageChoiceError {
    /// None of the runner's labels names an image and there is no default.
    #[error(
        "no VM image for this runner: none of its labels ({labels}) is a key of `images:` in {} \
         and `default_image:` is not set; add `images: {{LABEL: IMAGE_DIR}}` for one of the \
         labels (or re-register with `--image LABEL=IMAGE_DIR`), or set `default_image:`",
        config.display()
    )]
    NoImage {
        /// The runner's labels, comma separated.
        labels: String,
        /// The settings file.
        config: PathBuf,
    },
    /// Several of the runner's labels name images and there is no default to break the tie.
    #[error(
        "the runner's labels name several VM images ({matches}) in {}; keep one image label \
         per registration or set `default_image:`",
        config.display()
    )]
    Ambiguous {
        /// The matching labels, comma separated.
        matches: String,
        /// The settings file.
        config: PathBuf,
    },
}

/// Picks the image of a registration: its labels ∩ the catalog must give exactly one label
/// (labels compare case-insensitively, as GitHub's do), else the default image.
pub fn choose_image<'a>(
    labels: &[String],
    catalog: &'a ImageCatalog,
) -> Result<(&'a str, &'a Path), ImageChoiceError> {
    let matches: Vec<(&String, &PathBuf)> = catalog
        .images
        .iter()
        .filter(|(label, _)| labels.iter().any(|l| l.eq_ignore_ascii_case(label)))
        .collect();
    if let [(label, dir)] = matches.as_slice() {
        return Ok((label.as_str(), dir.as_path()));
    }
    if let Some((label, dir)) = catalog
        .default_image
        .as_ref()
        .and_then(|d| catalog.images.get_key_value(d))
    {
        return Ok((label.as_str(), dir.as_path()));
    }
    let config = catalog.config_path.clone();
    if matches.is_empty() {
        Err(ImageChoiceError::NoImage {
            labels: labels.join(", "),
            config,
        })
    } else {
        let names: Vec<&str> = matches.iter().map(|(l, _)| l.as_str()).collect();
        Err(ImageChoiceError::Ambiguous {
            matches: names.join(", "),
            config,
        })
    }
}
