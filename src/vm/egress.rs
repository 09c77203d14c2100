//! The egress policy: what a guest may connect to.
//!
//! Owns: `network.allow` entries (parsing, resolving), the nftables table that enforces the
//! policy, installing and re-checking it, and saying whether it is in force.
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

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ipnet::IpNet;

/// Name of the nftables table (family `inet`).
pub const TABLE: &str = "ghrunner_vm";

/// Destinations a guest may not reach unless `network.allow` opens them.
pub const DENIED: [&str; 14] = [
    "0.0.0.0/8",      // "this network" (0.0.0.0 reaches the host's own listeners)
    "10.0.0.0/8",     // private
    "100.64.0.0/10",  // carrier-grade NAT
    "127.0.0.0/8",    // loopback
    "169.254.0.0/16", // link-local, cloud metadata (169.254.169.254)
    "172.16.0.0/12",  // private
    "192.168.0.0/16", // private
    "224.0.0.0/3",    // multicast, reserved, broadcast
    "::/127",         // unspecified, loopback
    "::ffff:0:0/96",  // IPv4-mapped
    "fc00::/7",       // unique local
    "fe80::/10",      // link-local
    "fec0::/10",      // site-local (deprecated)
    "ff00::/8",       // multicast
];

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

/// One `network.allow` entry, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// What it allows.
    pub target: AllowTarget,
    /// Only this port (TCP and UDP); all ports when absent.
    pub port: Option<u16>,
}

/// The destination of an [`AllowEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowTarget {
    /// A network or a single address.
    Net(IpNet),
    /// A host name, resolved when the policy is built.
    Host(String),
}

impl AllowEntry {
    /// Parses `10.1.0.0/16`, `10.1.2.3`, `10.1.2.3:8080`, `[fd00::1]:443`, `ghes.internal:443`
    /// or `ghes.internal`.
    pub fn parse(entry: &str) -> Result<AllowEntry, EgressError> {
        let invalid = || EgressError::InvalidAllow {
            entry: entry.to_owned(),
        };
        let text = entry.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(AllowEntry {
                target: AllowTarget::Net(net.trunc()),
                port: None,
            });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AllowEntry {
                target: AllowTarget::Net(IpNet::from(ip)),
                port: None,
            });
        }
        if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
            if addr.port() == 0 {
                return Err(invalid());
            }
            return Ok(AllowEntry {
                target: AllowTarget::Net(IpNet::from(addr.ip())),
                port: Some(addr.port()),
            });
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(
                    port.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(invalid)?,
                ),
            ),
            None => (text, None),
        };
        let valid_host = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
            });
        if !valid_host {
            return Err(invalid());
        }
        Ok(AllowEntry {
            target: AllowTarget::Host(host.to_ascii_lowercase()),
            port,
        })
    }
}

/// One destination the policy lets through.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Allowed {
    /// Addresses.
    pub net: IpNet,
    /// Only this port (TCP and UDP); all ports when absent.
    pub port: Option<u16>,
}

/// The rules for one guest user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// The user passt runs as.
    pub uid: u32,
    /// What is let through before the denials, in order, without duplicates.
    pub allowed: Vec<Allowed>,
}

