//! The VM side of `ghrunner-vm run`: loads `<dir>/config.yaml`, creates the QEMU backend
//! (accelerator from the file, `GHRUNNER_VM_ACCEL` overrides), reaps VMs orphaned by a previous
//! agent, and serves `--metrics-addr`. [`HostRuntime::executor`] then gives each registration its
//! [`VmJobExecutor`], all sharing one VM budget and one set of metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::client::http::HttpClient;
use crate::config::Settings;
use crate::config::settings::Accel;
use crate::job::executor::{HostRuntime, ServiceReports, VmJobExecutor};
use crate::metrics::Metrics;
use crate::vm::Hypervisor;
use crate::vm::qemu::accel::AccelMode;
use crate::vm::qemu::reaper::reap_orphans;
use crate::vm::qemu::{Qemu, QemuConfig};

/// The executor of one registration.
pub type QemuExecutor = VmJobExecutor<Qemu, ServiceReports>;

/// The QEMU backend of `dir` (accelerator from its `settings`, `GHRUNNER_VM_ACCEL` overrides).
pub fn qemu_backend(dir: &Path, settings: &Settings) -> anyhow::Result<Qemu> {
    let mut config = QemuConfig::new(dir);
    config.accel = match settings.vm.accel {
        Accel::Auto => AccelMode::Auto,
        Accel::Kvm => AccelMode::Kvm,
        Accel::Tcg => AccelMode::Tcg,
    };
    Qemu::new(config).context("cannot set up the QEMU backend")
}

/// The settings of `dir` (`config.yaml`).
pub fn load_settings(dir: &Path) -> anyhow::Result<Settings> {
    Settings::load(dir).with_context(|| format!("cannot load the settings of {}", dir.display()))
}

/// Reaps the VMs a previous agent left in `dir` and builds the runtime every registration
/// shares on `hypervisor`.
pub fn host_runtime<H: Hypervisor>(
    dir: &Path,
    settings: Settings,
    hypervisor: H,
) -> anyhow::Result<HostRuntime<H>> {
    let reaped = reap_orphans(dir).context("cannot reap VMs left by a previous agent")?;
    for name in &reaped {
        tracing::warn!(vm = %name, "reaped a VM left by a previous agent");
    }
    let http = HttpClient::new().context("cannot create the HTTP client")?;
    let runtime = HostRuntime::new(
        dir.to_owned(),
        settings,
        Arc::new(hypervisor),
        http.reqwest().clone(),
    );
    let (cpus, memory) = runtime.budget.limits();
    tracing::info!(
        max_vm_cpus = cpus,
        max_vm_memory_mib = memory,
        images = runtime.settings.images.len(),
        "VM runtime ready"
    );
    Ok(runtime)
}

/// Serves `metrics` on `addr` for the life of the process.
pub async fn serve_metrics(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<()> {
    let (bound, _task) = crate::metrics::serve(addr, metrics)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))?;
    tracing::info!(addr = %bound, "metrics endpoint listening");
    Ok(())
}
