//! The egress policy: what a guest may connect to.
//!
//! Owns: `network.allow` entries (parsing, resolving), the nftables table that enforces the
//! policy, installing and re-checking it, and saying whether it is in force. What the policy
//! is (entries, the rules, the nft script) lives in `policy`; installing it with `nft` and
//! keeping it installed, here.
//!
//! A guest is root on its own machine, so nothing inside it can be trusted to filter. Every
//! connection a guest makes is made on the host by passt, which runs as the unprivileged
//! [`super::guest_user`] (`vm.run_as`). The table `inet ghrunner_vm` matches that user's
//! sockets (`meta skuid`) in the output hook, so the guest can neither bypass nor change it:
//!
//! ```text
//!  guest ──virtio-net──► passt (uid ghrunner-vm-guest) ──connect()──► output hook
//!    skuid ≠ guest user ─────────────────────────────────────────► accept (not ours)
//!    reply of an accepted connection (the SSH forward included) ──► accept
//!    network.allow, the runner's own server, DNS to the host's resolvers ──► accept
//!    out through `lo` (every address of this host) ─────────────► reject
//!    private, carrier-grade, link-local, loopback, multicast, reserved ──► reject
//!    anything else (the public internet) ────────────────────────► accept
//! ```
//!
//! TCP is refused with a reset and everything else with ICMP "administratively prohibited",
//! so a guest sees "connection refused" at once instead of a timeout. The table is installed
//! when `run` starts and checked again before each VM (a firewall reload that flushed it is
//! repaired); when it cannot be (the agent is not root, `nft` is missing), the runner warns at
//! start and for every job, and `doctor` says what to do.

mod policy;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use policy::{AllowEntry, AllowTarget, Allowed, DENIED, EgressPolicy, resolvers};

/// The host's resolver configuration (its name servers are allowed on port 53).
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// The nftables program.
pub const NFT: &str = "nft";
/// What to do when the agent is not root.
pub const NEEDS_ROOT: &str = "run `ghrunner-vm run` as root: it then runs QEMU and passt as \
     vm.run_as and installs the nftables rules that refuse private addresses";
/// What to do when nftables cannot be used.
pub const NEEDS_NFT: &str = "install nftables (`apt-get install nftables`) on a kernel with \
     nf_tables, then restart the runner";

/// Name of the nftables table (family `inet`).
pub const TABLE: &str = "ghrunner_vm";

/// How long a successful check of the installed table is trusted.
const RECHECK_AFTER: Duration = Duration::from_secs(10);

