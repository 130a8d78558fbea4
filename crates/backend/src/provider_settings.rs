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
    /// The API's host.
    pub host: &'static str,
    /// The variable pi reads the key from; the agent's holds a placeholder.
    pub env: &'static str,
    /// The placeholder value the agent holds for the key.
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
        "pi" => &["provider", "model", "base_url", "api", "api_key", "models", "allow_private"],
        "shell" => &["command", "headless"],
        _ => &[],
    };
    // pi's `supports_*` flags (the original's spelling of its compat
    // switches) are known by their prefix.
    let pi_compat = |k: &str| provider.name == "pi" && k.starts_with("supports_");
    let mut warnings: Vec<String> = settings
        .keys()
        .filter(|k| !known.contains(&k.as_str()) && !pi_compat(k))
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

/// pi's `models.json`, for a custom endpoint, under the agent's home.
pub const PI_MODELS_FILE: &str = ".pi/agent/models.json";

/// The variable pi reads a custom endpoint's key from (it holds the
/// placeholder; the sidecar injects the real key).
pub const PI_CUSTOM_KEY_ENV: &str = "BOT_BOTTLE_PI_API_KEY";

/// pi's APIs a custom endpoint can speak (its `models.json` `api`).
const PI_CUSTOM_APIS: &[&str] =
    &["openai-completions", "openai-responses", "anthropic-messages", "google-generative-ai"];

fn configure_pi(provider: &mut Provider, settings: &Map<String, Value>) -> Result<(), String> {
    if settings.contains_key("base_url") {
        return configure_pi_endpoint(provider, settings);
    }
    for key in ["api", "api_key", "models", "allow_private"] {
        if settings.contains_key(key) {
            return Err(format!(
                "agent_provider.settings.{key} is for a custom endpoint: give agent_provider.settings.base_url too"
            ));
        }
    }
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

/// pi on a custom or local endpoint (the original's pi settings: an
/// OpenAI-compatible server such as ollama by default): a route for
/// `base_url`'s host and port, its key injected when `api_key` names a host
/// variable, and pi's `models.json` written to match (`compat` from the
/// `supports_*` flags).
fn configure_pi_endpoint(provider: &mut Provider, settings: &Map<String, Value>) -> Result<(), String> {
    let name = string(settings, "provider")?.unwrap_or("ollama");
    if !manifest::is_valid_name(name) {
        return Err(format!("agent_provider.settings.provider '{name}' must match ^[a-z][a-z0-9-]*$"));
    }
    let base_url = string(settings, "base_url")?.unwrap_or_default();
    let bad_url = |why: &str| format!("agent_provider.settings.base_url '{base_url}' {why}");
    let (scheme, rest) = base_url.split_once("://").ok_or_else(|| bad_url("needs a scheme: http:// or https://"))?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return Err(bad_url("needs http:// or https://")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad_url("has a port that is not a number"))?),
        None => (authority, default_port),
    };
    let host = host.to_ascii_lowercase();
    manifest::validate_host(&host).map_err(|e| bad_url(&format!("names no routable host: {e}")))?;
    if host == "localhost" || host.ends_with(".localhost") {
        return Err(bad_url(
            "is the agent itself inside a bottle: name the machine that serves the models (and settings.allow_private: true for one on your network)",
        ));
    }
    let api = string(settings, "api")?.unwrap_or("openai-completions");
    if !PI_CUSTOM_APIS.contains(&api) {
        return Err(format!("agent_provider.settings.api is '{api}': pi speaks {}", PI_CUSTOM_APIS.join(", ")));
    }
    let models = pi_models(settings)?;
    let mut compat = Map::new();
    for (key, value) in settings.iter().filter(|(k, _)| k.starts_with("supports_")) {
        let flag = value.as_bool().ok_or_else(|| format!("agent_provider.settings.{key} must be true or false"))?;
        let camel: String = key
            .split('_')
            .enumerate()
            .map(|(i, w)| if i == 0 { w.to_string() } else { w[..1].to_uppercase() + &w[1..] })
            .collect();
        compat.insert(camel, Value::Bool(flag));
    }
    let api_key = string(settings, "api_key")?;
    if let Some(var) = api_key
        && !manifest::is_env_name(var)
    {
        return Err(format!(
            "agent_provider.settings.api_key is the NAME of a host variable holding the key (the agent never holds it), not '{}'",
            sidecar::agent::mask(var.as_bytes())
        ));
    }
    let mut entry = serde_json::json!({
        "baseUrl": base_url,
        "api": api,
        // pi reads the variable; the agent's holds a placeholder, or, with
        // no key, any value (a local server ignores it).
        "apiKey": if api_key.is_some() { PI_CUSTOM_KEY_ENV } else { "bot-bottle-no-key" },
        "authHeader": api_key.is_some(),
        "models": models,
    });
    if !compat.is_empty() {
        entry["compat"] = Value::Object(compat);
    }
    let default_model = string(settings, "model")?
        .map(str::to_string)
        .or_else(|| entry["models"][0]["id"].as_str().map(str::to_string))
        .unwrap_or_default();
    let models_file = serde_json::json!({ "providers": { name: entry } });
    provider.files.insert(PI_MODELS_FILE.to_string(), format!("{models_file:#}\n"));
    let file = serde_json::json!({
        "defaultProvider": name,
        "defaultModel": default_model,
        "enableInstallTelemetry": false,
        "quietStartup": true,
    });
    provider.files.insert(PI_SETTINGS_FILE.to_string(), format!("{file:#}\n"));
    provider.auth_token_hosts = vec![host];
    provider.api_port = Some(port);
    provider.api_allow_private = match settings.get("allow_private") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("agent_provider.settings.allow_private must be true or false, not {other}")),
    };
    provider.token_ref = api_key.map(str::to_string);
    provider.placeholder_env =
        if api_key.is_some() { vec![(PI_CUSTOM_KEY_ENV.to_string(), PH.to_string())] } else { Vec::new() };
    Ok(())
}

