//! Env values (`?`, `?text`, `${NAME}`, literal) and their resolution.
//!
//! Asked and copied values are *forwarded*: they live in [`Secret`]s from the
//! moment they are read, and errors name the variable, never the value.

use std::collections::BTreeMap;

use secret::Secret;
use serde::Serialize;

use crate::error::ManifestError;

/// An env value as written in a bottle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EnvValue {
    /// `?` or `?text`: asked on the TTY at launch, without echo.
    Ask {
        /// The question (`?text`); none: the variable's name is asked.
        prompt: Option<String>,
    },
    /// `${NAME}`: copied from the host environment.
    Host {
        /// The host variable.
        name: String,
    },
    /// Anything else, used as written.
    Literal {
        /// The value.
        value: String,
    },
}

impl EnvValue {
    /// Classify a written value. `Err` carries the reason for a malformed `${…}`.
    pub fn parse(text: &str) -> Result<EnvValue, String> {
        if let Some(prompt) = text.strip_prefix('?') {
            let prompt = prompt.trim();
            return Ok(EnvValue::Ask { prompt: (!prompt.is_empty()).then(|| prompt.to_string()) });
        }
        if let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) {
            if !is_env_name(inner) {
                return Err(format!("`${{{inner}}}` does not name a host variable (use letters, digits and '_')"));
            }
            return Ok(EnvValue::Host { name: inner.to_string() });
        }
        Ok(EnvValue::Literal { value: text.to_string() })
    }

    /// Asked and copied values are forwarded secrets; literals are not.
    pub fn is_forwarded(&self) -> bool {
        !matches!(self, EnvValue::Literal { .. })
    }
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`: a name a shell and `docker run -e` accept.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A resolved env value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Written in the manifest: not a secret.
    Literal(String),
    /// Copied from the host or asked: a secret the DLP watches for.
    Forwarded(Secret<String>),
    /// A `?` value in a preview (`--dry-run`): it will be asked at launch.
    AskedAtLaunch,
}

/// Asks the operator for one variable: `(name, prompt)` to the secret, or
/// why it could not be read.
pub type Asker<'a> = dyn FnMut(&str, Option<&str>) -> Result<Secret<String>, String> + 'a;

/// How `?` values are answered.
pub enum AskMode<'a> {
    /// Ask on the operator's terminal.
    Interactive(&'a mut Asker<'a>),
    /// Headless: nobody to ask, so a `?` value is an error naming it.
    Headless,
    /// Preview (`--dry-run`): do not ask; the value is asked at launch.
    Preview,
}

/// Resolve every value. `host` reads the host environment.
pub fn resolve(
    env: &BTreeMap<String, EnvValue>,
    host: &dyn Fn(&str) -> Option<String>,
    mut ask: AskMode<'_>,
) -> Result<BTreeMap<String, Resolved>, ManifestError> {
    let mut out = BTreeMap::new();
    for (name, value) in env {
        let resolved = match value {
            EnvValue::Literal { value } => Resolved::Literal(value.clone()),
            EnvValue::Host { name: host_name } => match host(host_name) {
                Some(v) => Resolved::Forwarded(Secret::new(v)),
                None => {
                    return Err(ManifestError::Env {
                        variable: name.clone(),
                        message: format!(
                            "env `{name}` copies the host variable `{host_name}`, which is not set; export {host_name} before starting"
                        ),
                    });
                }
            },
            EnvValue::Ask { prompt } => match &mut ask {
                AskMode::Preview => Resolved::AskedAtLaunch,
                AskMode::Headless => {
                    return Err(ManifestError::Env {
                        variable: name.clone(),
                        message: format!(
                            "env `{name}` is asked at launch (\"?\"), but a headless start cannot ask; \
                             use \"${{HOST_VAR}}\" in the bottle to copy it from the environment instead"
                        ),
                    });
                }
                AskMode::Interactive(asker) => Resolved::Forwarded(asker(name, prompt.as_deref()).map_err(|why| {
                    ManifestError::Env { variable: name.clone(), message: format!("env `{name}`: {why}") }
                })?),
            },
        };
        out.insert(name.clone(), resolved);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_values() {
        assert_eq!(EnvValue::parse("?").unwrap(), EnvValue::Ask { prompt: None });
        assert_eq!(EnvValue::parse("?Your token").unwrap(), EnvValue::Ask { prompt: Some("Your token".into()) });
        assert_eq!(EnvValue::parse("${GH_TOKEN}").unwrap(), EnvValue::Host { name: "GH_TOKEN".into() });
        assert_eq!(EnvValue::parse("a ${B}").unwrap(), EnvValue::Literal { value: "a ${B}".into() });
        assert!(EnvValue::parse("${}").is_err());
        assert!(EnvValue::parse("${A-B}").is_err());
    }

    #[test]
    fn errors_name_the_variable_never_the_value() {
        let env = BTreeMap::from([("TOKEN".to_string(), EnvValue::Host { name: "MISSING_VAR".into() })]);
        let err = resolve(&env, &|_| None, AskMode::Headless).unwrap_err().to_string();
        assert!(err.contains("TOKEN") && err.contains("MISSING_VAR"), "{err}");

        let env = BTreeMap::from([("PW".to_string(), EnvValue::Ask { prompt: None })]);
        let err = resolve(&env, &|_| None, AskMode::Headless).unwrap_err().to_string();
        assert!(err.contains("PW") && err.contains("headless"), "{err}");
    }

    #[test]
    fn forwarded_values_are_secrets() {
        let env = BTreeMap::from([
            ("A".to_string(), EnvValue::Host { name: "HOST_A".into() }),
            ("B".to_string(), EnvValue::Ask { prompt: Some("b?".into()) }),
            ("C".to_string(), EnvValue::Literal { value: "plain".into() }),
        ]);
        let mut asked = Vec::new();
        let mut asker = |name: &str, prompt: Option<&str>| {
            asked.push((name.to_string(), prompt.map(str::to_string)));
            Ok(Secret::new("typed-value".to_string()))
        };
        let out =
            resolve(&env, &|n| (n == "HOST_A").then(|| "host-value".to_string()), AskMode::Interactive(&mut asker))
                .unwrap();
        assert_eq!(out["A"], Resolved::Forwarded(Secret::new("host-value".into())));
        assert_eq!(out["C"], Resolved::Literal("plain".into()));
        let printed = format!("{out:?}");
        assert!(!printed.contains("host-value") && !printed.contains("typed-value"), "{printed}");
        assert_eq!(asked, vec![("B".to_string(), Some("b?".to_string()))]);
        let preview = resolve(&env, &|_| Some("x".into()), AskMode::Preview).unwrap();
        assert_eq!(preview["B"], Resolved::AskedAtLaunch);
    }
}