/// Longest an `nft` call may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the egress policy.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// A `network.allow` entry is not a CIDR, an address, `host:port` or a host name.
    #[error(
        "network.allow entry {entry:?} is not a CIDR (10.1.0.0/16), an address, host:port \
         (ghes.internal:443, [fd00::1]:443) or a host name"
    )]
    InvalidAllow {
        /// The entry.
        entry: String,
    },
    /// A host name in `network.allow` did not resolve.
    #[error("network.allow entry {entry:?} does not resolve")]
    Resolve {
        /// The entry.
        entry: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` could not be run.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `nft` refused the table.
    #[error("nft refused the egress table: {stderr}")]
    Nft {
        /// What nft said.
        stderr: String,
    },
}

/// Whether the policy is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressState {
    /// The table is installed for the guest user.
    Enforced {
        /// The guest user.
        user: String,
        /// Destinations let through before the denials.
        allowed: usize,
    },
    /// Guests have no network (`vm.network: none`): nothing to filter.
    NoNetwork,
    /// Not in force: guests reach private networks and this host.
    Off {
        /// Why.
        reason: String,
        /// What to do about it.
        fix: String,
    },
}

impl std::fmt::Display for EgressState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressState::Enforced { user, allowed } => write!(
                f,
                "in force: connections of {user} to private, link-local and this host's \
                 addresses are refused ({allowed} allowed destinations)"
            ),
            EgressState::NoNetwork => write!(f, "guests have no network (vm.network: none)"),
            EgressState::Off { reason, fix } => write!(
                f,
                "NOT in force ({reason}): guests can reach private networks, cloud metadata \
                 and this host; {fix}"
            ),
        }
    }
}

/// The policy of a running agent: installed once, checked before each VM.
#[derive(Debug)]
pub struct Egress {
    state: EgressState,
    nft: PathBuf,
    script: String,
    checked: Mutex<Option<Instant>>,
}

impl Egress {
    /// A policy that is not in force (the runner warns for every VM).
    pub fn off(reason: impl Into<String>, fix: impl Into<String>) -> Egress {
        let state = EgressState::Off {
            reason: reason.into(),
            fix: fix.into(),
        };
        tracing::warn!("egress policy {state}");
        Egress::with_state(state)
    }

    /// Guests without network.
    pub fn no_network() -> Egress {
        Egress::with_state(EgressState::NoNetwork)
    }

    fn with_state(state: EgressState) -> Egress {
        Egress {
            state,
            nft: PathBuf::new(),
            script: String::new(),
            checked: Mutex::new(None),
        }
    }

    /// Installs `policy` for the user `user` with `nft`.
    pub async fn enforce(
        policy: &EgressPolicy,
        user: &str,
        nft: &Path,
    ) -> Result<Egress, EgressError> {
        let script = policy.render();
        run_nft(nft, &["-f", "-"], Some(&script)).await?;
        let egress = Egress {
            state: EgressState::Enforced {
                user: user.to_owned(),
                allowed: policy.allowed.len(),
            },
            nft: nft.to_owned(),
            script,
            checked: Mutex::new(Some(Instant::now())),
        };
        tracing::info!("egress policy {}", egress.state);
        Ok(egress)
    }

    /// The current state.
    pub fn state(&self) -> &EgressState {
        &self.state
    }

    /// Before a VM starts: an enforced table that disappeared (a firewall reload flushed it) is
    /// installed again; a policy that is not in force is warned about, naming the VM.
    pub async fn before_vm(&self, vm: &str) {
        match &self.state {
            EgressState::NoNetwork => {}
            EgressState::Off { reason, .. } => {
                tracing::warn!(vm, reason = %reason, "egress policy NOT in force for this job: the guest can reach private networks and this host");
            }
            EgressState::Enforced { .. } => {
                let fresh = self
                    .checked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|at| at.elapsed() < RECHECK_AFTER);
                if fresh {
                    return;
                }
                if run_nft(&self.nft, &["list", "table", "inet", TABLE], None)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        vm,
                        "the egress table is gone (a firewall reload?); installing it again"
                    );
                    if let Err(e) = run_nft(&self.nft, &["-f", "-"], Some(&self.script)).await {
                        tracing::error!(vm, error = %crate::errors::ErrorChain(&e), "egress policy NOT in force for this job: the table cannot be installed again");
                        return;
                    }
                }
                *self.checked.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            }
        }
    }
}

/// Whether the table is installed for `uid` now (for `doctor`).
pub async fn installed_for(nft: &Path, uid: u32) -> bool {
    match run_nft(nft, &["list", "table", "inet", TABLE], None).await {
        Ok(listing) => listing.contains(&format!("meta skuid != {uid} accept")),
        Err(_) => false,
    }
}

/// Whether the kernel and `nft` accept `policy` (`nft --check`, nothing changes).
pub async fn check(nft: &Path, policy: &EgressPolicy) -> Result<(), EgressError> {
    run_nft(nft, &["--check", "-f", "-"], Some(&policy.render()))
        .await
        .map(drop)
}

/// Runs `nft args` (with `stdin`), returning its standard output.
async fn run_nft(nft: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, EgressError> {
    use tokio::io::AsyncWriteExt as _;
    let spawn_error = |source| EgressError::Spawn {
        program: nft.display().to_string(),
        source,
    };
    let mut command = tokio::process::Command::new(nft);
    command
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(spawn_error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(spawn_error)?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| EgressError::Nft {
            stderr: format!("nft did not finish within {NFT_TIMEOUT:?}"),
        })?
        .map_err(spawn_error)?;
    if !out.status.success() {
        return Err(EgressError::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
