//! The `tiny` recipe end to end: it builds (through the shared test helper), its manifest
//! checksums match the files, its initramfs holds what the guest contract needs, and a missing
//! prerequisite is reported with the package to install.

mod support;

use std::collections::BTreeMap;

use ghrunner_vm::image::{BuildOptions, Image, ImageError, Recipe, build};

/// One entry of a `newc` cpio archive.
struct CpioEntry {
    mode: u32,
    data: Vec<u8>,
}

/// Parses an uncompressed `newc` (070701) cpio archive into name → entry.
fn parse_newc(bytes: &[u8]) -> BTreeMap<String, CpioEntry> {
    fn field(header: &[u8], index: usize) -> usize {
        let start = 6 + index * 8;
        let text = std::str::from_utf8(&header[start..start + 8]).unwrap();
        usize::from_str_radix(text, 16).unwrap()
    }
    let align = |n: usize| (n + 3) & !3;
    let mut entries = BTreeMap::new();
    let mut pos = 0;
    loop {
        let header = &bytes[pos..pos + 110];
        assert_eq!(&header[..6], b"070701", "bad cpio magic at offset {pos}");
        let mode = field(header, 1) as u32;
        let size = field(header, 6);
        let name_size = field(header, 11);
        let name_start = pos + 110;
        let name = std::str::from_utf8(&bytes[name_start..name_start + name_size - 1])
            .unwrap()
            .to_string();
        let data_start = align(name_start + name_size);
        if name == "TRAILER!!!" {
            return entries;
        }
        let data = bytes[data_start..data_start + size].to_vec();
        entries.insert(
            name.trim_start_matches("./").to_string(),
            CpioEntry { mode, data },
        );
        pos = align(data_start + size);
    }
}

#[test]
fn tiny_image_has_a_valid_manifest_with_matching_checksums() {
    let dir = support::image::tiny_image();
    let image = Image::load(&dir).unwrap();
    let m = &image.manifest;
    assert_eq!(m.name, "tiny");
    assert_eq!((m.user.as_str(), m.shell.as_str()), ("root", "sh"));
    let facts = m
        .facts
        .as_ref()
        .expect("the build records the guest's facts");
    assert!(
        facts.has_shell("sh") && !facts.has_shell("bash"),
        "{facts:?}"
    );
    assert!(
        facts.has_tool("tar"),
        "busybox tar unpacks copied trees: {facts:?}"
    );
    assert!(facts.node.is_empty(), "{facts:?}");
    assert_eq!(
        m.recipe_hash,
        Some(Recipe::builtin("tiny").unwrap().content_hash())
    );
    let kernel = m.kernel.as_deref().unwrap();
    let initrd = m.initrd.as_deref().unwrap();
    assert!(
        m.sha256.contains_key(kernel) && m.sha256.contains_key(initrd),
        "{m:?}"
    );
    image.verify().unwrap();
    let head = std::fs::read(image.path(kernel)).unwrap()[..4].to_vec();
    if kernel == "vmlinux" {
        assert_eq!(
            head, b"\x7fELF",
            "vmlinux must be the uncompressed ELF kernel"
        );
    }
}

#[test]
fn tiny_initramfs_holds_the_guest_contract() {
    let dir = support::image::tiny_image();
    let image = Image::load(&dir).unwrap();
    let cpio = std::fs::read(image.path(image.manifest.initrd.as_deref().unwrap())).unwrap();
    let entries = parse_newc(&cpio);
    const S_IFMT: u32 = 0o170000;
    const S_IFREG: u32 = 0o100000;
    const S_IFLNK: u32 = 0o120000;
    for file in [
        "init",
        "bin/busybox",
        "bin/dropbear",
        "bin/dropbearkey",
        "etc/passwd",
    ] {
        let entry = entries
            .get(file)
            .unwrap_or_else(|| panic!("{file} is not in the initramfs"));
        assert_eq!(entry.mode & S_IFMT, S_IFREG, "{file} is not a regular file");
    }
    for exe in ["init", "bin/busybox", "bin/dropbear"] {
        assert_ne!(entries[exe].mode & 0o111, 0, "{exe} is not executable");
    }
    let init = String::from_utf8_lossy(&entries["init"].data);
    for needle in [
        "ghrunner.ssh_key=",
        "GHRUNNER-HOSTKEY",
        "GHRUNNER-READY",
        "udhcpc",
    ] {
        assert!(init.contains(needle), "/init does not mention {needle}");
    }
    let passwd = String::from_utf8_lossy(&entries["etc/passwd"].data);
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"),
        "{passwd}"
    );
    for applet in [
        "sh",
        "awk",
        "sed",
        "sha256sum",
        "base64",
        "timeout",
        "mktemp",
        "udhcpc",
    ] {
        let entry = entries
            .get(&format!("bin/{applet}"))
            .unwrap_or_else(|| panic!("applet {applet} is missing"));
        assert_eq!(
            entry.mode & S_IFMT,
            S_IFLNK,
            "bin/{applet} is not a symlink"
        );
        assert_eq!(entry.data, b"busybox");
    }
    assert!(
        entries
            .keys()
            .any(|k| k.starts_with("lib/modules/virtio_net")),
        "the virtio_net module is missing"
    );
}

#[test]
fn missing_kernel_is_reported_with_the_package_to_install() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("tiny");
    let opts = BuildOptions {
        out: out.clone(),
        env: vec![(
            "GHRUNNER_TINY_KERNEL".into(),
            "/nonexistent/vmlinuz-0.0".into(),
        )],
        ..BuildOptions::default()
    };
    let err = build(&Recipe::builtin("tiny").unwrap(), &opts, &mut |_| {}).unwrap_err();
    match &err {
        ImageError::MissingPrerequisites { missing, .. } => {
            assert!(
                missing.iter().any(|m| m.package == "linux-image-amd64"
                    && m.what.contains("/nonexistent/vmlinuz-0.0"))
            );
        }
        other => panic!("expected MissingPrerequisites, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("apt-get install linux-image-amd64"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "a failed build must not create the image directory"
    );
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "no staging directory left"
    );
}
