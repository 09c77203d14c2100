//! Test helper: a minimal `tiny` image directory (a manifest and a file standing in for the
//! kernel) for executors whose hypervisor never boots it, and a two-step workflow for it.

#![allow(dead_code)]

use std::path::Path;

/// A workflow whose job runs on `[self-hosted, tiny]` with two `run:` steps.
pub const TWO_STEPS: &str = r#"
name: fleet
on: push
jobs:
  build:
    runs-on: [self-hosted, tiny]
    steps:
      - run: echo one
      - run: echo two
"#;

/// Writes the image into `dir`; returns its `--image` spec, `tiny=<dir>`.
pub fn fake_image(dir: &Path) -> String {
    std::fs::write(dir.join("vmlinuz"), b"not a kernel").unwrap();
    let manifest = serde_json::json!({
        "name": "tiny", "arch": "x86_64", "kernel": "vmlinuz",
        "user": "root", "shell": "sh", "work_dir": "/work"
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    format!("tiny={}", dir.display())
}
