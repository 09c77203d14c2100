//! The VM side of the agent: loads `<dir>/config.yaml`, creates the QEMU backend
//! (accelerator from the file, `GHRUNNER_VM_ACCEL` overrides), reaps VMs orphaned by a previous
//! agent, and serves `--metrics-addr`. [`HostRuntime::executor`] then gives each registration its
//! [`VmJobExecutor`], all sharing one VM budget and one set of metrics.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::client::http::HttpClient;
use crate::config::Settings;
use crate::config::settings::{Accel, Network};
use crate::job::executor::{HostRuntime, ServiceReports, VmJobExecutor};
use crate::metrics::Metrics;
use crate::vm::Hypervisor;
use crate::vm::egress::{Egress, EgressPolicy};
use crate::vm::guest_user::GuestUser;
use crate::vm::qemu::accel::AccelMode;
use crate::vm::qemu::reaper::reap_orphans;
use crate::vm::qemu::{Qemu, QemuConfig};

/// The executor of one registration.
pub type QemuExecutor = VmJobExecutor<Qemu, ServiceReports>;

/// The QEMU backend of `dir` (accelerator from its `settings`, `GHRUNNER_VM_ACCEL` overrides).
/// As root, QEMU and passt run as `vm.run_as` (created if missing) and the egress policy is
/// installed for that user; otherwise the policy is not in force and the runner says so.
pub async fn qemu_backend(
    dir: &Path,
    settings: &Settings,
    servers: &[url::Url],
) -> anyhow::Result<Qemu> {
    let mut config = QemuConfig::new(dir);
    config.accel = match settings.vm.accel {
        Accel::Auto => AccelMode::Auto,
        Accel::Kvm => AccelMode::Kvm,
        Accel::Tcg => AccelMode::Tcg,
    };
    let root = nix::unistd::geteuid().is_root();
    if root {
        let user = GuestUser::ensure(&settings.vm.run_as)
            .context("cannot set up the unprivileged user for QEMU and passt (vm.run_as)")?;
        tracing::info!(user = %user.name, uid = user.uid, "QEMU and passt run as an unprivileged user");
        config.run_as = Some(user);
    }
    let egress = egress(settings, config.run_as.as_ref(), servers).await?;
    config.egress = Some(Arc::new(egress));
    Qemu::new(config).context("cannot set up the QEMU backend")
}

/// The egress policy of `settings` for the guest user, installed if this process can.
async fn egress(
    settings: &Settings,
    user: Option<&GuestUser>,
    servers: &[url::Url],
) -> anyhow::Result<Egress> {
    if settings.vm.network == Network::None {
        return Ok(Egress::no_network());
    }
    let Some(user) = user else {
        return Ok(Egress::off(
            "the agent does not run as root",
            crate::vm::egress::NEEDS_ROOT,
        ));
    };
    let policy = EgressPolicy::build(
        user.uid,
        &settings.network.allow,
        servers,
        Path::new(crate::vm::egress::RESOLV_CONF),
    )
    .await
    .context("cannot build the egress policy (network.allow)")?;
    match Egress::enforce(&policy, &user.name, Path::new(crate::vm::egress::NFT)).await {
        Ok(egress) => Ok(egress),
        Err(e) => Ok(Egress::off(
            crate::errors::error_chain(&e),
            crate::vm::egress::NEEDS_NFT,
        )),
    }
}

/// The settings of `dir` (`config.yaml`).
pub fn load_settings(dir: &Path) -> anyhow::Result<Settings> {
    Settings::load(dir).with_context(|| format!("cannot load the settings of {}", dir.display()))
}

/// Reaps the VMs a previous agent left in `dir` and builds the runtime every registration
/// shares on `hypervisor`; its reporters send through `http` (bound to the version policy).
pub fn host_runtime<H: Hypervisor>(
    dir: &Path,
    settings: Settings,
    hypervisor: H,
    http: HttpClient,
) -> anyhow::Result<HostRuntime<H>> {
    let reaped = reap_orphans(dir).context("cannot reap VMs left by a previous agent")?;
    for name in &reaped {
        tracing::warn!(vm = %name, "reaped a VM left by a previous agent");
    }
    let runtime = HostRuntime::new(dir.to_owned(), settings, Arc::new(hypervisor), http);
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
