//! What `agent_provider.settings` means (the manifest keeps it a free map,
//! spec/manifest.md): for `pi`, the model provider and model, which give
//! its API route, the placeholder it holds and `~/.pi/agent/settings.json`;
//! for `shell`, the command it runs. Other providers take no settings.
//! Pure: a provider and the map in, the provider the bottle runs and the
//! operator's warnings out. A wrong value is an error naming the key; an
//! unknown key is a warning (a manifest written for another version of the
//! tool still starts).

use serde_json::{Map, Value};

use crate::provider::Provider;

/// One of pi's model providers whose API takes `Authorization: Bearer`,
/// so the sidecar can inject the operator's token on its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiApi {
    /// pi's name for it (`--provider`, `defaultProvider`).
    pub name: &'static str,
    pub host: &'static str,
    /// The variable pi reads the key from; the agent's holds a placeholder.
    pub env: &'static str,
    pub placeholder: &'static str,
}

/// pi's providers a bottle can route. Anthropic's placeholder has the shape
/// of a Claude OAuth token, so pi sends it as Bearer (an API key would go
/// in `x-api-key`, which the sidecar does not replace): `auth_token` is a
/// token from `claude setup-token`, as for the `claude` provider.
pub const PI_APIS: &[PiApi] = &[
    PiApi {
        name: "anthropic",
        host: "api.anthropic.com",
        env: "ANTHROPIC_OAUTH_TOKEN",
        placeholder: "sk-ant-oat01-bot-bottle-placeholder",
    },
    PiApi { name: "openai", host: "api.openai.com", env: "OPENAI_API_KEY", placeholder: PH },
    PiApi { name: "openrouter", host: "openrouter.ai", env: "OPENROUTER_API_KEY", placeholder: PH },
    PiApi { name: "groq", host: "api.groq.com", env: "GROQ_API_KEY", placeholder: PH },
    PiApi { name: "xai", host: "api.x.ai", env: "XAI_API_KEY", placeholder: PH },
    PiApi { name: "deepseek", host: "api.deepseek.com", env: "DEEPSEEK_API_KEY", placeholder: PH },
    PiApi { name: "mistral", host: "api.mistral.ai", env: "MISTRAL_API_KEY", placeholder: PH },
    PiApi { name: "cerebras", host: "api.cerebras.ai", env: "CEREBRAS_API_KEY", placeholder: PH },
];

const PH: &str = crate::host_login::PLACEHOLDER;

/// pi's settings file, under the agent's home.
pub const PI_SETTINGS_FILE: &str = ".pi/agent/settings.json";

/// `provider` as `settings` configure it, and what the operator should
/// know. Errors name the key (`agent_provider.settings.…`).
pub fn configure(mut provider: Provider, settings: &Map<String, Value>) -> Result<(Provider, Vec<String>), String> {
    let known: &[&str] = match provider.name.as_str() {
        "pi" => &["provider", "model"],
        "shell" => &["command", "headless"],
        _ => &[],
    };
    let mut warnings: Vec<String> = settings
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .map(|k| {
            let takes = if known.is_empty() { "no settings".to_string() } else { known.join(", ") };
            format!("agent_provider.settings.{k} is ignored: provider '{}' takes {takes}", provider.name)
        })
        .collect();
    match provider.name.as_str() {
        "pi" => configure_pi(&mut provider, settings)?,
        "shell" => configure_shell(&mut provider, settings)?,
        _ => {}
    }
    warnings.sort();
    Ok((provider, warnings))
}

fn string<'a>(settings: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, String> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.as_str())),
        Some(other) => Err(format!("agent_provider.settings.{key} must be a non-empty string, not {other}")),
    }
}

/// A list of strings, or one string split at whitespace.
fn words(settings: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    let wrong = |v: &Value| format!("agent_provider.settings.{key} must be a list of strings or a string, not {v}");
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.split_whitespace().map(str::to_string).collect())),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| wrong(v)))
            .collect::<Result<_, _>>()
            .map(Some),
        Some(other) => Err(wrong(other)),
    }
}

fn configure_pi(provider: &mut Provider, settings: &Map<String, Value>) -> Result<(), String> {
    let name = string(settings, "provider")?.unwrap_or("anthropic");
    let api = PI_APIS.iter().find(|a| a.name == name).ok_or_else(|| {
        let names: Vec<&str> = PI_APIS.iter().map(|a| a.name).collect();
        format!(
            "agent_provider.settings.provider is '{name}': a bottle can route pi's {} (their APIs take a Bearer token the sidecar injects)",
            names.join(", ")
        )
    })?;
    provider.auth_token_hosts = vec![api.host.to_string()];
    provider.placeholder_env = vec![(api.env.to_string(), api.placeholder.to_string())];
    let mut file = serde_json::json!({
        "defaultProvider": api.name,
        "enableInstallTelemetry": false,
        "quietStartup": true,
    });
    if let Some(model) = string(settings, "model")? {
        file["defaultModel"] = Value::String(model.to_string());
    }
    provider.files.insert(PI_SETTINGS_FILE.to_string(), format!("{file:#}\n"));
    Ok(())
}

