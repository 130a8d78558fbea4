//! The sidecar bundle's network on smolmachines, derived from the identity
//! alone (so a resume finds the same one): a /28 out of `10.213.0.0/16`,
//! its gateway (`.1`) and the bundle's IP (`.2`) — the one address the
//! agent's VM may reach (`--allow-cidr <ip>/32`). A subnet that overlaps an
//! existing Docker network is an error naming that network. Pure.

use std::net::Ipv4Addr;

use sha2::{Digest, Sha256};

/// The pool the subnets come from, and their size.
const POOL: [u8; 2] = [10, 213];
const PREFIX: u8 = 28;

/// The bottle's own /28 (from 10.213.0.0/16, derived from its identity): the network its sidecar (the bundle) sits on and the one address its machine may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleNet {
    /// The /28's first address.
    pub subnet: Ipv4Addr,
    /// Its prefix length (28).
    pub prefix: u8,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
    /// The bundle (sidecar) IP.
    pub ip: Ipv4Addr,
}

impl BundleNet {
    /// The subnet for `identity`.
    pub fn derive(identity: &str) -> BundleNet {
        let h = Sha256::digest(identity.as_bytes());
        // 4096 /28 subnets in the /16.
        let index = (u16::from_be_bytes([h[0], h[1]]) % 4096) as u32;
        let base = u32::from(Ipv4Addr::new(POOL[0], POOL[1], 0, 0)) + index * 16;
        BundleNet {
            subnet: Ipv4Addr::from(base),
            prefix: PREFIX,
            gateway: Ipv4Addr::from(base + 1),
            ip: Ipv4Addr::from(base + 2),
        }
    }

    /// `SUBNET/28`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.subnet, self.prefix)
    }

    /// The VM's allowlist: the bundle alone.
    pub fn allow_cidr(&self) -> String {
        format!("{}/32", self.ip)
    }

    /// An error naming the first of `existing` (name, CIDR) that overlaps
    /// this subnet; CIDRs that do not parse (IPv6) are skipped.
    pub fn check_free(&self, existing: &[(String, String)]) -> Result<(), String> {
        for (name, cidr) in existing {
            if let Some((net, prefix)) = parse_cidr(cidr)
                && overlaps((self.subnet, self.prefix), (net, prefix))
            {
                return Err(format!(
                    "the bottle's bundle subnet {} overlaps Docker network {name} ({cidr}): remove that network, or start the bottle under another label",
                    self.cidr()
                ));
            }
        }
        Ok(())
    }
}

fn parse_cidr(cidr: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = cidr.split_once('/')?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((ip.parse().ok()?, prefix))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

/// Whether two IPv4 networks share an address.
pub fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let shorter = a.1.min(b.1);
    (u32::from(a.0) & mask(shorter)) == (u32::from(b.0) & mask(shorter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_identity_always_gets_the_same_subnet_and_a_collision_names_the_network() {
        let a = BundleNet::derive("my-agent");
        assert_eq!(a, BundleNet::derive("my-agent"));
        assert_eq!(a.allow_cidr(), format!("{}/32", a.ip));
        assert!(a.check_free(&[("bridge".into(), "172.17.0.0/16".into()), ("v6".into(), "fd00::/64".into())]).is_ok());
        let e = a.check_free(&[("someone-else".into(), "10.213.0.0/16".into())]).unwrap_err();
        assert!(e.contains("someone-else") && e.contains(&a.cidr()), "{e}");
    }

    proptest! {
        #[test]
        fn the_subnet_is_a_28_in_the_pool_holding_its_gateway_and_ip(identity in "[a-z0-9-]{1,40}") {
            let n = BundleNet::derive(&identity);
            prop_assert_eq!(&n.subnet.octets()[..2], &POOL[..]);
            prop_assert_eq!(u32::from(n.subnet) % 16, 0);
            prop_assert!(overlaps((n.subnet, 28), (n.ip, 32)) && overlaps((n.subnet, 28), (n.gateway, 32)));
            prop_assert!(n.ip != n.gateway);
        }

        #[test]
        fn overlap_is_symmetric_and_matches_address_sets(a in any::<u32>(), pa in 20u8..=32, b in any::<u32>(), pb in 20u8..=32) {
            let (na, nb) = (a & mask(pa), b & mask(pb));
            let sets = |n: u32, p: u8| (n, n | !mask(p));
            let ((a0, a1), (b0, b1)) = (sets(na, pa), sets(nb, pb));
            let expected = a0 <= b1 && b0 <= a1;
            prop_assert_eq!(overlaps((Ipv4Addr::from(na), pa), (Ipv4Addr::from(nb), pb)), expected);
            prop_assert_eq!(overlaps((Ipv4Addr::from(nb), pb), (Ipv4Addr::from(na), pa)), expected);
        }
    }
}
