//! Upstream addresses: a routed name that resolves to loopback, a private
//! network, link-local (the cloud metadata address) or another address that
//! is not on the internet is refused, so an allowed name — a wildcard one
//! above all, whose labels the agent chooses — is not a way into the
//! sidecar's own network. A route that means it says `allow_private: true`;
//! a name the machine's hosts file maps (`BOT_BOTTLE_SIDECAR_HOSTS` lands
//! there in the sidecar) is the operator's choice and may resolve anywhere.
//!
//! [`is_public`] and [`hosts_file_names`] are pure; [`InwardGuard`] is the
//! resolver the proxy's HTTP connector uses.

use std::collections::HashSet;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

/// Whether an address is on the internet (not loopback, private, shared,
/// link-local, multicast, reserved or unspecified; IPv4 inside IPv6 judged
/// as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return public_v4(Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || s[..2] == [0x2001, 0xdb8] // documentation
                || v6 == Ipv6Addr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

/// The names a hosts file maps (lowercase), from its text.
pub fn hosts_file_names(text: &str) -> HashSet<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace().skip(1))
        .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
        .collect()
}

/// Whether a name may resolve inward: decided per name by the proxy's
/// current routes.
pub type MayResolveInward = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The connector's resolver: the system's, with inward addresses dropped
/// for names that may not have them (none left: the connection is refused,
/// saying why).
#[derive(Clone)]
pub struct InwardGuard {
    hosts_file: HostsFileNames,
    may: MayResolveInward,
}

/// The hosts file's names, shared with the proxy (which may replace them).
pub type HostsFileNames = Arc<std::sync::RwLock<HashSet<String>>>;

impl InwardGuard {
    /// A guard over the resolver: `hosts_file`'s names and the hosts `may` allow may resolve inward.
    pub fn new(hosts_file: HostsFileNames, may: MayResolveInward) -> InwardGuard {
        InwardGuard { hosts_file, may }
    }
}

impl tower_service::Service<Name> for InwardGuard {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        let mapped = self.hosts_file.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(&host);
        let anywhere = mapped || (self.may)(&host);
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = all.iter().copied().filter(|a| anywhere || is_public(a.ip())).collect();
            if kept.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to loopback, private or link-local addresses ({}); refused (a route that means it says `allow_private: true`)",
                        all.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            Ok(kept.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.17.0.2",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "140.82.112.3", "2606:4700::1111", "::ffff:1.1.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn hosts_file() {
        let names =
            hosts_file_names("127.0.0.1 localhost\n# comment\n172.20.0.3\tapi.demo.test Notes.Demo.Test # x\n\n");
        assert!(names.contains("localhost") && names.contains("api.demo.test") && names.contains("notes.demo.test"));
        assert!(!names.contains("comment"));
    }
}