impl EgressPolicy {
    /// The policy for `uid`: `allow` entries (host names resolved), each server the runner is
    /// registered with (`scheme://host:port`, so a GHES on a private network keeps working
    /// from the guest) and DNS to the host's resolvers (`resolv.conf`).
    pub async fn build(
        uid: u32,
        allow: &[String],
        servers: &[url::Url],
        resolv_conf: &Path,
    ) -> Result<EgressPolicy, EgressError> {
        let mut allowed = BTreeSet::new();
        for text in allow {
            let entry = AllowEntry::parse(text)?;
            match entry.target {
                AllowTarget::Net(net) => {
                    allowed.insert(Allowed {
                        net,
                        port: entry.port,
                    });
                }
                AllowTarget::Host(host) => {
                    let addrs = tokio::net::lookup_host((host.as_str(), entry.port.unwrap_or(0)))
                        .await
                        .map_err(|source| EgressError::Resolve {
                            entry: text.clone(),
                            source,
                        })?;
                    for addr in addrs {
                        allowed.insert(Allowed {
                            net: IpNet::from(addr.ip()),
                            port: entry.port,
                        });
                    }
                }
            }
        }
        for server in servers {
            let (Some(host), Some(port)) = (server.host_str(), server.port_or_known_default())
            else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match tokio::net::lookup_host((host, port)).await {
                Ok(addrs) => {
                    for addr in addrs {
                        allowed.insert(Allowed {
                            net: IpNet::from(addr.ip()),
                            port: Some(port),
                        });
                    }
                }
                // An unresolvable server is not reachable by the agent either: nothing to open.
                Err(e) => tracing::debug!(server = %host, error = %e, "server not resolved"),
            }
        }
        for resolver in resolvers(resolv_conf) {
            allowed.insert(Allowed {
                net: IpNet::from(resolver),
                port: Some(53),
            });
        }
        Ok(EgressPolicy {
            uid,
            allowed: allowed.into_iter().collect(),
        })
    }

    /// The nft script that (re)creates the table atomically.
    pub fn render(&self) -> String {
        let mut rules = vec![
            format!("meta skuid != {} accept", self.uid),
            "ct state established,related accept".to_owned(),
        ];
        for allowed in &self.allowed {
            let family = if allowed.net.addr().is_ipv4() {
                "ip"
            } else {
                "ip6"
            };
            let addr = if allowed.net.prefix_len() == allowed.net.max_prefix_len() {
                allowed.net.addr().to_string()
            } else {
                allowed.net.to_string()
            };
            rules.push(match allowed.port {
                Some(port) => {
                    format!(
                        "{family} daddr {addr} meta l4proto {{ tcp, udp }} th dport {port} accept"
                    )
                }
                None => format!("{family} daddr {addr} accept"),
            });
        }
        rules.push("oif \"lo\" jump deny".to_owned());
        let (v4, v6): (Vec<&str>, Vec<&str>) = DENIED.iter().partition(|n| !n.contains(':'));
        rules.push(format!("ip daddr {{ {} }} jump deny", v4.join(", ")));
        rules.push(format!("ip6 daddr {{ {} }} jump deny", v6.join(", ")));
        let mut script = format!(
            "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\
             \tchain deny {{\n\
             \t\tmeta l4proto tcp reject with tcp reset\n\
             \t\treject with icmpx admin-prohibited\n\
             \t}}\n\
             \tchain egress {{\n\
             \t\ttype filter hook output priority filter; policy accept;\n"
        );
        for rule in rules {
            script.push_str("\t\t");
            script.push_str(&rule);
            script.push('\n');
        }
        script.push_str("\t}\n}\n");
        script
    }

    /// Whether the policy lets a guest connect to `ip:port` (what the table does, for tests
    /// and `doctor`; the host's own addresses are not known here).
    pub fn permits(&self, ip: IpAddr, port: u16) -> bool {
        let allowed = self
            .allowed
            .iter()
            .any(|a| a.net.contains(&ip) && a.port.is_none_or(|p| p == port));
        allowed
            || !DENIED
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok())
                .any(|n| n.contains(&ip))
    }
}

