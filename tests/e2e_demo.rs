//! The README's demo end to end: `ghrunner-vm demo` registers a runner with the embedded local
//! service over HTTP, serves the demo workflow's job through the real protocol (encrypted
//! session, long poll, timeline and logs), runs it in a real QEMU VM from the tiny image, and
//! prints what the service received. Needs qemu-system-x86_64 and the tiny image's packages:
//! fails naming them when missing.

mod support;

use std::process::Command;

/// The secret the demo passes to the job (see src/cli/demo.rs).
const DEMO_SECRET: &str = "demo-s3cr3t-value";

#[test]
fn demo_runs_the_hello_workflow_in_a_vm_through_the_protocol() {
    let image = support::image::tiny_image();
    let work = tempfile::tempdir().expect("temp dir");
    let before = demo_dirs();
    let output = Command::new(env!("CARGO_BIN_EXE_ghrunner-vm"))
        .args(["--dir"])
        .arg(work.path())
        .args(["demo", "--image-dir"])
        .arg(&image)
        .env("GHRUNNER_VM_ACCEL", support::image::accel())
        .output()
        .expect("ghrunner-vm runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");

    // Per-step results as the service recorded them.
    for step in [
        "─── Greet from the guest [succeeded]",
        "─── Compute an answer [succeeded]",
        "─── Use the secret [succeeded]",
        "─── Only on failure [skipped]",
    ] {
        assert!(stdout.contains(step), "missing {step:?} in:\n{stdout}");
    }
    assert!(stdout.contains("Hello, world from Linux"), "{stdout}");
    assert!(
        stdout.contains("stage is computed, answer is 42"),
        "{stdout}"
    );
    // The job output, evaluated at the end and sent with the completion.
    assert!(
        stdout.contains("\"answer\""),
        "job outputs missing: {stdout}"
    );
    assert!(stdout.contains("42"), "{stdout}");
    // Masking: the secret never reaches the service, `***` does.
    assert!(
        stdout.contains("the secret is *** (masked in the log)"),
        "{stdout}"
    );
    assert!(!stdout.contains(DEMO_SECRET) && !stderr.contains(DEMO_SECRET));
    assert!(stdout.contains("job result: succeeded"), "{stdout}");

    // Nothing left behind: the demo's runner dir (with its vms/) is gone, no qemu of a demo runs.
    let leftovers: Vec<_> = demo_dirs().difference(&before).cloned().collect();
    assert!(
        leftovers.is_empty(),
        "demo runner dir left behind: {leftovers:?}"
    );
    let ps = Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .expect("ps");
    let qemus: Vec<String> = String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains("qemu-system") && l.contains("ghrunner-vm-demo-"))
        .map(str::to_owned)
        .collect();
    assert!(qemus.is_empty(), "qemu processes left: {qemus:?}");
}

/// The demo's runner directories currently in the system temp dir.
fn demo_dirs() -> std::collections::BTreeSet<String> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("read temp dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ghrunner-vm-demo-"))
        .collect()
}
