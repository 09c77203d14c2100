//! Which VM image a job boots: the catalog of images by label from `config.yaml` and the one
//! rule that picks and loads an image for a set of labels ([`select_image`]): the
//! registration's labels when the runner serves GitHub, a job's `runs-on` labels when there is
//! no registration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::image::{Image, ImageError};

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

/// Why no usable image could be selected ([`select_image`]).
#[derive(Debug, thiserror::Error)]
pub enum ImageSelectError {
    /// No label picks an image.
    #[error(transparent)]
    Choice(#[from] ImageChoiceError),
    /// The picked image directory cannot be loaded.
    #[error("the VM image {label:?} ({}) is not usable", dir.display())]
    Unusable {
        /// The label that picked it.
        label: String,
        /// The image directory.
        dir: PathBuf,
        /// Why it cannot be loaded.
        #[source]
        source: ImageError,
    },
}

/// An image picked for a set of labels, loaded.
#[derive(Debug, Clone)]
pub struct SelectedImage {
    /// The catalog label that picked it.
    pub label: String,
    /// The image.
    pub image: Image,
}

/// Picks the image for `labels` by the catalog's rule (`choose_image`) and loads it. Every
/// image choice goes through here.
pub fn select_image(
    labels: &[String],
    catalog: &ImageCatalog,
) -> Result<SelectedImage, ImageSelectError> {
    let (label, dir) = choose_image(labels, catalog)?;
    let image = Image::load(dir).map_err(|source| ImageSelectError::Unusable {
        label: label.to_owned(),
        dir: dir.to_owned(),
        source,
    })?;
    Ok(SelectedImage {
        label: label.to_owned(),
        image,
    })
}

/// The catalog's rule: `labels` ∩ the catalog must give exactly one label (labels compare
/// case-insensitively, as GitHub's do), else the default image.
pub(super) fn choose_image<'a>(
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
