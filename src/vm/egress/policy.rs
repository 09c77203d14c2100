//! What the egress policy is: `network.allow` entries as written, the destinations let through
//! (entries resolved, the runner's servers, the host's resolvers), the denied ranges, the nft
//! script that enforces it, and what it permits.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::{EgressError, TABLE};

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
