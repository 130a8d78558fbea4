//! The sidecar bundle's network on smolmachines: a /28 out of
//! `10.213.0.0/16`, its gateway (`.1`) and the bundle's IP (`.2`) — the one
//! address the agent's VM may reach (`--allow-cidr <ip>/32`). The identity
//! picks the /28 to try first (so a resume gets the same one while it is
//! free); one that overlaps an existing Docker network (another bottle's,
//! whose identity hashed to the same slot, or anyone's) is passed over for
//! the next free one, and only a pool with none free is an error, naming
//! what holds it. Pure.

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

/// How many /28 subnets the pool holds.
const SLOTS: u32 = 1 << (PREFIX - 16);

impl BundleNet {
    /// The subnet `identity` tries first.
    pub fn derive(identity: &str) -> BundleNet {
        let h = Sha256::digest(identity.as_bytes());
        BundleNet::slot(u32::from(u16::from_be_bytes([h[0], h[1]])) % SLOTS)
    }

    /// The pool's `index`th /28.
    fn slot(index: u32) -> BundleNet {
        let base = u32::from(Ipv4Addr::new(POOL[0], POOL[1], 0, 0)) + (index % SLOTS) * 16;
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

    /// The first of `existing` (name, CIDR) that overlaps this subnet;
    /// CIDRs that do not parse (IPv6) are skipped.
    fn held_by<'a>(&self, existing: &'a [(String, String)]) -> Option<&'a (String, String)> {
        existing.iter().find(|(_, cidr)| {
            parse_cidr(cidr).is_some_and(|(net, prefix)| overlaps((self.subnet, self.prefix), (net, prefix)))
        })
    }

    /// The subnet for `identity` among `existing` Docker networks (name,
    /// CIDR): the one it tries first when that is free, else the next free
    /// /28 after it (wrapping). An error naming what holds the pool when no
    /// /28 of it is free.
    pub fn choose(identity: &str, existing: &[(String, String)]) -> Result<BundleNet, String> {
        let first = BundleNet::derive(identity);
        let start = (u32::from(first.subnet) >> 4) % SLOTS;
        if let Some(free) = (0..SLOTS).map(|i| BundleNet::slot(start + i)).find(|n| n.held_by(existing).is_none()) {
            return Ok(free);
        }
        let mut holders: Vec<String> = Vec::new();
        for (name, cidr) in existing {
            let held = format!("{name} ({cidr})");
            if parse_cidr(cidr).is_some_and(|n| overlaps(n, (Ipv4Addr::new(POOL[0], POOL[1], 0, 0), 16)))
                && !holders.contains(&held)
            {
                holders.push(held);
            }
        }
        let shown = holders.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        let more = if holders.len() > 3 { format!(" and {} more", holders.len() - 3) } else { String::new() };
        Err(format!(
            "no /28 of the bundle pool {}.{}.0.0/16 is free: Docker networks {shown}{more} hold it; remove what you do not need (`docker network ls`)",
            POOL[0], POOL[1]
        ))
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

    fn nets(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect()
    }

    #[test]
    fn an_identity_gets_its_own_subnet_while_it_is_free() {
        let a = BundleNet::derive("my-agent");
        assert_eq!(a, BundleNet::derive("my-agent"));
        assert_eq!(a.allow_cidr(), format!("{}/32", a.ip));
        let others = nets(&[("bridge", "172.17.0.0/16"), ("v6", "fd00::/64"), ("junk", "10.213.x/28")]);
        assert_eq!(BundleNet::choose("my-agent", &others), Ok(a));
    }

    #[test]
    fn a_held_subnet_is_passed_over_for_the_next_free_one() {
        let a = BundleNet::derive("my-agent");
        // Another bottle whose identity hashed to the same /28, and the one
        // after it held by someone else's wider network.
        let next = BundleNet::slot((u32::from(a.subnet) >> 4) + 1);
        let wider = format!("{}/27", Ipv4Addr::from(u32::from(next.subnet) & !31));
        let held = nets(&[("bot-bottle-other", &a.cidr()), ("theirs", &wider)]);
        let chosen = BundleNet::choose("my-agent", &held).unwrap();
        assert!(chosen.held_by(&held).is_none() && chosen != a && chosen != next, "{chosen:?}");
        // The last /28 of the pool wraps to the first.
        let last = BundleNet::slot(SLOTS - 1);
        let first = BundleNet::slot(0);
        assert_eq!(BundleNet::slot(SLOTS), first);
        assert_eq!(u32::from(last.subnet), u32::from(Ipv4Addr::new(10, 213, 255, 240)));
    }

    #[test]
    fn a_pool_with_nothing_free_is_an_error_naming_what_holds_it() {
        let e = BundleNet::choose("my-agent", &nets(&[("bridge", "172.17.0.0/16"), ("someone-else", "10.213.0.0/16")]))
            .unwrap_err();
        assert!(e.contains("someone-else (10.213.0.0/16)") && !e.contains("bridge"), "{e}");
        let halves = nets(&[("low", "10.213.0.0/17"), ("high", "10.213.128.0/17")]);
        let e = BundleNet::choose("x", &halves).unwrap_err();
        assert!(e.contains("low (10.213.0.0/17), high (10.213.128.0/17)"), "{e}");
    }

    proptest! {
        #[test]
        fn the_subnet_is_a_28_in_the_pool_holding_its_gateway_and_ip(identity in "[a-z0-9-]{1,40}", taken in proptest::collection::vec(0u32..4096, 0..64)) {
            let held: Vec<(String, String)> =
                taken.iter().map(|i| (format!("n{i}"), BundleNet::slot(*i).cidr())).collect();
            let n = BundleNet::choose(&identity, &held).unwrap();
            prop_assert!(n.held_by(&held).is_none());
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
