//! `limits`: what a bottle's containers may use — the agent's memory and
//! processes, the sidecar's memory. Each has a default (the README's
//! "Limits"); a bottle may set it within bounds, and a later bottle in
//! `extends` wins field by field.

use serde::Serialize;

use crate::error::ManifestError;
use crate::fields::{Ctx, join};
use crate::yaml::Node;

/// The keys `limits` may hold.
pub const LIMIT_KEYS: &[&str] = &["agent_memory", "agent_pids", "sidecar_memory"];

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A bottle's limits; `None` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Limits {
    /// The agent container's memory in bytes, swap included.
    pub agent_memory: Option<u64>,
    /// The most processes and threads the agent container may hold.
    pub agent_pids: Option<u64>,
    /// The sidecar container's memory in bytes, swap included.
    pub sidecar_memory: Option<u64>,
}

impl Limits {
    /// 8 GiB: room for a compiler or a test suite, not for the host.
    pub const AGENT_MEMORY: u64 = 8 * GIB;
    /// 4096: a parallel build's threads, not a fork bomb.
    pub const AGENT_PIDS: u64 = 4096;
    /// 4 GiB: the proxy needs far less (its bodies share 256 MiB), but
    /// git-gate runs `git` on the bottle's mirrors, and indexing a large
    /// repository's pack takes memory of its own.
    pub const SIDECAR_MEMORY: u64 = 4 * GIB;

    const AGENT_MEMORY_RANGE: (u64, u64) = (256 * MIB, 1024 * GIB);
    const AGENT_PIDS_RANGE: (u64, u64) = (64, 1 << 22);
    /// The sidecar's floor leaves room for the proxy's 256 MiB body budget.
    const SIDECAR_MEMORY_RANGE: (u64, u64) = (512 * MIB, 64 * GIB);

    /// The agent's memory in bytes, the default applied.
    pub fn agent_memory(&self) -> u64 {
        self.agent_memory.unwrap_or(Self::AGENT_MEMORY)
    }

    /// The agent's process limit, the default applied.
    pub fn agent_pids(&self) -> u64 {
        self.agent_pids.unwrap_or(Self::AGENT_PIDS)
    }

    /// The sidecar's memory in bytes, the default applied.
    pub fn sidecar_memory(&self) -> u64 {
        self.sidecar_memory.unwrap_or(Self::SIDECAR_MEMORY)
    }

    /// `later`'s fields where it sets them.
    pub fn overlay(&mut self, later: &Limits) {
        self.agent_memory = later.agent_memory.or(self.agent_memory);
        self.agent_pids = later.agent_pids.or(self.agent_pids);
        self.sidecar_memory = later.sidecar_memory.or(self.sidecar_memory);
    }
}

/// A size with a binary unit: `512MiB`, `8GiB`, `8g`, `2048M`, `1.5GiB`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let scale = match unit.to_ascii_lowercase().as_str() {
        "k" | "kb" | "kib" => 1u64 << 10,
        "m" | "mb" | "mib" => MIB,
        "g" | "gb" | "gib" => GIB,
        "t" | "tb" | "tib" => 1024 * GIB,
        "" => return Err(format!("'{text}' needs a unit (for example 8GiB or 512MiB)")),
        _ => return Err(format!("'{text}' has an unknown unit '{unit}' (KiB, MiB, GiB or TiB)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("'{text}' is not a size (for example 8GiB or 512MiB)"))?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("'{text}' is not a size (for example 8GiB or 512MiB)"));
    }
    Ok(bytes as u64)
}

/// How a size reads back: `8 GiB`, `512 MiB`, `1536 MiB`.
pub fn show_size(bytes: u64) -> String {
    if bytes.is_multiple_of(GIB) { format!("{} GiB", bytes / GIB) } else { format!("{} MiB", bytes.div_ceil(MIB)) }
}

/// How a limit of one kind reads in an error.
type Shown = fn(u64) -> String;