/// The nameservers of a `resolv.conf`.
pub fn resolvers(path: &Path) -> Vec<IpAddr> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.split('%').next())
                .and_then(|ip| ip.parse().ok())
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str) -> AllowEntry {
        AllowEntry::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn allow_entries_parse_every_documented_form() {
        let net = |s: &str| AllowTarget::Net(s.parse().unwrap());
        assert_eq!(entry("10.1.0.0/16").target, net("10.1.0.0/16"));
        assert_eq!(
            entry("10.1.2.3/16").target,
            net("10.1.0.0/16"),
            "host bits dropped"
        );
        assert_eq!(
            entry("10.1.2.3"),
            AllowEntry {
                target: net("10.1.2.3/32"),
                port: None
            }
        );
        assert_eq!(entry("10.1.2.3:8080").port, Some(8080));
        assert_eq!(entry("[fd00::1]:443").target, net("fd00::1/128"));
        assert_eq!(entry("[fd00::1]:443").port, Some(443));
        assert_eq!(entry("fd00::/8").target, net("fd00::/8"));
        assert_eq!(
            entry("GHES.internal:443"),
            AllowEntry {
                target: AllowTarget::Host("ghes.internal".into()),
                port: Some(443)
            }
        );
        assert_eq!(entry("proxy").port, None);
        for bad in [
            "",
            "10.0.0.0/33",
            "host:0",
            "host:99999",
            "a b",
            "-x.example",
            "1.2.3.4:0",
            "x..y",
            "http://x",
        ] {
            assert!(
                matches!(
                    AllowEntry::parse(bad),
                    Err(EgressError::InvalidAllow { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[tokio::test]
    async fn the_policy_allows_entries_servers_and_resolvers_then_denies_private_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let resolv = dir.path().join("resolv.conf");
        std::fs::write(
            &resolv,
            "# c\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch x\n",
        )
        .unwrap();
        let servers = [url::Url::parse("https://192.168.7.7/org/repo").unwrap()];
        let allow = [
            "10.99.0.1:9004".to_owned(),
            "172.20.0.0/16".to_owned(),
            "localhost:3128".to_owned(),
        ];
        let policy = EgressPolicy::build(999, &allow, &servers, &resolv)
            .await
            .unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Denied by default.
        for (addr, port) in [
            ("169.254.169.254", 80),
            ("10.99.0.1", 9002),
            ("192.168.1.1", 22),
            ("100.64.0.1", 1),
            ("127.0.0.1", 22),
            ("0.0.0.0", 22),
            ("fe80::1", 22),
            ("fd12::1", 443),
            ("::1", 22),
            ("::ffff:10.0.0.1", 1),
            ("255.255.255.255", 9),
            ("224.0.0.1", 9),
        ] {
            assert!(
                !policy.permits(ip(addr), port),
                "{addr}:{port} is permitted"
            );
        }
        // Allowed.
        for (addr, port) in [
            ("10.99.0.1", 9004),
            ("172.20.3.4", 1),
            ("192.168.7.7", 443),
            ("10.255.255.53", 53),
            ("fe80::1", 53),
            ("127.0.0.1", 3128),
            ("93.184.216.34", 443),
            ("2606:4700::1111", 443),
        ] {
            assert!(policy.permits(ip(addr), port), "{addr}:{port} is refused");
        }
        let script = policy.render();
        assert!(
            script.starts_with("table inet ghrunner_vm\ndelete table inet ghrunner_vm\n"),
            "atomic replace:\n{script}"
        );
        assert!(
            script.contains(
                "\t\tmeta skuid != 999 accept\n\t\tct state established,related accept\n"
            )
        );
        assert!(
            script.contains("ip daddr 10.99.0.1 meta l4proto { tcp, udp } th dport 9004 accept")
        );
        assert!(script.contains("ip daddr 172.20.0.0/16 accept"));
        assert!(
            script.contains("ip daddr 192.168.7.7 meta l4proto { tcp, udp } th dport 443 accept")
        );
        assert!(script.contains("ip6 daddr fe80::1 meta l4proto { tcp, udp } th dport 53 accept"));
        let allow_at = script.find("dport 9004 accept").unwrap();
        let deny_at = script.find("oif \"lo\" jump deny").unwrap();
        assert!(allow_at < deny_at, "allows come before the denials");
        assert!(script.contains("ip daddr { 0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16, 224.0.0.0/3 } jump deny"));
    }

    #[tokio::test]
    async fn unresolvable_allow_hosts_are_an_error_naming_the_entry() {
        let allow = ["no-such-host.invalid:443".to_owned()];
        let err = EgressPolicy::build(1, &allow, &[], Path::new("/nonexistent"))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("no-such-host.invalid:443"),
            "{err}"
        );
    }
}
