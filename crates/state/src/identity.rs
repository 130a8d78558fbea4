//! Identities: the slug that names a running or preserved bottle, its state
//! dir and its Docker objects.

/// Why an identity could not be made from a label or an agent's name.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// The label is longer than 64 bytes (its length).
    #[error("label must be at most 64 bytes (it is {0})")]
    LabelTooLong(usize),
    /// The label holds control characters.
    #[error("label must be printable text without control characters")]
    LabelNotPrintable,
    /// The label has nothing to make a slug of.
    #[error("label '{0}' has no letters or digits to make a name from")]
    LabelEmpty(String),
    /// The agent's name has nothing to make a slug of.
    #[error("agent name '{0}' has no letters or digits to make an identity from")]
    AgentEmpty(String),
    /// The system's random source failed.
    #[error("the system random number generator failed: {0}")]
    Random(String),
    /// A live bottle has the label.
    #[error("label '{0}' is already used by a live bottle; choose another label")]
    Taken(String),
}

/// Lowercase; each run of characters outside `[a-z0-9]` becomes `-`; trim `-`.
pub fn slugify(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut dash = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
    }
    out
}

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `n` characters of `[a-z0-9]` from the operating system's secure RNG,
/// without modulo bias.
pub fn random_suffix(n: usize) -> Result<String, IdentityError> {
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 32];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| IdentityError::Random(e.to_string()))?;
        for b in buf {
            // 252 = 7 * 36: reject the top 4 values so every letter is equally likely.
            if b < 252 && out.len() < n {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// Mint an identity. Without a label: `slug(agent)-xxxxx`. With a label: its
/// slug; when `taken` says a live bottle has it, `uniquify` appends `-2`,
/// `-3`, … (headless start) or the result is [`IdentityError::Taken`]
/// (interactive start asks again).
pub fn mint_identity(
    agent: &str,
    label: Option<&str>,
    uniquify: bool,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String, IdentityError> {
    match label {
        None => {
            let base = slugify(agent);
            if base.is_empty() {
                return Err(IdentityError::AgentEmpty(agent.to_string()));
            }
            loop {
                let id = format!("{base}-{}", random_suffix(5)?);
                if !taken(&id) {
                    return Ok(id);
                }
            }
        }
        Some(label) => {
            if label.len() > 64 {
                return Err(IdentityError::LabelTooLong(label.len()));
            }
            if label.chars().any(char::is_control) {
                return Err(IdentityError::LabelNotPrintable);
            }
            let base = slugify(label);
            if base.is_empty() {
                return Err(IdentityError::LabelEmpty(label.to_string()));
            }
            if !taken(&base) {
                return Ok(base);
            }
            if !uniquify {
                return Err(IdentityError::Taken(label.to_string()));
            }
            (2u32..).map(|n| format!("{base}-{n}")).find(|id| !taken(id)).ok_or(IdentityError::Taken(base))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slugify_examples() {
        assert_eq!(slugify("My Agent!"), "my-agent");
        assert_eq!(slugify("--a__b--"), "a-b");
        assert_eq!(slugify("ÄBC 12"), "bc-12");
        assert_eq!(slugify("***"), "");
    }

    #[test]
    fn identities() {
        let id = mint_identity("Code Reviewer", None, false, &|_| false).unwrap();
        assert!(id.starts_with("code-reviewer-") && id.len() == "code-reviewer-".len() + 5, "{id}");
        assert_eq!(mint_identity("a", Some("Fix Bug #12"), false, &|_| false).unwrap(), "fix-bug-12");
        let taken = |id: &str| id == "x" || id == "x-2";
        assert_eq!(mint_identity("a", Some("x"), true, &taken).unwrap(), "x-3");
        assert_eq!(mint_identity("a", Some("x"), false, &taken), Err(IdentityError::Taken("x".into())));
        assert_eq!(mint_identity("a", Some("!!"), true, &taken), Err(IdentityError::LabelEmpty("!!".into())));
        assert!(mint_identity("a", Some(&"y".repeat(65)), true, &taken).is_err());
        assert!(mint_identity("a", Some("a\u{7}b"), true, &taken).is_err());
    }

    #[test]
    fn suffixes_differ_and_use_the_alphabet() {
        let a = random_suffix(32).unwrap();
        let b = random_suffix(32).unwrap();
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| ALPHABET.contains(&c)));
    }

    proptest! {
        #[test]
        fn slug_is_well_formed_and_idempotent(s in "\\PC{0,40}") {
            let slug = slugify(&s);
            prop_assert!(slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!slug.starts_with('-') && !slug.ends_with('-') && !slug.contains("--"));
            prop_assert_eq!(slugify(&slug), slug.clone());
        }

        #[test]
        fn slug_keeps_every_ascii_alphanumeric(s in "[a-zA-Z0-9 _.!-]{0,40}") {
            let kept: String = s.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
            prop_assert_eq!(slugify(&s).replace('-', ""), kept);
        }
    }
}
