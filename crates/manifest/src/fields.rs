//! Typed reads from a strict-YAML [`Node`] tree, each failure naming the file,
//! the key path and what was expected. Shared by the bottle and agent schemas.

use std::path::{Path, PathBuf};

use crate::error::ManifestError;
use crate::yaml::{Node, Value};

/// Where a value comes from: the file, and what it describes ("bottle 'dev'").
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub file: PathBuf,
    pub what: String,
}

impl Ctx {
    pub fn new(file: &Path, what: String) -> Self {
        Ctx { file: file.to_path_buf(), what }
    }

    pub fn error(&self, line: Option<usize>, key: &str, message: impl Into<String>) -> ManifestError {
        ManifestError::Invalid { file: self.file.clone(), line, key: key.to_string(), message: message.into() }
    }

    pub fn at(&self, node: &Node, key: &str, message: impl Into<String>) -> ManifestError {
        self.error(Some(node.line), key, message)
    }

    /// The entries of a map, or an error saying a map was expected.
    pub fn map<'n>(&self, key: &str, node: &'n Node) -> Result<&'n [(String, Node)], ManifestError> {
        match &node.value {
            Value::Map(entries) => Ok(entries),
            _ => Err(self.at(node, key, format!("{} `{key}` must be a map, found {}", self.what, node.kind()))),
        }
    }

    /// Entries of an optional map: null means empty.
    pub fn map_or_empty<'n>(&self, key: &str, node: &'n Node) -> Result<&'n [(String, Node)], ManifestError> {
        if node.is_null() { Ok(&[]) } else { self.map(key, node) }
    }

    /// A map whose keys must all be `allowed`; `removed` keys fail with
    /// their migration hint.
    pub fn keyed<'n>(
        &self,
        key: &str,
        node: &'n Node,
        allowed: &[&str],
        removed: &[(&str, &str)],
    ) -> Result<&'n [(String, Node)], ManifestError> {
        let entries = self.map(key, node)?;
        self.check_keys(key, node, entries, allowed, removed)?;
        Ok(entries)
    }

    /// As [`Ctx::keyed`], with null meaning an empty map.
    pub fn keyed_or_empty<'n>(
        &self,
        key: &str,
        node: &'n Node,
        allowed: &[&str],
        removed: &[(&str, &str)],
    ) -> Result<&'n [(String, Node)], ManifestError> {
        if node.is_null() { Ok(&[]) } else { self.keyed(key, node, allowed, removed) }
    }

    /// The entry `field` of the map `key`, or an error naming it and `hint`.
    pub fn required<'n>(
        &self,
        key: &str,
        node: &Node,
        entries: &'n [(String, Node)],
        field: &str,
        hint: &str,
    ) -> Result<&'n Node, ManifestError> {
        get(entries, field)
            .ok_or_else(|| self.at(node, &join(key, field), format!("{} `{key}` has no `{field}`; {hint}", self.what)))
    }

    /// One of a fixed set of words: `options` pairs each value with the
    /// spellings accepted for it (the first is the one error messages name).
    pub fn choice<T: Copy>(&self, key: &str, node: &Node, options: &[(&[&str], T)]) -> Result<T, ManifestError> {
        let word = self.string(key, node)?;
        if let Some((_, value)) = options.iter().find(|(spellings, _)| spellings.contains(&word.as_str())) {
            return Ok(*value);
        }
        let names: Vec<&str> = options.iter().map(|(spellings, _)| spellings[0]).collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        Err(self.at(node, key, format!("{} `{key}` is '{word}'; use {list}", self.what)))
    }

    /// A field that names a host environment variable (`token_ref`,
    /// `auth_token`, `provisioner_token`). A pasted token is refused without
    /// echoing it.
    pub fn var_name(&self, key: &str, node: &Node) -> Result<String, ManifestError> {
        let name = self.string(key, node)?;
        if !crate::env::is_env_name(&name) {
            return Err(self.at(
                node,
                key,
                format!(
                    "{} `{key}` must be the NAME of a host environment variable (letters, digits, '_'), not a token",
                    self.what
                ),
            ));
        }
        Ok(name)
    }

    pub fn list<'n>(&self, key: &str, node: &'n Node) -> Result<&'n [Node], ManifestError> {
        match &node.value {
            Value::Seq(items) => Ok(items),
            _ if node.is_null() => Ok(&[]),
            _ => Err(self.at(node, key, format!("{} `{key}` must be a list, found {}", self.what, node.kind()))),
        }
    }

    /// A scalar as text. Plain numbers and booleans are accepted as their
    /// literal text (`PORT: 8080` means "8080"); null, lists and maps are not.
    pub fn string(&self, key: &str, node: &Node) -> Result<String, ManifestError> {
        match &node.value {
            Value::Scalar { text, .. } if !node.is_null() => Ok(text.clone()),
            _ => Err(self.at(node, key, format!("{} `{key}` must be a string, found {}", self.what, node.kind()))),
        }
    }

    pub fn bool(&self, key: &str, node: &Node) -> Result<bool, ManifestError> {
        match &node.value {
            Value::Scalar { text, plain: true } if matches!(text.as_str(), "true" | "True" | "TRUE") => Ok(true),
            Value::Scalar { text, plain: true } if matches!(text.as_str(), "false" | "False" | "FALSE") => Ok(false),
            _ => Err(self.at(node, key, format!("{} `{key}` must be true or false, found {}", self.what, node.kind()))),
        }
    }

    /// One name or a list of names (`extends`, an agent's `bottle`).
    pub fn name_or_list(&self, key: &str, node: &Node) -> Result<Vec<String>, ManifestError> {
        let names = match &node.value {
            _ if node.is_null() => Vec::new(),
            Value::Scalar { .. } => vec![self.string(key, node)?],
            Value::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.string(&format!("{key}[{i}]"), item))
                .collect::<Result<_, _>>()?,
            Value::Map(_) => {
                return Err(self.at(
                    node,
                    key,
                    format!("{} `{key}` must be a name or a list of names, found a map", self.what),
                ));
            }
        };
        for name in &names {
            if !crate::is_valid_name(name) {
                return Err(self.at(node, key, format!(
                    "{} `{key}` names '{name}', which is not a valid name (lowercase letters, digits and '-', starting with a letter)",
                    self.what
                )));
            }
        }
        Ok(names)
    }

    /// Refuse unknown keys (with "did you mean") and removed keys (with
    /// their migration hint). `key` is the path of the map ("" for the root).
    pub fn check_keys(
        &self,
        key: &str,
        node: &Node,
        entries: &[(String, Node)],
        allowed: &[&str],
        removed: &[(&str, &str)],
    ) -> Result<(), ManifestError> {
        for (k, v) in entries {
            if let Some((_, hint)) = removed.iter().find(|(r, _)| r == k) {
                return Err(self.at(
                    v,
                    &join(key, k),
                    format!("{} uses the removed key `{}`: {hint}", self.what, join(key, k)),
                ));
            }
        }
        let unknown: Vec<&String> = entries.iter().map(|(k, _)| k).filter(|k| !allowed.contains(&k.as_str())).collect();
        if unknown.is_empty() {
            return Ok(());
        }
        let where_ = if key.is_empty() { String::new() } else { format!(" in `{key}`") };
        let mut message = format!(
            "{} has unknown key(s) [{}]{where_}; allowed keys are {}",
            self.what,
            unknown.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "),
            allowed.join(", ")
        );
        let suggestions: Vec<String> =
            unknown.iter().filter_map(|k| closest(k, allowed).map(|s| format!("'{s}' for '{k}'"))).collect();
        if !suggestions.is_empty() {
            message.push_str(&format!(" (did you mean {}?)", suggestions.join(", ")));
        }
        let line = entries.iter().find(|(k, _)| k == unknown[0]).map(|(_, v)| v.line).unwrap_or(node.line);
        Err(self.error(Some(line), &join(key, unknown[0]), message))
    }
}

/// The entry `field` of a map's entries.
pub(crate) fn get<'n>(entries: &'n [(String, Node)], field: &str) -> Option<&'n Node> {
    entries.iter().find(|(k, _)| k == field).map(|(_, v)| v)
}

/// `parent.child`, or `child` at the root.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() { child.to_string() } else { format!("{parent}.{child}") }
}

/// The allowed name closest to `word`, when it is close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
