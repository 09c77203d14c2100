//! Unit tests of the QEMU backend's host-side pieces: names, socket paths, version banners and
//! the VM's resources.

use std::path::Path;
use std::process::Command;

use super::reaper::{OwnerMarker, ProcessId, VMS_DIR};
use super::resources::{MAX_SOCKET_PATH, Resources, check_socket_paths, validate_name};
use super::*;

#[test]
fn socket_paths_beyond_sun_path_are_refused_up_front() {
    // The executor's VM names: `vm-<uuid>`.
    let vm = "vm-0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f";
    check_socket_paths(&Path::new("/var/lib/ghrunner-vm/vms").join(vm)).unwrap();
    let deep = Path::new("/tmp").join("d".repeat(60)).join("vms").join(vm);
    match check_socket_paths(&deep) {
        Err(VmError::SocketPathTooLong { path, len }) => {
            assert_eq!(len, path.as_os_str().len());
            assert!(len > MAX_SOCKET_PATH);
            assert!(path.starts_with(&deep));
        }
        other => panic!(
            "a {}-byte directory was accepted: {other:?}",
            deep.as_os_str().len()
        ),
    }
}

#[test]
fn qemu_versions_are_read_from_the_banner() {
    let banner = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18)\nCopyright";
    assert_eq!(parse_version(banner), Some((7, 2)));
    assert_eq!(
        parse_version("QEMU emulator version 10.0.2\n"),
        Some((10, 0))
    );
    assert_eq!(parse_version("garbage"), None);
}

#[test]
fn names_must_be_safe_directory_names() {
    for ok in [
        "vm-0a1b2c3d-0a1b-0a1b-0a1b-0a1b2c3d4e5f",
        "job-1",
        "a.b_c",
        "X9",
    ] {
        validate_name(ok).unwrap();
    }
    for bad in ["", ".hidden", "a/b", "..", "a b", "é", &"x".repeat(65)] {
        assert!(
            matches!(validate_name(bad), Err(VmError::InvalidName { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn resources_drop_kills_children_and_removes_the_directory() {
    let runner = tempfile::tempdir().unwrap();
    let dir = runner.path().join(VMS_DIR).join("t");
    let mut res = Resources::create(dir.clone()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let child = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = child.id();
    res.track(child).unwrap();
    assert_eq!(OwnerMarker::read(&dir).unwrap().processes[0].pid, pid);
    assert!(
        Resources::create(dir.clone()).is_err(),
        "a name in use is refused"
    );
    drop(res);
    assert!(!dir.exists());
    assert!(ProcessId::of(pid).is_none(), "killed and reaped");
}

#[tokio::test]
async fn a_snapshot_restore_is_refused_before_anything_is_created() {
    let runner = tempfile::tempdir().unwrap();
    let qemu = Qemu::new(QemuConfig::new(runner.path())).unwrap();
    let spec = crate::vm::VmSpec {
        name: "vm-1".into(),
        job: None,
        source: crate::vm::LaunchSource::RestoreSnapshot(crate::vm::SnapshotRef {
            dir: runner.path().join("snapshots/tiny"),
        }),
        image: crate::image::Image {
            dir: runner.path().join("images/tiny"),
            manifest: crate::image::ImageManifest::default(),
        },
        cpus: 1,
        memory_mib: 256,
        disk_gib: None,
        network: NetworkPolicy::None,
        boot_timeout: std::time::Duration::from_secs(1),
        console_log: None,
    };
    let Err(err) = qemu.launch(spec).await else {
        panic!("a snapshot restore was launched")
    };
    assert!(
        matches!(
            err,
            VmError::Unsupported {
                backend: "qemu",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the qemu backend cannot restore a VM from a snapshot yet (only cold boots)"
    );
    assert!(!runner.path().join(VMS_DIR).exists(), "nothing created");
}
