//! The operator's terminal: whether there is one (`/dev/tty`, so pickers
//! work with redirected stdio), colour rules, and the prompts that read it.

use std::io::IsTerminal;

use anyhow::{Result, bail};

/// True when `/dev/tty` can be opened: there is an operator to ask.
pub fn interactive() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/tty").is_ok()
}

/// Colour only on a TTY, never when `NO_COLOR` is set.
pub fn color_stdout() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stdout().is_terminal()
}

/// The SGR parameters of a colour name or 0-255 number.
pub fn sgr(color: &str) -> Option<String> {
    let named = match color.to_ascii_lowercase().as_str() {
        "black" => "30",
        "red" => "31",
        "green" => "32",
        "yellow" => "33",
        "blue" => "34",
        "magenta" | "purple" => "35",
        "cyan" => "36",
        "white" => "37",
        "orange" => "38;5;208",
        "pink" => "38;5;205",
        _ => return color.parse::<u8>().ok().map(|n| format!("38;5;{n}")),
    };
    Some(named.to_string())
}

/// `text` in `color` when `enabled`.
pub fn paint(text: &str, color: &str, enabled: bool) -> String {
    match sgr(color) {
        Some(code) if enabled => format!("\x1b[{code}m{text}\x1b[0m"),
        _ => text.to_string(),
    }
}

/// Refuse to prompt without a terminal, naming the flag that answers instead.
pub fn require(flag: &str, what: &str) -> Result<()> {
    if !interactive() {
        bail!("no terminal to ask for {what}; pass {flag}");
    }
    Ok(())
}

fn cancelled(e: inquire::InquireError) -> anyhow::Error {
    match e {
        inquire::InquireError::OperationCanceled | inquire::InquireError::OperationInterrupted => {
            anyhow::anyhow!("cancelled")
        }
        other => anyhow::anyhow!("cannot read the terminal: {other}"),
    }
}

/// Pick one of `options` (type to filter).
pub fn pick(message: &str, options: Vec<String>, flag: &str) -> Result<String> {
    require(flag, message)?;
    inquire::Select::new(message, options).prompt().map_err(cancelled)
}

pub fn text(message: &str, default: Option<&str>, flag: &str) -> Result<String> {
    require(flag, message)?;
    let mut prompt = inquire::Text::new(message);
    if let Some(d) = default {
        prompt = prompt.with_default(d);
    }
    prompt.prompt().map_err(cancelled)
}

/// A secret, without echo.
pub fn secret(message: &str) -> Result<secret::Secret<String>> {
    if !interactive() {
        bail!(
            "it is asked at launch, but there is no terminal to ask on; run from a terminal, or copy it from the host with \"${{HOST_VAR}}\" in the bottle"
        );
    }
    inquire::Password::new(message)
        .without_confirmation()
        .with_display_mode(inquire::PasswordDisplayMode::Hidden)
        .prompt()
        .map(secret::Secret::new)
        .map_err(cancelled)
}

/// `[y/N]`: only y or yes accepts.
pub fn confirm(message: &str) -> Result<bool> {
    require("-y", message)?;
    let answer = inquire::Text::new(&format!("{message} [y/N]")).prompt().map_err(cancelled)?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}
