use std::os::unix::fs::{PermissionsExt, symlink};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::vm::{ExecOutcome, OutputChunk};

/// A tree with nested directories, modes and an in-tree symlink.
fn sample_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("dist/lib")).unwrap();
    std::fs::write(
        root.join("action.yml"),
        "runs: {using: node20, main: dist/index.js}\n",
    )
    .unwrap();
    std::fs::write(root.join("dist/index.js"), "console.log('hi')\n").unwrap();
    std::fs::write(root.join("dist/lib/run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(
        root.join("dist/lib/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(root.join("secret.txt"), "only me\n").unwrap();
    std::fs::set_permissions(
        root.join("secret.txt"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    symlink("dist/index.js", root.join("main.js")).unwrap();
    symlink("../index.js", root.join("dist/lib/up.js")).unwrap();
    dir
}

/// (path, kind, mode, contents or link target) of every entry.
fn entries(archive: &[u8]) -> Vec<(String, tar::EntryType, u32, String)> {
    let mut out = Vec::new();
    let mut reader = tar::Archive::new(archive);
    for entry in reader.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut text = String::new();
        if header.entry_type() == tar::EntryType::Symlink {
            text = entry
                .link_name()
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .into_owned();
        } else {
            std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        }
        assert_eq!(header.uid().unwrap(), 0, "{path}");
        assert_eq!(header.gid().unwrap(), 0, "{path}");
        out.push((path, header.entry_type(), header.mode().unwrap(), text));
    }
    out
}

#[test]
fn the_archive_holds_files_modes_directories_and_inner_symlinks_in_order() {
    let tree = sample_tree();
    let archive = archive_tree(tree.path(), COPY_TREE_MAX_BYTES).unwrap();
    let found = entries(&archive);
    let names: Vec<&str> = found.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "action.yml",
            "dist",
            "dist/index.js",
            "dist/lib",
            "dist/lib/run.sh",
            "dist/lib/up.js",
            "main.js",
            "secret.txt"
        ]
    );
    let get = |name: &str| found.iter().find(|e| e.0 == name).unwrap();
    assert_eq!(get("dist").1, tar::EntryType::Directory);
    assert_eq!(get("dist/lib/run.sh").2, 0o755);
    assert_eq!(get("secret.txt").2, 0o600);
    assert_eq!(get("dist/index.js").3, "console.log('hi')\n");
    assert_eq!(get("main.js").1, tar::EntryType::Symlink);
    assert_eq!(get("main.js").3, "dist/index.js");
    assert_eq!(get("dist/lib/up.js").3, "../index.js");
    assert_eq!(
        archive,
        archive_tree(tree.path(), COPY_TREE_MAX_BYTES).unwrap(),
        "the same tree gives the same archive"
    );
}

#[test]
fn symlinks_leaving_the_tree_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("abs", "/etc/passwd"),
        ("up", "../outside"),
        ("deep", "dist/../../outside"),
        // `here` points at the root itself (allowed); going up from it leaves the tree.
        ("via-link", "here/.."),
        ("loop", "loop"),
    ];
    for (name, target) in cases {
        let tree = sample_tree();
        symlink(".", tree.path().join("here")).unwrap();
        symlink(target, tree.path().join(name)).unwrap();
        let err = archive_tree(tree.path(), COPY_TREE_MAX_BYTES).unwrap_err();
        match &err {
            VmError::UncopyableTree { path, reason } => {
                assert_eq!(path, &tree.path().join(name), "{name}");
                assert!(reason.contains("outside the directory"), "{name}: {reason}");
            }
            other => panic!("{name}: {other}"),
        }
    }
    let tree = sample_tree();
    symlink(".", tree.path().join("here")).unwrap();
    symlink("here/dist/./index.js", tree.path().join("ok")).unwrap();
    archive_tree(tree.path(), COPY_TREE_MAX_BYTES).expect("a link through an inner link");
}

#[test]
fn special_files_and_oversized_trees_are_refused() {
    let tree = sample_tree();
    nix::unistd::mkfifo(
        &tree.path().join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let err = archive_tree(tree.path(), COPY_TREE_MAX_BYTES).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");

    let tree = sample_tree();
    std::fs::write(tree.path().join("big"), vec![7u8; 64 * 1024]).unwrap();
    let err = archive_tree(tree.path(), 32 * 1024).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = archive_tree(file.path(), COPY_TREE_MAX_BYTES).unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
}

/// A "guest" that runs every command on the host, counting them.
#[derive(Default)]
struct HostShell {
    execs: AtomicUsize,
}

impl Vm for HostShell {
    fn id(&self) -> &str {
        "host-shell"
    }

    async fn exec(
        &self,
        cmd: GuestCommand,
        output: mpsc::Sender<OutputChunk>,
        _cancel: CancellationToken,
    ) -> Result<ExecOutcome, VmError> {
        use std::io::Write as _;
        self.execs.fetch_add(1, Ordering::SeqCst);
        let mut child = std::process::Command::new(&cmd.argv[0])
            .args(&cmd.argv[1..])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&cmd.stdin.unwrap_or_default()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let _ = output.send(OutputChunk::Stderr(out.stderr)).await;
        Ok(ExecOutcome {
            exit_code: out.status.code().unwrap_or(1),
            cancelled: false,
        })
    }

    async fn upload(&self, _: &str, _: Vec<u8>, _: u32) -> Result<(), VmError> {
        unreachable!("copy_tree uploads nothing")
    }

    async fn download(&self, _: &str) -> Result<Vec<u8>, VmError> {
        unreachable!("copy_tree downloads nothing")
    }

    async fn destroy(self) -> Result<(), VmError> {
        Ok(())
    }
}

#[tokio::test]
async fn copy_tree_unpacks_the_tree_in_the_guest_with_one_exec() {
    let tree = sample_tree();
    let guest = tempfile::tempdir().unwrap();
    let target = guest.path().join("_actions/owner/repo/v1");
    let vm = HostShell::default();
    vm.copy_tree(tree.path(), target.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(
        vm.execs.load(Ordering::SeqCst),
        1,
        "one exec for the whole tree"
    );
    let mode = |p: &str| {
        std::fs::metadata(target.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        std::fs::read_to_string(target.join("dist/lib/run.sh")).unwrap(),
        "#!/bin/sh\necho run\n"
    );
    assert_eq!(mode("dist/lib/run.sh"), 0o755);
    assert_eq!(mode("secret.txt"), 0o600);
    assert_eq!(
        std::fs::read_link(target.join("main.js")).unwrap(),
        Path::new("dist/index.js")
    );
    assert_eq!(
        std::fs::read_to_string(target.join("dist/lib/up.js")).unwrap(),
        "console.log('hi')\n",
        "the inner symlink resolves in the guest"
    );

    // A refused tree runs nothing in the guest.
    symlink("/etc", tree.path().join("escape")).unwrap();
    let err = vm
        .copy_tree(tree.path(), target.to_str().unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, VmError::UncopyableTree { .. }), "{err}");
    assert_eq!(vm.execs.load(Ordering::SeqCst), 1);

    // A failing unpack names tar and what it said.
    let blocked = guest.path().join("file");
    std::fs::write(&blocked, "not a directory").unwrap();
    let clean = sample_tree();
    let err = vm
        .copy_tree(clean.path(), blocked.join("sub").to_str().unwrap())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("tar failed: unpacking into"), "{text}");
}