pub(crate) fn parse(ctx: &Ctx, node: &Node) -> Result<Limits, ManifestError> {
    let mut limits = Limits::default();
    for (k, v) in ctx.keyed_or_empty("limits", node, LIMIT_KEYS, &[])? {
        let key = join("limits", k);
        let text = ctx.string(&key, v)?;
        let (value, (lo, hi), shown): (u64, (u64, u64), Shown) = match k.as_str() {
            "agent_pids" => {
                let n = text.trim().parse::<u64>().map_err(|_| {
                    ctx.at(v, &key, format!("{} `{key}` must be a whole number of processes, not '{text}'", ctx.what))
                })?;
                (n, Limits::AGENT_PIDS_RANGE, |n| n.to_string())
            }
            memory => {
                let bytes = parse_size(&text).map_err(|why| ctx.at(v, &key, format!("{} `{key}`: {why}", ctx.what)))?;
                let range =
                    if memory == "agent_memory" { Limits::AGENT_MEMORY_RANGE } else { Limits::SIDECAR_MEMORY_RANGE };
                (bytes, range, show_size)
            }
        };
        if !(lo..=hi).contains(&value) {
            return Err(ctx.at(
                v,
                &key,
                format!("{} `{key}` is {}; it must be between {} and {}", ctx.what, shown(value), shown(lo), shown(hi)),
            ));
        }
        match k.as_str() {
            "agent_memory" => limits.agent_memory = Some(value),
            "agent_pids" => limits.agent_pids = Some(value),
            "sidecar_memory" => limits.sidecar_memory = Some(value),
            _ => unreachable!("keyed_or_empty admitted only known keys"),
        }
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_with_binary_units_and_refuse_the_rest() {
        assert_eq!(parse_size("8GiB"), Ok(8 * GIB));
        assert_eq!(parse_size("8g"), Ok(8 * GIB));
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("1.5G"), Ok(3 * GIB / 2));
        assert!(parse_size("4096").unwrap_err().contains("needs a unit"));
        assert!(parse_size("8 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_size("-1g").is_err());
        assert!(parse_size("1e400g").is_err());
        assert_eq!(show_size(8 * GIB), "8 GiB");
        assert_eq!(show_size(1536 * MIB), "1536 MiB");
    }

    fn bottle(limits: &str) -> Result<crate::BottleFile, String> {
        let text = format!("---\nlimits:\n{limits}---\n");
        crate::parse_bottle_text("b", std::path::Path::new("/h/bottles/b.md"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bottle_sets_limits_and_errors_name_the_file_and_key() {
        let b = bottle("  agent_memory: 2GiB\n  agent_pids: 900\n  sidecar_memory: 1g\n").unwrap();
        assert_eq!(b.limits, Limits { agent_memory: Some(2 * GIB), agent_pids: Some(900), sidecar_memory: Some(GIB) });
        let small = bottle("  agent_memory: 100MiB\n").unwrap_err();
        assert!(small.contains("b.md") && small.contains("limits.agent_memory"), "{small}");
        assert!(small.contains("between 256 MiB and 1024 GiB"), "{small}");
        let sidecar = bottle("  sidecar_memory: 256MiB\n").unwrap_err();
        assert!(sidecar.contains("between 512 MiB"), "{sidecar}");
        let unit = bottle("  agent_memory: 4096\n").unwrap_err();
        assert!(unit.contains("needs a unit"), "{unit}");
        let pids = bottle("  agent_pids: lots\n").unwrap_err();
        assert!(pids.contains("limits.agent_pids") && pids.contains("whole number"), "{pids}");
        let unknown = bottle("  cpus: 2\n").unwrap_err();
        assert!(unknown.contains("cpus") && unknown.contains("agent_memory, agent_pids, sidecar_memory"), "{unknown}");
    }

    #[test]
    fn later_bottles_win_field_by_field() {
        let mut base = Limits { agent_memory: Some(GIB), agent_pids: Some(100), sidecar_memory: None };
        base.overlay(&Limits { agent_memory: None, agent_pids: Some(200), sidecar_memory: Some(2 * GIB) });
        assert_eq!(base, Limits { agent_memory: Some(GIB), agent_pids: Some(200), sidecar_memory: Some(2 * GIB) });
        assert_eq!(Limits::default().agent_memory(), Limits::AGENT_MEMORY);
    }
}
