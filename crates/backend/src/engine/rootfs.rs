//! The base image's root filesystem, assembled from this host's own Debian
//! packages (spec/testing.md: no registry here, and debootstrap takes 10–20
//! minutes): a package set and its dependency closure among the installed
//! packages, their files, and a dpkg database listing exactly them, so that
//! `apt-get install` works in builds on top. Takes seconds.
//!
//! [`closure`] is a pure function over the text of `/var/lib/dpkg/status`;
//! [`write_rootfs`] reads the host's files and writes the tar.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What every bottle image needs beyond Debian's essential set: apt (so
/// builds can add packages), CA roots, git and ssh (git-gate), curl, python3
/// (agents and tests), users, process and network tools.
pub const BASE_PACKAGES: &[&str] = &[
    "apt",
    "ca-certificates",
    "git",
    "openssh-client",
    "curl",
    "python3",
    "passwd",
    "procps",
    "netbase",
    "iproute2",
    "less",
];

/// One installed package's stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// `Package`.
    pub name: String,
    /// `Architecture`.
    pub arch: String,
    /// `Version`.
    pub version: String,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority`.
    pub priority: String,
    /// `Pre-Depends` and `Depends`: groups of alternatives.
    pub depends: Vec<Vec<String>>,
    /// `Provides`, versions dropped.
    pub provides: Vec<String>,
    /// The stanza as written, for the image's status file.
    pub stanza: String,
}

/// The installed packages of a dpkg status file.
pub fn parse_status(text: &str) -> Vec<Installed> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: BTreeMap<String, String> = BTreeMap::new();
        let mut last = String::new();
        for line in stanza.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(v) = fields.get_mut(&last) {
                    v.push('\n');
                    v.push_str(line);
                }
            } else if let Some((k, v)) = line.split_once(':') {
                last = k.to_string();
                fields.insert(k.to_string(), v.trim().to_string());
            }
        }
        let Some(name) = fields.get("Package") else { continue };
        if !fields.get("Status").is_some_and(|s| s.ends_with(" installed")) {
            continue;
        }
        let names = |field: &str| -> Vec<Vec<String>> {
            fields
                .get(field)
                .map(|v| {
                    v.split(',')
                        .map(|group| {
                            group
                                .split('|')
                                .filter_map(|alt| {
                                    let n = alt.split_whitespace().next()?;
                                    Some(n.split(':').next().unwrap_or(n).to_string())
                                })
                                .collect()
                        })
                        .filter(|g: &Vec<String>| !g.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut depends = names("Pre-Depends");
        depends.extend(names("Depends"));
        out.push(Installed {
            name: name.clone(),
            arch: fields.get("Architecture").cloned().unwrap_or_default(),
            version: fields.get("Version").cloned().unwrap_or_default(),
            essential: fields.get("Essential").is_some_and(|e| e == "yes"),
            priority: fields.get("Priority").cloned().unwrap_or_default(),
            depends,
            provides: names("Provides").into_iter().flatten().collect(),
            stanza: stanza.trim_matches('\n').to_string(),
        });
    }
    out
}

/// The packages to put in the image: the essential and `required` ones,
/// `extra`, and everything they depend on (the first installed alternative
/// of each group). Returns the closure sorted by name, and the `extra`
/// packages that are not installed here.
pub fn closure<'a>(installed: &'a [Installed], extra: &[&str]) -> (Vec<&'a Installed>, Vec<String>) {
    let by_name: BTreeMap<&str, &Installed> = installed.iter().map(|p| (p.name.as_str(), p)).collect();
    let mut providers: BTreeMap<&str, Vec<&Installed>> = BTreeMap::new();
    for p in installed {
        for v in &p.provides {
            providers.entry(v.as_str()).or_default().push(p);
        }
    }
    let resolve = |name: &str| -> Option<&'a Installed> {
        by_name.get(name).copied().or_else(|| providers.get(name).and_then(|v| v.first().copied()))
    };
    let mut missing = Vec::new();
    let mut queue: Vec<&Installed> = installed.iter().filter(|p| p.essential || p.priority == "required").collect();
    for name in extra {
        match resolve(name) {
            Some(p) => queue.push(p),
            None => missing.push(name.to_string()),
        }
    }
    let mut chosen: BTreeSet<&str> = BTreeSet::new();
    let mut out = Vec::new();
    while let Some(p) = queue.pop() {
        if !chosen.insert(p.name.as_str()) {
            continue;
        }
        out.push(p);
        for group in &p.depends {
            if let Some(dep) = group.iter().find_map(|alt| resolve(alt)) {
                queue.push(dep);
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    (out, missing)
}

/// A stable fingerprint of a package set (names and versions): the base
/// image's tag, so it is rebuilt only when the host's packages change.
pub fn fingerprint(packages: &[&Installed]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in packages {
        h.update(format!("{} {} {}\n", p.name, p.arch, p.version));
    }
    h.update(BASE_LAYOUT_VERSION.to_string());
    let digest = h.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Bumped when [`write_rootfs`] changes what it writes.
const BASE_LAYOUT_VERSION: u32 = 1;

/// Write the root filesystem tar of `packages` (from this host) to `out`.
pub fn write_rootfs(packages: &[&Installed], out: &mut dyn Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    let mut written: HashSet<PathBuf> = HashSet::new();
    // Merged /usr: the top-level links first, as on the host.
    for link in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let host = Path::new("/").join(link);
        if let Ok(target) = std::fs::read_link(&host) {
            append_link(&mut tar, Path::new(link), &target)?;
            written.insert(host);
        }
    }
    let info = Path::new("/var/lib/dpkg/info");
    let mut status = String::new();
    for p in packages {
        let qualified = format!("{}:{}", p.name, p.arch);
        let list = [info.join(format!("{qualified}.list")), info.join(format!("{}.list", p.name))]
            .into_iter()
            .find(|l| l.exists());
        if let Some(list) = list {
            for line in std::fs::read_to_string(&list)?.lines() {
                append_host_path(&mut tar, Path::new(line), &mut written)?;
            }
        }
        // dpkg's own records of the package (lists, scripts, conffiles).
        for entry in std::fs::read_dir(info)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `<pkg>[:arch].<ext>`, the extension without dots (so `python3.`
            // does not take `python3.11.list`).
            let ours = [format!("{qualified}."), format!("{}.", p.name)]
                .iter()
                .any(|prefix| name.strip_prefix(prefix.as_str()).is_some_and(|ext| !ext.contains('.')));
            if ours {
                append_host_path(&mut tar, &entry.path(), &mut written)?;
            }
        }
        status.push_str(&p.stanza);
        status.push_str("\n\n");
    }
    // What postinst scripts and tools generate rather than package.
    for generated in ["/etc/alternatives", "/etc/ssl/certs", "/etc/ld.so.cache", "/etc/apt/sources.list.d"] {
        append_tree(&mut tar, Path::new(generated), &mut written)?;
    }
    for file in ["/etc/apt/sources.list", "/etc/debian_version", "/etc/os-release", "/usr/lib/os-release"] {
        if Path::new(file).exists() {
            append_host_path(&mut tar, Path::new(file), &mut written)?;
        }
    }
    if let Ok(entries) = std::fs::read_dir("/var/lib/dpkg/alternatives") {
        for entry in entries.flatten() {
            append_host_path(&mut tar, &entry.path(), &mut written)?;
            // The links an alternative manages (e.g. /usr/bin/awk).
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.starts_with('/')) {
                let path = Path::new(line);
                if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                    append_host_path(&mut tar, path, &mut written)?;
                }
            }
        }
    }
    append_bytes(&mut tar, "var/lib/dpkg/status", status.as_bytes(), 0o644)?;
    for empty in ["var/lib/dpkg/available", "var/lib/dpkg/diversions", "var/lib/dpkg/statoverride"] {
        append_bytes(&mut tar, empty, b"", 0o644)?;
    }
    append_bytes(
        &mut tar,
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/bash\n_apt:x:42:65534::/nonexistent:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        0o644,
    )?;
    append_bytes(
        &mut tar,
        "etc/group",
        b"root:x:0:\nutmp:x:43:\nstaff:x:50:\nusers:x:100:\nnogroup:x:65534:\n",
        0o644,
    )?;
    append_bytes(
        &mut tar,
        "etc/shadow",
        b"root:*:19000:0:99999:7:::\n_apt:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        0o640,
    )?;
    append_bytes(&mut tar, "etc/gshadow", b"root:*::\nnogroup:*::\n", 0o640)?;
    for (dir, mode) in [
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("run", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("var/lib/apt/lists/partial", 0o755),
        ("var/cache/apt/archives/partial", 0o755),
        ("var/log/apt", 0o755),
    ] {
        append_dir(&mut tar, dir, mode)?;
    }
    tar.finish()
}

/// The path as it lives on disk, with the merged-/usr links of its parent
/// resolved (`/bin/cat` → `/usr/bin/cat`), relative to `/`.
fn canonical(path: &Path) -> Option<PathBuf> {
    let parent = path.parent()?;
    let name = path.file_name()?;
    let parent = std::fs::canonicalize(parent).ok()?;
    Some(parent.join(name))
}

fn append_host_path<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    written: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    if path == Path::new("/.") || path == Path::new("/") {
        return Ok(());
    }
    let Some(real) = canonical(path) else { return Ok(()) };
    if written.contains(&real) {
        return Ok(());
    }
    let Ok(meta) = std::fs::symlink_metadata(&real) else { return Ok(()) };
    // Parents first, so every entry has its directory.
    if let Some(parent) = real.parent()
        && parent != Path::new("/")
        && !written.contains(parent)
    {
        append_host_path(tar, parent, written)?;
    }
    written.insert(real.clone());
    let rel = real.strip_prefix("/").unwrap_or(&real);
    let mut header = tar::Header::new_gnu();
    header.set_metadata(&meta);
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&real)?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        tar.append_link(&mut header, rel, target)
    } else if meta.is_dir() {
        tar.append_data(&mut header, rel, std::io::empty())
    } else if meta.is_file() {
        let file = std::fs::File::open(&real)?;
        tar.append_data(&mut header, rel, file)
    } else {
        Ok(())
    }
}

fn append_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    written: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(root) else { return Ok(()) };
    append_host_path(tar, root, written)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root)?.flatten().map(|e| e.path()).collect();
        entries.sort();
        for e in entries {
            append_tree(tar, &e, written)?;
        }
    }
    Ok(())
}

fn append_link<W: Write>(tar: &mut tar::Builder<W>, path: &Path, target: &Path) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    tar.append_link(&mut header, path, target)
}

fn append_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, data: &[u8], mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, path, data)
}

fn append_dir<W: Write>(tar: &mut tar::Builder<W>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Directory);
    header.set_size(0);
    header.set_mode(mode);
    tar.append_data(&mut header, path, std::io::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Package: base-files\nStatus: install ok installed\nPriority: required\nEssential: yes\nArchitecture: amd64\nVersion: 12\nDepends: libc6 (>= 2.36)\n\nPackage: libc6\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\nVersion: 2.36\nDepends: libgcc-s1\n\nPackage: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\nVersion: 12\n\nPackage: git\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:2.39\nDepends: perl | perl-alt, mail-transport-agent | x, liberror-perl\nDescription: fast\n scm\n\nPackage: perl-alt\nStatus: install ok installed\nVersion: 1\nProvides: liberror-perl\n\nPackage: removed\nStatus: deinstall ok config-files\nPriority: required\n";

    #[test]
    fn the_closure_follows_depends_alternatives_and_provides() {
        let installed = parse_status(STATUS);
        assert_eq!(installed.len(), 5, "config-files-only packages are not installed");
        let (set, missing) = closure(&installed, &["git", "not-here"]);
        let names: Vec<&str> = set.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["base-files", "git", "libc6", "libgcc-s1", "perl-alt"]);
        assert_eq!(missing, ["not-here"]);
        let git = installed.iter().find(|p| p.name == "git").unwrap();
        assert!(git.stanza.contains("Description: fast\n scm"));
        // The fingerprint changes with a version.
        let before = fingerprint(&set);
        let bumped = STATUS.replace("Version: 2.36", "Version: 2.37");
        let installed2 = parse_status(&bumped);
        assert_ne!(fingerprint(&closure(&installed2, &["git"]).0), before);
    }

    #[test]
    fn this_hosts_base_set_resolves() {
        let Ok(status) = std::fs::read_to_string("/var/lib/dpkg/status") else { return };
        let installed = parse_status(&status);
        let (set, _) = closure(&installed, BASE_PACKAGES);
        for needed in ["bash", "coreutils", "dpkg", "apt", "libc6"] {
            assert!(set.iter().any(|p| p.name == needed), "{needed} is not in the base set");
        }
    }
}
