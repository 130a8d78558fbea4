//! `metadata.json`: the resume record of one bottle.
//!
//! Readers accept what older versions wrote: every missing key (or `null`)
//! takes its default, unknown keys are ignored, and `backend: ""` means
//! docker, because files written before the field existed have none.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

/// Why a bottle's `metadata.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The bottle has none: no such bottle.
    #[error("{}: no such bottle (no metadata.json); see `bot-bottle list active`, or `bot-bottle start` a new one", path.display())]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// It could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a metadata record.
    #[error("{}: not a valid metadata record ({source}); fix or delete the file", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// It could not be written.
    #[error("{}: cannot write: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `metadata.json`: what a resume needs of one bottle, in the original's shape.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BottleMetadata {
    /// The bottle's identity.
    #[serde(deserialize_with = "null_is_default")]
    pub identity: String,
    /// The agent it runs.
    #[serde(deserialize_with = "null_is_default")]
    pub agent_name: String,
    /// The operator's working directory at start.
    #[serde(deserialize_with = "null_is_default")]
    pub cwd: String,
    /// Whether the cwd was copied into the workspace.
    #[serde(deserialize_with = "null_is_default")]
    pub copy_cwd: bool,
    /// ISO-8601 UTC.
    #[serde(deserialize_with = "null_is_default")]
    pub started_at: String,
    /// Legacy docker naming; empty for other backends.
    #[serde(deserialize_with = "null_is_default")]
    pub compose_project: String,
    /// `docker`, `smolmachines` (the original also has `macos-container`);
    /// `""`: written before the field existed, resumed where `--backend` or
    /// `BOT_BOTTLE_BACKEND` says, else docker.
    #[serde(deserialize_with = "null_is_default")]
    pub backend: String,
    /// The operator's label.
    #[serde(deserialize_with = "null_is_default")]
    pub label: String,
    /// The console colour.
    #[serde(deserialize_with = "null_is_default")]
    pub color: String,
    /// The bottles chosen, in merge order.
    #[serde(deserialize_with = "null_is_default")]
    pub bottle_names: Vec<String>,
}

fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl BottleMetadata {
    /// Its name in the state dir.
    pub const FILE: &'static str = "metadata.json";

    /// The backend to list this bottle under: `""` reads as `docker`.
    pub fn backend_name(&self) -> &str {
        if self.backend.is_empty() { "docker" } else { &self.backend }
    }

    /// Read `dir/metadata.json`. An empty `identity` is filled from the
    /// directory name.
    pub fn read(dir: &Path) -> Result<BottleMetadata, MetadataError> {
        let path = dir.join(Self::FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(MetadataError::Missing { path });
            }
            Err(source) => return Err(MetadataError::Read { path, source }),
        };
        let mut meta: BottleMetadata =
            serde_json::from_slice(&bytes).map_err(|source| MetadataError::Parse { path: path.clone(), source })?;
        if meta.identity.is_empty()
            && let Some(name) = dir.file_name().and_then(|n| n.to_str())
        {
            meta.identity = name.to_string();
        }
        Ok(meta)
    }

    /// Write `dir/metadata.json` atomically (temp file, then rename).
    pub fn write(&self, dir: &Path) -> Result<(), MetadataError> {
        let path = dir.join(Self::FILE);
        let tmp = dir.join(".metadata.json.tmp");
        let mut text =
            serde_json::to_string_pretty(self).map_err(|source| MetadataError::Parse { path: path.clone(), source })?;
        text.push('\n');
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| MetadataError::Write { path, source })
    }

    /// Now, as ISO-8601 UTC with seconds.
    pub fn now() -> String {
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_backend_reads_as_docker() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("old-bottle");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("metadata.json"),
            r#"{"agent_name": "dev", "compose_project": "bb-old", "future_key": 1}"#,
        )
        .unwrap();
        let m = BottleMetadata::read(&d).unwrap();
        assert_eq!(m.backend, "");
        assert_eq!(m.backend_name(), "docker");
        assert_eq!(m.identity, "old-bottle");
        assert_eq!(m.agent_name, "dev");
        assert_eq!(m.bottle_names, Vec::<String>::new());
        assert!(!m.copy_cwd);
    }

    #[test]
    fn nulls_take_defaults_and_every_field_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("metadata.json"),
            r#"{"identity": "x", "bottle_names": null, "copy_cwd": null}"#,
        )
        .unwrap();
        assert_eq!(BottleMetadata::read(dir.path()).unwrap().bottle_names, Vec::<String>::new());

        let m = BottleMetadata {
            identity: "dev-abc12".into(),
            agent_name: "dev".into(),
            cwd: "/src".into(),
            copy_cwd: true,
            started_at: BottleMetadata::now(),
            compose_project: String::new(),
            backend: "smolmachines".into(),
            label: "Dev".into(),
            color: "36".into(),
            bottle_names: vec!["base".into(), "gh".into()],
        };
        m.write(dir.path()).unwrap();
        assert_eq!(BottleMetadata::read(dir.path()).unwrap(), m);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("metadata.json")).unwrap()).unwrap();
        for key in [
            "identity",
            "agent_name",
            "cwd",
            "copy_cwd",
            "started_at",
            "compose_project",
            "backend",
            "label",
            "color",
            "bottle_names",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
    }

    #[test]
    fn missing_and_broken_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(BottleMetadata::read(dir.path()), Err(MetadataError::Missing { .. })));
        std::fs::write(dir.path().join("metadata.json"), "{").unwrap();
        let e = BottleMetadata::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("metadata.json") && e.contains("fix or delete"), "{e}");
    }
}
