use std::os::unix::fs::PermissionsExt as _;

use super::host::configured_accel;
use super::*;
use crate::vm::qemu::accel::AccelMode;

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
}

#[test]
fn credentials_readable_by_others_fail_with_a_chmod_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let reg = dir.path().join("runners").join("r1");
    std::fs::create_dir_all(&reg).unwrap();
    std::fs::write(reg.join(".credentials"), "{}").unwrap();
    std::fs::set_permissions(
        reg.join(".credentials"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(reg.join(".runner"), "{}").unwrap();
    std::fs::set_permissions(reg.join(".runner"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let checks = permission_checks(dir.path());
    let creds = find(&checks, "r1/.credentials");
    assert_eq!(creds.status, Status::Fail);
    assert!(creds.fix.as_deref().unwrap().starts_with("chmod 600 "));
    assert_eq!(find(&checks, "r1/.runner").status, Status::Ok);
    assert_eq!(checks[0].status, Status::Warn, "0755 runner dir");
}

#[test]
fn images_are_listed_from_the_images_dir_and_broken_ones_fail() {
    let dir = tempfile::tempdir().unwrap();
    let none = &image_checks(dir.path())[0];
    assert_eq!(none.status, Status::Warn, "no images yet is not a failure");
    assert!(
        none.fix
            .as_deref()
            .unwrap()
            .contains("image build tiny --out "),
        "{none:?}"
    );
    let broken = dir.path().join("images/broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("manifest.json"), "{not json").unwrap();
    let checks = image_checks(dir.path());
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0].status, Status::Fail);
    assert!(checks[0].name.ends_with("images/broken"));
}

#[test]
fn configured_accel_reads_vm_accel_and_rejects_junk() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(configured_accel(dir.path()), Ok(AccelMode::Auto));
    std::fs::write(dir.path().join("config.yaml"), "vm:\n  accel: tcg\n").unwrap();
    assert_eq!(configured_accel(dir.path()), Ok(AccelMode::Tcg));
    std::fs::write(dir.path().join("config.yaml"), "vm:\n  accel: hvf\n").unwrap();
    assert!(configured_accel(dir.path()).is_err());
}

#[test]
fn report_counts_problems_and_shows_fixes() {
    let checks = vec![
        Check::new(
            "qemu-img",
            Status::Fail,
            "cannot run it",
            Some("apt-get install qemu-utils".into()),
        ),
        Check::new("/dev/kvm", Status::Ok, "present", None),
    ];
    let out = render(&checks);
    assert!(
        out.contains("[FAIL] qemu-img: cannot run it\n       fix: apt-get install qemu-utils\n")
    );
    assert!(out.ends_with("1 problem(s), 0 warning(s)\n"));
}
