//! Test and benchmark helper: an image variant whose VMs get a qcow2 overlay. Independent of
//! cargo's test-only environment, so examples can include it too.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ghrunner_vm::image::Image;

/// A copy of `image` (its files symlinked) in `dir` whose manifest adds a blank 16 MiB
/// `template.qcow2` disk, so every VM of it gets a qcow2 overlay.
pub fn with_blank_disk(image: &Path, dir: &Path) -> PathBuf {
    let image = &image.canonicalize().expect("the image directory exists");
    for entry in std::fs::read_dir(image).expect("image dir").flatten() {
        let name = entry.file_name();
        if name != "manifest.json" {
            std::os::unix::fs::symlink(entry.path(), dir.join(&name)).expect("symlink");
        }
    }
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(dir.join("template.qcow2"))
        .arg("16M")
        .status()
        .expect("qemu-img (Debian package qemu-utils) runs");
    assert!(status.success(), "qemu-img create failed");
    let mut image = Image::load(image).expect("image loads");
    image.manifest.disk = Some("template.qcow2".into());
    let manifest = serde_json::to_string_pretty(&image.manifest).expect("manifest serialises");
    std::fs::write(dir.join("manifest.json"), manifest).expect("write manifest");
    dir.to_owned()
}
