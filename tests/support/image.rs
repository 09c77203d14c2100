//! Test helper: the `tiny` runner image, built once into `target/test-images/tiny` and rebuilt
//! only when the recipe changes (its content hash is recorded in the manifest). Safe under
//! concurrent test processes: builders serialise on a file lock.
//!
//! Part of [`super`] (`mod support;` then `support::image::...`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ghrunner_vm::image::{BuildOptions, Image, ProgressKind, Recipe};
use nix::fcntl::{Flock, FlockArg};

/// The accelerator for VMs the tests start: `GHRUNNER_VM_ACCEL`, else `tcg` (a broken nested
/// KVM hangs guests; see tests/run-all.sh).
pub fn accel() -> String {
    std::env::var("GHRUNNER_VM_ACCEL").unwrap_or_else(|_| "tcg".into())
}

/// `target/test-images`: next to cargo's per-target temporary directory (which cargo names
/// for tests; the benchmarks under `examples/` fall back to `<package>/target/tmp`).
pub fn test_images_dir() -> PathBuf {
    let tmp = Path::new(
        option_env!("CARGO_TARGET_TMPDIR")
            .unwrap_or(concat!(env!("CARGO_MANIFEST_DIR"), "/target/tmp")),
    );
    tmp.parent().unwrap_or(tmp).join("test-images")
}

/// The tiny image directory, built if needed. Panics with the builder's message (which names
/// any missing Debian packages) if it cannot be built.
pub fn tiny_image() -> PathBuf {
    static TINY: OnceLock<PathBuf> = OnceLock::new();
    TINY.get_or_init(|| build_cached("tiny")).clone()
}

fn build_cached(name: &str) -> PathBuf {
    let recipe = Recipe::builtin(name).unwrap_or_else(|| panic!("no built-in recipe {name}"));
    let root = test_images_dir();
    std::fs::create_dir_all(&root)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.display()));
    let lock_path = root.join(format!("{name}.lock"));
    let lock_file = std::fs::File::create(&lock_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", lock_path.display()));

    let out = root.join(name);
    let wanted = recipe.content_hash();
    if let Ok(image) = Image::load(&out)
        && image.manifest.recipe_hash.as_deref() == Some(wanted.as_str())
    {
        return out;
    }
    eprintln!("building the {name} test image into {}", out.display());
    let opts = BuildOptions {
        out: out.clone(),
        ..BuildOptions::default()
    };
    let result = ghrunner_vm::image::build(&recipe, &opts, &mut |p| {
        let marker = if p.kind == ProgressKind::Step {
            "==> "
        } else {
            ""
        };
        eprintln!("[{:>5.1}s] {marker}{}", p.elapsed.as_secs_f64(), p.text);
    });
    if let Err(err) = result {
        panic!(
            "cannot build the {name} test image: {}",
            ghrunner_vm::errors::error_chain(&err)
        );
    }
    out
}
