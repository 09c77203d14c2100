//! The real action tarballs of `../shared/conformance/actions/` (its `SOURCE` file says where
//! each comes from): found through `GHRUNNER_VM_ACTIONS_DIR`, by default
//! `<crate>/../shared/conformance/actions`, and never copied into the repository. A missing
//! directory or tarball fails the test, naming the variable.

use std::path::{Path, PathBuf};

/// The variable naming the directory of action tarballs.
pub const ACTIONS_DIR_ENV: &str = "GHRUNNER_VM_ACTIONS_DIR";

/// `actions/checkout` at v4.4.0.
pub const CHECKOUT_V4: &str = "actions-checkout-v4.4.0.tar.gz";

/// `actions/hello-world-javascript-action` at its main branch (see `SOURCE`).
pub const HELLO_WORLD: &str = "actions-hello-world-javascript-action-main.tar.gz";

/// The directory of action tarballs.
pub fn actions_dir() -> PathBuf {
    let dir = match std::env::var_os(ACTIONS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/actions"),
    };
    assert!(
        dir.join("SOURCE").is_file(),
        "the action tarballs are not at {}: set ${ACTIONS_DIR_ENV} to the directory holding \
         {CHECKOUT_V4} and {HELLO_WORLD} (../shared/conformance/actions)",
        dir.display()
    );
    dir
}

/// The path of the tarball `file` (e.g. [`CHECKOUT_V4`]).
pub fn tarball(file: &str) -> PathBuf {
    let path = actions_dir().join(file);
    assert!(
        path.is_file(),
        "{} is missing (from ${ACTIONS_DIR_ENV})",
        path.display()
    );
    path
}

/// Unpacks the gzipped tarball `file` into `into` and returns its one top-level directory
/// (GitHub's `owner-repo-<sha7>/`), i.e. the action's root.
pub fn unpack(file: &str, into: &Path) -> PathBuf {
    let path = tarball(file);
    let gz = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    tar::Archive::new(flate2::read::GzDecoder::new(gz))
        .unpack(into)
        .unwrap_or_else(|e| panic!("unpack {}: {e}", path.display()));
    let top: Vec<PathBuf> = std::fs::read_dir(into)
        .expect("read the unpacked tree")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    match top.as_slice() {
        [root] => root.clone(),
        other => panic!(
            "{} should hold exactly one top-level directory, found {other:?}",
            path.display()
        ),
    }
}
