//! The host's own provider login, forwarded (`forward_host_credentials`):
//! Codex's `~/.codex/auth.json` from a ChatGPT sign-in. The real access
//! token goes to the sidecar only; the agent gets a stand-in `auth.json` of
//! the same shape — the tokens' JWT headers and claims kept (so the CLI
//! sees the same account, plan and expiry and does not try to refresh),
//! their signatures and the refresh token replaced by placeholders. Pure:
//! the caller reads the file.

use base64::Engine as _;
use secret::Secret;

/// What the placeholders say: the value egress's credential-position check
/// lets through (one constant for both).
pub const PLACEHOLDER: &str = sidecar::agent::PLACEHOLDER;

/// A usable ChatGPT login.
#[derive(Debug)]
pub struct CodexLogin {
    /// What the sidecar injects as Bearer.
    pub access_token: Secret<String>,
    /// The `auth.json` the agent gets.
    pub stand_in: String,
}

/// Why a login cannot be forwarded, with what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LoginError {
    /// The login file (its path, why) is not JSON.
    #[error("{0} is not valid JSON ({1}); log in again with `codex login`")]
    Malformed(String, String),
    #[error(
        "{0} holds an API key, not a ChatGPT sign-in: give the key to the bottle with agent_provider.auth_token (the variable's name) instead of forward_host_credentials"
    )]
    /// The login file (its path) holds an API key, not a sign-in.
    ApiKeyMode(String),
    /// The login file (its path) holds no tokens.
    #[error("{0} has no ChatGPT tokens; log in with `codex login`")]
    NoTokens(String),
    /// The login (its path) expired (at, unix time).
    #[error("the login in {0} expired at {1} (unix time); log in again with `codex login` on this host")]
    Expired(String, u64),
}

fn claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The token with its signature replaced: same header and claims.
fn unsigned(jwt: &str) -> String {
    let mut parts = jwt.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some(h), Some(p)) => format!("{h}.{p}.{PLACEHOLDER}"),
        _ => PLACEHOLDER.to_string(),
    }
}

/// Check Codex's `auth.json` (`text`, from `path`) at unix time `now`.
pub fn codex(path: &str, text: &str, now: u64) -> Result<CodexLogin, LoginError> {
    let mut auth: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LoginError::Malformed(path.to_string(), e.to_string()))?;
    let tokens = auth.get("tokens").filter(|t| t.is_object());
    if tokens.is_none() {
        return Err(if auth.get("OPENAI_API_KEY").and_then(|k| k.as_str()).is_some_and(|k| !k.is_empty()) {
            LoginError::ApiKeyMode(path.to_string())
        } else {
            LoginError::NoTokens(path.to_string())
        });
    }
    let access = auth["tokens"]["access_token"].as_str().filter(|t| !t.is_empty()).map(str::to_string);
    let Some(access) = access else { return Err(LoginError::NoTokens(path.to_string())) };
    if let Some(exp) = claims(&access).and_then(|c| c["exp"].as_u64())
        && exp <= now
    {
        return Err(LoginError::Expired(path.to_string(), exp));
    }
    let t = &mut auth["tokens"];
    for key in ["access_token", "id_token"] {
        if let Some(jwt) = t[key].as_str().map(str::to_string) {
            t[key] = serde_json::Value::String(unsigned(&jwt));
        }
    }
    if t.get("refresh_token").is_some() {
        t["refresh_token"] = serde_json::Value::String(PLACEHOLDER.to_string());
    }
    auth["OPENAI_API_KEY"] = serde_json::Value::Null;
    Ok(CodexLogin {
        access_token: Secret::new(access),
        stand_in: serde_json::to_string_pretty(&auth).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value, signature: &str) -> String {
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.{signature}", e(br#"{"alg":"RS256","typ":"JWT"}"#), e(claims.to_string().as_bytes()))
    }

    fn auth(exp: u64) -> String {
        serde_json::json!({
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": jwt(serde_json::json!({"email": "dev@example.com", "exp": exp}), "idsig-REAL"),
                "access_token": jwt(serde_json::json!({"exp": exp, "scope": "openid"}), "accsig-REAL"),
                "refresh_token": "rt-REAL-refresh",
                "account_id": "acct-123"
            },
            "last_refresh": "2026-11-28T10:00:00Z"
        })
        .to_string()
    }

    #[test]
    fn the_agent_gets_the_same_shape_without_a_real_token() {
        let login = codex("/h/.codex/auth.json", &auth(2_000_000_000), 1_900_000_000).unwrap();
        assert!(login.access_token.expose().ends_with("accsig-REAL"));
        let stand_in: serde_json::Value = serde_json::from_str(&login.stand_in).unwrap();
        assert!(!login.stand_in.contains("REAL"), "{}", login.stand_in);
        assert_eq!(stand_in["tokens"]["account_id"], "acct-123");
        assert_eq!(stand_in["tokens"]["refresh_token"], PLACEHOLDER);
        let access = stand_in["tokens"]["access_token"].as_str().unwrap();
        assert!(access.ends_with(&format!(".{PLACEHOLDER}")));
        assert_eq!(claims(access).unwrap()["exp"], 2_000_000_000u64);
        assert_eq!(claims(stand_in["tokens"]["id_token"].as_str().unwrap()).unwrap()["email"], "dev@example.com");
    }

    #[test]
    fn unusable_logins_say_what_to_do() {
        let p = "/h/.codex/auth.json";
        assert!(matches!(codex(p, "{not json", 0), Err(LoginError::Malformed(..))));
        let e = codex(p, r#"{"OPENAI_API_KEY": "sk-abc", "tokens": null}"#, 0).unwrap_err();
        assert_eq!(e, LoginError::ApiKeyMode(p.to_string()));
        assert!(e.to_string().contains("agent_provider.auth_token"));
        assert!(matches!(codex(p, r#"{"tokens": {"id_token": "x"}}"#, 0), Err(LoginError::NoTokens(_))));
        let e = codex(p, &auth(1_000), 2_000).unwrap_err();
        assert_eq!(e, LoginError::Expired(p.to_string(), 1_000));
        assert!(e.to_string().contains("codex login"));
    }
}