/// `models`: model ids, or objects with pi's fields in the original's
/// snake_case (`context_window`, `max_tokens`); `model` alone is one.
fn pi_models(settings: &Map<String, Value>) -> Result<Vec<Value>, String> {
    let wrong = |why: String| format!("agent_provider.settings.models {why}");
    let list = match settings.get("models") {
        None | Some(Value::Null) => match string(settings, "model")? {
            Some(m) => vec![Value::String(m.to_string())],
            None => {
                return Err(
                    "a custom endpoint needs agent_provider.settings.models (or model): the ids it serves".into()
                );
            }
        },
        Some(Value::Array(items)) if !items.is_empty() => items.clone(),
        Some(Value::String(s)) => s.split_whitespace().map(|m| Value::String(m.to_string())).collect(),
        Some(other) => return Err(wrong(format!("must be a list of model ids or objects, not {other}"))),
    };
    list.into_iter()
        .map(|m| match m {
            Value::String(id) => Ok(serde_json::json!({ "id": id })),
            Value::Object(fields) => {
                let mut out = Map::new();
                for (k, v) in fields {
                    let key = match k.as_str() {
                        "id" | "name" | "reasoning" | "input" | "cost" | "api" => k.clone(),
                        "context_window" | "contextWindow" => "contextWindow".to_string(),
                        "max_tokens" | "maxTokens" => "maxTokens".to_string(),
                        other => {
                            return Err(wrong(format!(
                                "has '{other}': use id, name, reasoning, input, context_window, max_tokens, cost"
                            )));
                        }
                    };
                    out.insert(key, v);
                }
                if !out.get("id").is_some_and(Value::is_string) {
                    return Err(wrong("has a model without an `id`".to_string()));
                }
                Ok(Value::Object(out))
            }
            other => Err(wrong(format!("has {other}: give model ids or objects"))),
        })
        .collect()
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

    /// The original's pi settings: an OpenAI-compatible server (ollama by
    /// default) at `base_url`, its models, its key named by `api_key`.
    #[test]
    fn pi_on_a_custom_endpoint_gets_its_route_and_models_json() {
        let (pi, warnings) = configure(
            builtin("pi").unwrap(),
            &settings(serde_json::json!({
                "base_url": "http://gpu.lan:11434/v1",
                "models": ["qwen2.5-coder:7b", {"id": "gpt-oss:20b", "reasoning": true, "context_window": 131072}],
                "supports_developer_role": false,
                "supports_reasoning_effort": false,
                "allow_private": true,
            })),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            (pi.auth_token_hosts.clone(), pi.api_port, pi.api_allow_private),
            (vec!["gpu.lan".to_string()], Some(11434), true)
        );
        assert_eq!(pi.token_ref, None);
        assert!(pi.placeholder_env.is_empty());
        let models: Value = serde_json::from_str(&pi.files[PI_MODELS_FILE]).unwrap();
        let ollama = &models["providers"]["ollama"];
        assert_eq!(ollama["baseUrl"], "http://gpu.lan:11434/v1");
        assert_eq!(ollama["api"], "openai-completions");
        assert_eq!(
            ollama["compat"],
            serde_json::json!({"supportsDeveloperRole": false, "supportsReasoningEffort": false})
        );
        assert_eq!(
            ollama["models"][1],
            serde_json::json!({"id": "gpt-oss:20b", "reasoning": true, "contextWindow": 131072})
        );
        let file: Value = serde_json::from_str(&pi.files[PI_SETTINGS_FILE]).unwrap();
        assert_eq!(
            (file["defaultProvider"].as_str(), file["defaultModel"].as_str()),
            (Some("ollama"), Some("qwen2.5-coder:7b"))
        );
        // A key named by api_key: injected by the sidecar, the agent holds
        // a placeholder under the variable models.json names.
        let (pi, _) = configure(
            builtin("pi").unwrap(),
            &settings(serde_json::json!({"provider": "vllm", "base_url": "https://llm.example.com/v1", "model": "m", "api_key": "VLLM_KEY"})),
        )
        .unwrap();
        assert_eq!((pi.api_port, pi.token_ref.as_deref()), (Some(443), Some("VLLM_KEY")));
        assert_eq!(pi.placeholder_env, [(PI_CUSTOM_KEY_ENV.to_string(), PH.to_string())]);
        let models: Value = serde_json::from_str(&pi.files[PI_MODELS_FILE]).unwrap();
        assert_eq!(models["providers"]["vllm"]["apiKey"], PI_CUSTOM_KEY_ENV);
        assert_eq!(models["providers"]["vllm"]["authHeader"], true);
        // Wrong values name the key.
        let bad = |json: Value| configure(builtin("pi").unwrap(), &settings(json)).unwrap_err();
        assert!(
            bad(serde_json::json!({"base_url": "http://localhost:11434/v1", "model": "m"}))
                .contains("the agent itself")
        );
        assert!(
            bad(serde_json::json!({"base_url": "http://10.0.0.5:11434/v1", "model": "m"}))
                .contains("settings.base_url")
        );
        assert!(bad(serde_json::json!({"base_url": "https://x.example/v1"})).contains("settings.models"));
        assert!(
            bad(serde_json::json!({"base_url": "https://x.example/v1", "model": "m", "api": "grpc"}))
                .contains("settings.api")
        );
        assert!(
            bad(serde_json::json!({"base_url": "https://x.example/v1", "model": "m", "api_key": "sk-live-123"}))
                .contains("NAME of a host variable")
        );
        assert!(
            bad(serde_json::json!({"base_url": "https://x.example/v1", "model": "m", "supports_store": "no"}))
                .contains("supports_store")
        );
        assert!(bad(serde_json::json!({"api_key": "K"})).contains("give agent_provider.settings.base_url too"));
    }

    #[test]
    fn wrong_values_are_errors_naming_the_key_and_unknown_keys_are_warnings() {
        let pi = || builtin("pi").unwrap();
        let e = configure(pi(), &settings(serde_json::json!({"provider": "google"}))).unwrap_err();
        assert!(e.contains("settings.provider") && e.contains("google") && e.contains("anthropic"), "{e}");
        let e = configure(pi(), &settings(serde_json::json!({"model": 4}))).unwrap_err();
        assert!(e.contains("settings.model"), "{e}");
        let (_, w) = configure(pi(), &settings(serde_json::json!({"modle": "x"}))).unwrap();
        assert_eq!(
            w,
            [
                "agent_provider.settings.modle is ignored: provider 'pi' takes provider, model, base_url, api, api_key, models, allow_private"
            ]
        );
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
