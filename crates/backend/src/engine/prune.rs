//! `images prune`: which bot-bottle images a home still needs, and the
//! removal of the rest. The decision ([`decide`]) is a function over data
//! (the images, what is kept, the time); listing and removing sit at the
//! edge ([`remove`]).
//!
//! Kept: what this binary runs from ([`super::images::current_tags`]), what
//! a bottle with state here recorded at launch (`images.json`), the commit
//! of a bottle whose state is here, anything built in the last
//! `keep_recent` (a launch may be about to use it), and anything a
//! container still uses (the engine refuses). A commit image is only ever
//! this home's to remove: it carries the home's label.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};

use super::objects::LABEL_HOME;
use crate::error::BackendError;

/// The images a bottle launched from, recorded in its state dir.
pub const USED_FILE: &str = "images.json";

/// Record the images a launch uses (`images prune` keeps them while the
/// bottle's state is here).
pub fn record_use(state_dir: &Path, tags: &[&str]) -> Result<(), BackendError> {
    let text = serde_json::to_vec_pretty(&serde_json::json!({ "images": tags }))
        .map_err(|e| BackendError::Invalid { message: format!("cannot record the images: {e}") })?;
    std::fs::write(state_dir.join(USED_FILE), text)
        .map_err(|source| BackendError::Io { what: "cannot record the bottle's images".into(), source })
}

/// One image tag as the engine lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    /// `repo:tag`.
    pub tag: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// The home label, on commit images made by this version.
    pub home: Option<String>,
    /// Its size in bytes.
    pub size: i64,
}

/// What must stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    /// This home's root, as commit images carry it.
    pub home: String,
    /// Identities with state in this home.
    pub identities: BTreeSet<String>,
    /// Tags this binary uses and tags bottles here recorded.
    pub tags: BTreeSet<String>,
    /// Images built more recently than this are kept.
    pub keep_recent: Duration,
}

/// The tags to remove, in order, each with why it may go.
pub fn decide(images: &[Tagged], keep: &Keep, now: i64) -> Vec<(String, &'static str)> {
    let recent = now - keep.keep_recent.as_secs() as i64;
    let mut out = Vec::new();
    for image in images {
        let Some((repo, name)) = image.tag.split_once(':') else { continue };
        if !repo.starts_with("bot-bottle-") || keep.tags.contains(&image.tag) || image.created > recent {
            continue;
        }
        if repo == "bot-bottle-commit" {
            // Another home's commit, or one from before commits carried
            // their home: not ours to judge.
            if image.home.as_deref() == Some(keep.home.as_str()) && !keep.identities.contains(name) {
                out.push((image.tag.clone(), "the commit of a bottle whose state is gone"));
            }
            continue;
        }
        out.push((image.tag.clone(), "not used by this bot-bottle or any bottle here"));
    }
    out
}

/// What [`remove`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    /// Tags removed.
    pub removed: Vec<String>,
    /// Tags a container still uses (the engine refused).
    pub in_use: Vec<String>,
    /// Bytes the removed images held (an image shared by tags counts once).
    pub bytes: i64,
}

/// Every `bot-bottle-*` image tag the engine has.
pub async fn list(docker: &Docker) -> Result<Vec<Tagged>, BackendError> {
    let images = docker
        .list_images(Some(ListImagesOptions { all: false, ..Default::default() }))
        .await
        .map_err(|source| BackendError::Engine { operation: "cannot list images".to_string(), source })?;
    let mut out = Vec::new();
    for i in images {
        for tag in i.repo_tags.iter().filter(|t| t.starts_with("bot-bottle-")) {
            out.push(Tagged {
                tag: tag.clone(),
                created: i.created,
                home: i.labels.get(LABEL_HOME).cloned(),
                size: i.size,
            });
        }
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag));
    Ok(out)
}

/// The keep set for `home`: this binary's tags, and what its bottles use.
pub fn keep_for(home: &state::Home, keep_recent: Duration) -> Result<Keep, BackendError> {
    let mut keep = Keep {
        home: home.root().display().to_string(),
        identities: home.identities().into_iter().collect(),
        tags: super::images::current_tags()?.into_iter().collect(),
        keep_recent,
    };
    for id in &keep.identities {
        let Ok(text) = std::fs::read_to_string(home.state_dir(id).join(USED_FILE)) else { continue };
        let used: serde_json::Value = serde_json::from_str(&text).map_err(|e| BackendError::Invalid {
            message: format!(
                "{}: {e}; delete the file to let prune judge without it",
                home.state_dir(id).join(USED_FILE).display()
            ),
        })?;
        keep.tags
            .extend(used["images"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_string)));
    }
    Ok(keep)
}

/// Remove `tags` (as [`decide`] chose them); a tag a container uses stays.
/// `images` (from [`list`]) give the bytes freed; empty, none are counted.
pub async fn remove(docker: &Docker, images: &[Tagged], tags: &[String]) -> Result<Pruned, BackendError> {
    let mut pruned = Pruned::default();
    let sizes: HashMap<&str, i64> = images.iter().map(|i| (i.tag.as_str(), i.size)).collect();
    for tag in tags {
        let options = RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        match docker.remove_image(tag, Some(options), None).await {
            Ok(deleted) => {
                // Untagging one of several tags frees nothing.
                if deleted.iter().any(|d| d.deleted.is_some()) {
                    pruned.bytes += sizes.get(tag.as_str()).copied().unwrap_or(0);
                }
                pruned.removed.push(tag.clone());
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                pruned.in_use.push(tag.clone());
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
            Err(source) => return Err(BackendError::Engine { operation: format!("cannot remove {tag}"), source }),
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(tag: &str, created: i64, home: Option<&str>) -> Tagged {
        Tagged { tag: tag.into(), created, home: home.map(str::to_string), size: 10 }
    }

    #[test]
    fn keeps_what_is_used_recent_or_not_ours() {
        let keep = Keep {
            home: "/h".into(),
            identities: ["alive".to_string()].into(),
            tags: ["bot-bottle-sidecar:now".to_string(), "bot-bottle-agent-x:recorded".to_string()].into(),
            keep_recent: Duration::from_secs(600),
        };
        let images = [
            image("bot-bottle-sidecar:now", 0, None),
            image("bot-bottle-sidecar:old", 0, None),
            image("bot-bottle-agent-x:recorded", 0, None),
            image("bot-bottle-agent-x:fresh", 9_500, None),
            image("bot-bottle-commit:alive", 0, Some("/h")),
            image("bot-bottle-commit:gone", 0, Some("/h")),
            image("bot-bottle-commit:elsewhere", 0, Some("/other")),
            image("bot-bottle-commit:unlabelled", 0, None),
            image("debian:12", 0, None),
        ];
        let removed: Vec<String> = decide(&images, &keep, 10_000).into_iter().map(|(t, _)| t).collect();
        assert_eq!(removed, ["bot-bottle-sidecar:old", "bot-bottle-commit:gone"]);
    }
}
