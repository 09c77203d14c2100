//! Benchmark of the QEMU backend: overlay creation, QEMU spawn → QMP ready, boot → SSH ready,
//! one SSH exec, and teardown; median, min and max of ITERATIONS runs.
//!
//! ```text
//! cargo run --release --example bench_vm -- <image dir> [--network user|none]
//! ```
//!
//! The accelerator follows `GHRUNNER_VM_ACCEL` (default here: `tcg`, as KVM hangs on the
//! machines of this project).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ghrunner_vm::image::Image;
use ghrunner_vm::vm::qemu::accel::AccelMode;
use ghrunner_vm::vm::qemu::{Qemu, QemuConfig, overlay};
use ghrunner_vm::vm::{
    GuestCommand, Hypervisor as _, LaunchSource, NetworkPolicy, Vm as _, VmSpec,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Runs per figure.
const ITERATIONS: usize = 10;
/// Boot timeout of each launch.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let image_dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: bench_vm <image dir> [--network user|none]"))?,
    );
    let network = match (args.next().as_deref(), args.next().as_deref()) {
        (Some("--network"), Some("none")) => NetworkPolicy::None,
        _ => NetworkPolicy::User,
    };
    let image = Image::load(&image_dir)?;
    describe_machine(&image, network);

    let work = tempfile::tempdir()?;
    let template = work.path().join("template.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&template)
        .arg("8G")
        .status()?;
    anyhow::ensure!(status.success(), "qemu-img create failed");
    let mut overlay_times = Vec::new();
    for i in 0..ITERATIONS {
        let path = work.path().join(format!("overlay-{i}.qcow2"));
        let t = Instant::now();
        overlay::create_overlay("qemu-img".as_ref(), &template, &path, None).await?;
        overlay_times.push(t.elapsed());
    }

    let mut config = QemuConfig::new(work.path().join("runner"));
    config.accel = AccelMode::Tcg;
    let qemu = Qemu::new(config)?;
    let (mut qmp, mut guest, mut ssh, mut total, mut exec, mut teardown) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for i in 0..ITERATIONS {
        let spec = VmSpec {
            name: format!("bench-{i}"),
            job: None,
            source: LaunchSource::ColdBoot,
            image: image.clone(),
            cpus: 1,
            memory_mib: 512,
            disk_gib: None,
            network,
            boot_timeout: BOOT_TIMEOUT,
            console_log: None,
        };
        let vm = qemu.launch(spec).await?;
        let t = vm.timings();
        qmp.push(t.network + t.qmp_ready);
        guest.push(t.guest_ready);
        ssh.push(t.ssh_ready);
        total.push(t.total);
        let (tx, mut rx) = mpsc::channel(8);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let started = Instant::now();
        let cmd = GuestCommand {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let outcome = vm.exec(cmd, tx, CancellationToken::new()).await?;
        anyhow::ensure!(outcome.exit_code == 0, "`true` failed in the guest");
        exec.push(started.elapsed());
        let started = Instant::now();
        vm.destroy().await?;
        teardown.push(started.elapsed());
        eprintln!(
            "run {}: launch {:.0} ms",
            i + 1,
            t.total.as_secs_f64() * 1e3
        );
    }

    println!(
        "\n{:<44} {:>9} {:>9} {:>9}",
        "phase (ms)", "median", "min", "max"
    );
    for (name, samples) in [
        (
            "overlay creation (qemu-img, 8G template)",
            &mut overlay_times,
        ),
        ("spawn (+passt) -> QMP ready", &mut qmp),
        ("QMP ready -> GHRUNNER-READY on console", &mut guest),
        ("GHRUNNER-READY -> SSH authenticated", &mut ssh),
        ("launch total (boot -> SSH ready)", &mut total),
        ("one exec of `true` over SSH", &mut exec),
        ("teardown (powerdown/quit/kill, rm)", &mut teardown),
    ] {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<44} {:>9.1} {:>9.1} {:>9.1}",
            ms(samples[samples.len() / 2]),
            ms(samples[0]),
            ms(samples[samples.len() - 1])
        );
    }
    Ok(())
}

fn describe_machine(image: &Image, network: NetworkPolicy) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']))
        })
        .unwrap_or("unknown cpu");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    println!("machine: {model}, {cores} cores; {qemu}");
    println!(
        "image: {} (kernel {}, initrd {}), accel tcg, 1 vCPU, 512 MiB, network {network:?}, \
         {ITERATIONS} runs",
        image.dir.display(),
        image.manifest.kernel.as_deref().unwrap_or("-"),
        image.manifest.initrd.as_deref().unwrap_or("-"),
    );
}