fn configure_shell(provider: &mut Provider, settings: &Map<String, Value>) -> Result<(), String> {
    if let Some(command) = words(settings, "command")? {
        if command.first().is_none_or(|c| c.trim().is_empty()) {
            return Err("agent_provider.settings.command is empty: give the program to run".to_string());
        }
        provider.command = command;
        // A command of the operator's own takes the prompt as its last
        // argument, unless `headless` says which flags go before it.
        provider.headless = Vec::new();
    }
    if let Some(headless) = words(settings, "headless")? {
        provider.headless = headless;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::builtin;

    fn settings(json: Value) -> Map<String, Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn pi_routes_its_providers_api_and_holds_only_a_placeholder() {
        let (pi, warnings) = configure(builtin("pi").unwrap(), &Map::new()).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(pi.auth_token_hosts, ["api.anthropic.com"]);
        assert_eq!(
            pi.placeholder_env,
            [("ANTHROPIC_OAUTH_TOKEN".into(), "sk-ant-oat01-bot-bottle-placeholder".into())]
        );
        let file: Value = serde_json::from_str(&pi.files[PI_SETTINGS_FILE]).unwrap();
        assert_eq!(file["defaultProvider"], "anthropic");
        assert!(file.get("defaultModel").is_none());

        let (pi, _) =
            configure(builtin("pi").unwrap(), &settings(serde_json::json!({"provider": "openai", "model": "gpt-5"})))
                .unwrap();
        assert_eq!(pi.auth_token_hosts, ["api.openai.com"]);
        assert_eq!(pi.placeholder_env, [("OPENAI_API_KEY".into(), PH.into())]);
        let file: Value = serde_json::from_str(&pi.files[PI_SETTINGS_FILE]).unwrap();
        assert_eq!((file["defaultProvider"].as_str(), file["defaultModel"].as_str()), (Some("openai"), Some("gpt-5")));
    }

    #[test]
    fn wrong_values_are_errors_naming_the_key_and_unknown_keys_are_warnings() {
        let pi = || builtin("pi").unwrap();
        let e = configure(pi(), &settings(serde_json::json!({"provider": "google"}))).unwrap_err();
        assert!(e.contains("settings.provider") && e.contains("google") && e.contains("anthropic"), "{e}");
        let e = configure(pi(), &settings(serde_json::json!({"model": 4}))).unwrap_err();
        assert!(e.contains("settings.model"), "{e}");
        let (_, w) = configure(pi(), &settings(serde_json::json!({"modle": "x"}))).unwrap();
        assert_eq!(w, ["agent_provider.settings.modle is ignored: provider 'pi' takes provider, model"]);
        let (claude, w) =
            configure(builtin("claude").unwrap(), &settings(serde_json::json!({"model": "opus"}))).unwrap();
        assert_eq!(claude, builtin("claude").unwrap());
        assert_eq!(w, ["agent_provider.settings.model is ignored: provider 'claude' takes no settings"]);
    }

    #[test]
    fn shell_runs_the_operators_command() {
        let shell = || builtin("shell").unwrap();
        let (s, _) = configure(shell(), &Map::new()).unwrap();
        assert_eq!(s.argv(Some("echo hi"), false), ["bash", "-l", "-c", "echo hi"]);
        let (s, _) = configure(shell(), &settings(serde_json::json!({"command": "aider --yes"}))).unwrap();
        assert_eq!(s.argv(None, false), ["aider", "--yes"]);
        assert_eq!(s.argv(Some("fix it"), false), ["aider", "--yes", "fix it"]);
        let (s, _) = configure(
            shell(),
            &settings(serde_json::json!({"command": ["my agent", "-v"], "headless": ["--message"]})),
        )
        .unwrap();
        assert_eq!(s.argv(Some("fix it"), false), ["my agent", "-v", "--message", "fix it"]);
        let e = configure(shell(), &settings(serde_json::json!({"command": []}))).unwrap_err();
        assert!(e.contains("settings.command is empty"), "{e}");
        let e = configure(shell(), &settings(serde_json::json!({"command": ["a", 1]}))).unwrap_err();
        assert!(e.contains("settings.command must be"), "{e}");
    }
}
