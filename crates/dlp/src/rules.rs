//! Token rules as data: the gitleaks TOML rule format, for the built-in set
//! (`rules/builtin.toml`) and for user rule files alike.
//!
//! Supported: `[[rules]]` with `id`, `description`, `regex`, `path`,
//! `keywords`, `entropy`, `secretGroup`, and allowlists (`[rules.allowlist]`
//! or `[[rules.allowlists]]`: `regexes`, `regexTarget`, `stopwords`,
//! `paths`, `condition`); the global `[allowlist]` / `[[allowlists]]`
//! (with `targetRules`); `[extend] useDefault = true` to add the built-in
//! rules. Unknown fields (`tags`, `commits`, …) are ignored.

use std::sync::OnceLock;

use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

/// Why a rule file was refused; each names the file and the rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// Not TOML in gitleaks' shape.
    #[error("{origin}: not a gitleaks rule file: {message}")]
    Toml {
        /// The file.
        origin: String,
        /// Why.
        message: String,
    },
    /// A pattern that does not compile.
    #[error("{origin}: rule '{rule}': `{field}` is not a valid regular expression: {message}")]
    Regex {
        /// The file.
        origin: String,
        /// The rule's id.
        rule: String,
        /// `regex` or `path`.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// A rule that matches nothing.
    #[error("{origin}: rule '{rule}' has neither `regex` nor `path`; give it one")]
    Empty {
        /// The file.
        origin: String,
        /// The rule's id.
        rule: String,
    },
    /// A `secretGroup` the regex does not have.
    #[error("{origin}: rule '{rule}': `secretGroup` {group} is larger than the regex's {groups} group(s)")]
    SecretGroup {
        /// The file.
        origin: String,
        /// The rule's id.
        rule: String,
        /// The group asked for.
        group: usize,
        /// The groups the regex has.
        groups: usize,
    },
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct FileToml {
    extend: Option<ExtendToml>,
    rules: Vec<RuleToml>,
    allowlist: Option<AllowlistToml>,
    allowlists: Vec<AllowlistToml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ExtendToml {
    #[serde(rename = "useDefault")]
    use_default: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RuleToml {
    id: Option<String>,
    description: Option<String>,
    regex: Option<String>,
    path: Option<String>,
    keywords: Vec<String>,
    entropy: Option<f64>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<usize>,
    allowlist: Option<AllowlistToml>,
    allowlists: Vec<AllowlistToml>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AllowlistToml {
    condition: Option<String>,
    regexes: Vec<String>,
    #[serde(rename = "regexTarget")]
    regex_target: Option<String>,
    stopwords: Vec<String>,
    paths: Vec<String>,
    #[serde(rename = "targetRules")]
    target_rules: Vec<String>,
}

/// What an allowlist regex is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexTarget {
    Secret,
    Match,
    Line,
}

/// Conditions under which a finding is not reported.
#[derive(Debug, Clone)]
pub struct Allowlist {
    pub all: bool,
    pub regexes: Vec<Regex>,
    pub target: RegexTarget,
    /// Lowercase; a secret containing one is allowed.
    pub stopwords: Vec<String>,
    pub paths: Vec<regex::Regex>,
    /// Empty: every rule (global allowlists only).
    pub target_rules: Vec<String>,
}

impl Allowlist {
    /// Whether this allowlist clears a finding.
    pub fn allows(&self, secret: &[u8], whole: &[u8], line: &[u8], path: Option<&str>) -> bool {
        let target = match self.target {
            RegexTarget::Secret => secret,
            RegexTarget::Match => whole,
            RegexTarget::Line => line,
        };
        let lower = String::from_utf8_lossy(secret).to_lowercase();
        let mut checks = Vec::with_capacity(3);
        if !self.regexes.is_empty() {
            checks.push(self.regexes.iter().any(|r| r.is_match(target)));
        }
        if !self.stopwords.is_empty() {
            checks.push(self.stopwords.iter().any(|w| lower.contains(w.as_str())));
        }
        if !self.paths.is_empty() {
            checks.push(path.is_some_and(|p| self.paths.iter().any(|r| r.is_match(p))));
        }
        if checks.is_empty() {
            return false;
        }
        if self.all { checks.iter().all(|c| *c) } else { checks.iter().any(|c| *c) }
    }
}

/// A rule's regex, compiled on first use. A rule file's patterns are
/// compiled as the file is parsed (its errors name the file and rule); the
/// built-in ones, which a test compiles, wait for their first keyword hit:
/// most never meet one in a session, and compiling all of them costs the
/// sidecar's start ~16 ms.
#[derive(Debug, Clone)]
pub struct RulePattern {
    source: String,
    compiled: OnceLock<Regex>,
}

impl RulePattern {
    fn compiled(source: String, regex: Regex) -> RulePattern {
        RulePattern { source, compiled: OnceLock::from(regex) }
    }

    fn lazy(source: String) -> RulePattern {
        RulePattern { source, compiled: OnceLock::new() }
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn regex(&self) -> &Regex {
        self.compiled.get_or_init(|| {
            regex_builder(&self.source).build().expect("a lazy pattern is a built-in one, which compiles (tested)")
        })
    }
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule's id (what findings name).
    pub id: String,
    /// What it finds.
    pub description: String,
    /// The pattern a secret matches.
    pub regex: Option<RulePattern>,
    /// The pattern a file path matches (push scans).
    pub path: Option<regex::Regex>,
    /// Lowercase.
    pub keywords: Vec<String>,
    /// The least Shannon entropy a match must have.
    pub entropy: Option<f64>,
    /// The regex group holding the secret (none: the whole match).
    pub secret_group: Option<usize>,
    /// Matches these leave out.
    pub allowlists: Vec<Allowlist>,
    /// Bytes after a keyword hit that the regex may need (multi-line
    /// rules such as private keys need more).
    pub window_after: usize,
}

/// Bytes before a keyword hit where a match may start.
pub const WINDOW_BEFORE: usize = 256;
const WINDOW_AFTER: usize = 1024;
const WINDOW_AFTER_MULTILINE: usize = 16 * 1024;

/// A set of rules and the global allowlists.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
    /// Allowlists every rule applies.
    pub global: Vec<Allowlist>,
}

const BUILTIN: &str = include_str!("../rules/builtin.toml");

impl RuleSet {
    /// bot-bottle's own rules (parsed and compiled once per process).
    pub fn builtin() -> &'static RuleSet {
        static SET: OnceLock<RuleSet> = OnceLock::new();
        SET.get_or_init(|| {
            RuleSet::parse_with(BUILTIN, "builtin rules", Compile::OnFirstUse)
                .expect("the built-in rules are valid (tested)")
        })
    }

    /// The built-in rules' source, for `scan --rules` users to extend.
    pub fn builtin_source() -> &'static str {
        BUILTIN
    }

    /// Parse a gitleaks-format rule file. `[extend] useDefault = true` adds
    /// the built-in rules under the file's (a file rule with a built-in's id
    /// replaces it).
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RuleError> {
        RuleSet::parse_with(text, origin, Compile::Now)
    }

    fn parse_with(text: &str, origin: &str, compile: Compile) -> Result<RuleSet, RuleError> {
        let file: FileToml = toml::from_str(text)
            .map_err(|e| RuleError::Toml { origin: origin.to_string(), message: e.message().to_string() })?;
        let mut set = RuleSet::default();
        if file.extend.as_ref().is_some_and(|e| e.use_default) {
            set = RuleSet::builtin().clone();
        }
        for a in file.allowlist.iter().chain(&file.allowlists) {
            set.global.push(compile_allowlist(a, origin, "(global allowlist)")?);
        }
        for (i, r) in file.rules.iter().enumerate() {
            let rule = compile_rule(r, i, origin, compile)?;
            match set.rules.iter_mut().find(|existing| existing.id == rule.id) {
                Some(existing) => *existing = rule,
                None => set.rules.push(rule),
            }
        }
        Ok(set)
    }

    /// This set followed by `other`'s rules (same id: `other` wins).
    pub fn merged(&self, other: &RuleSet) -> RuleSet {
        let mut set = self.clone();
        set.global.extend(other.global.iter().cloned());
        for rule in &other.rules {
            match set.rules.iter_mut().find(|r| r.id == rule.id) {
                Some(existing) => *existing = rule.clone(),
                None => set.rules.push(rule.clone()),
            }
        }
        set
    }
}

/// Go's RE2 (gitleaks) reads a `{` that does not open a repetition as a
/// literal; the `regex` crate refuses it. Escape those, change nothing else.
fn escape_literal_braces(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 4);
    let (mut i, mut in_class) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                out.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    out.push(next);
                }
                i += 2;
                continue;
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => {
                let rest: String = chars[i + 1..].iter().take_while(|&&c| c != '}').collect();
                let closed = chars.len() > i + 1 + rest.len();
                let (lo, hi) = rest.split_once(',').unwrap_or((&rest, "0"));
                let repetition = closed
                    && !lo.is_empty()
                    && lo.chars().all(|c| c.is_ascii_digit())
                    && hi.chars().all(|c| c.is_ascii_digit());
                if !repetition {
                    out.push_str("\\{");
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Compile a rule file's pattern with `build`, retrying with Go's literal
/// braces escaped; the error names the file, rule and field.
fn compile_with<R>(
    build: impl Fn(&str) -> Result<R, regex::Error>,
    pattern: &str,
    origin: &str,
    rule: &str,
    field: &'static str,
) -> Result<R, RuleError> {
    build(pattern).or_else(|e| build(&escape_literal_braces(pattern)).map_err(|_| e)).map_err(|e| RuleError::Regex {
        origin: origin.to_string(),
        rule: rule.to_string(),
        field,
        // The regex crate draws a multi-line caret diagram; keep its last line.
        message: e.to_string().lines().last().unwrap_or_default().trim_start_matches("error: ").to_string(),
    })
}

/// ASCII classes, as in Go's RE2 (`\w` is `[0-9A-Za-z_]` there): smaller and faster.
fn regex_builder(pattern: &str) -> RegexBuilder {
    let mut b = RegexBuilder::new(pattern);
    b.unicode(false).size_limit(8 << 20).dfa_size_limit(8 << 20);
    b
}

fn compile_regex(pattern: &str, origin: &str, rule: &str, field: &'static str) -> Result<Regex, RuleError> {
    compile_with(|p: &str| regex_builder(p).build(), pattern, origin, rule, field)
}

/// When a rule's own regex is compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compile {
    Now,
    OnFirstUse,
}

fn compile_text_regex(pattern: &str, origin: &str, rule: &str, field: &'static str) -> Result<regex::Regex, RuleError> {
    compile_with(regex::Regex::new, pattern, origin, rule, field)
}

fn compile_allowlist(a: &AllowlistToml, origin: &str, rule: &str) -> Result<Allowlist, RuleError> {
    Ok(Allowlist {
        all: a.condition.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("and")),
        regexes: a
            .regexes
            .iter()
            .map(|r| compile_regex(r, origin, rule, "allowlist.regexes"))
            .collect::<Result<_, _>>()?,
        target: match a.regex_target.as_deref() {
            Some("match") => RegexTarget::Match,
            Some("line") => RegexTarget::Line,
            _ => RegexTarget::Secret,
        },
        stopwords: a.stopwords.iter().map(|s| s.to_lowercase()).collect(),
        paths: a
            .paths
            .iter()
            .map(|p| compile_text_regex(p, origin, rule, "allowlist.paths"))
            .collect::<Result<_, _>>()?,
        target_rules: a.target_rules.clone(),
    })
}

fn compile_rule(r: &RuleToml, index: usize, origin: &str, compile: Compile) -> Result<Rule, RuleError> {
    let id =
        r.id.clone()
            .or_else(|| r.description.as_ref().map(|d| slug(d)))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("rule-{}", index + 1));
    let regex = match (r.regex.as_deref(), compile) {
        (None, _) => None,
        (Some(p), Compile::OnFirstUse) => Some(RulePattern::lazy(p.to_string())),
        (Some(p), Compile::Now) => {
            let re = compile_regex(p, origin, &id, "regex")?;
            if let Some(group) = r.secret_group {
                let groups = re.captures_len() - 1;
                if group > groups {
                    return Err(RuleError::SecretGroup { origin: origin.to_string(), rule: id, group, groups });
                }
            }
            // The source that compiled (Go's literal braces escaped when needed).
            Some(RulePattern::compiled(re.as_str().to_string(), re))
        }
    };
    let path = r.path.as_deref().map(|p| compile_text_regex(p, origin, &id, "path")).transpose()?;
    if regex.is_none() && path.is_none() {
        return Err(RuleError::Empty { origin: origin.to_string(), rule: id });
    }
    let multiline = r.regex.as_deref().is_some_and(|p| p.contains("\\s\\S") || p.contains("(?s") || p.contains("\\n"));
    let mut allowlists = Vec::new();
    for a in r.allowlist.iter().chain(&r.allowlists) {
        allowlists.push(compile_allowlist(a, origin, &id)?);
    }
    Ok(Rule {
        description: r.description.clone().unwrap_or_else(|| id.clone()),
        id,
        regex,
        path,
        keywords: r.keywords.iter().map(|k| k.to_lowercase()).filter(|k| !k.is_empty()).collect(),
        entropy: r.entropy,
        secret_group: r.secret_group.filter(|g| *g > 0),
        allowlists,
        window_after: if multiline { WINDOW_AFTER_MULTILINE } else { WINDOW_AFTER },
    })
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_rules_compile_and_are_many() {
        // What their lazy patterns rely on: each compiles (and its secret
        // group exists) exactly as a rule file's would.
        let eager = RuleSet::parse(BUILTIN, "builtin rules").unwrap();
        let set = RuleSet::builtin();
        assert_eq!(eager.rules.len(), set.rules.len());
        for (e, lazy) in eager.rules.iter().zip(&set.rules) {
            let (Some(e), Some(lazy)) = (&e.regex, &lazy.regex) else { continue };
            assert_eq!(e.as_str(), lazy.as_str(), "a built-in pattern needs no escaping");
            assert_eq!(lazy.regex().as_str(), lazy.as_str());
        }
        assert!(set.rules.len() >= 60, "{}", set.rules.len());
        let mut ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate rule ids");
        for r in &set.rules {
            assert!(!r.keywords.is_empty(), "{} has no keywords", r.id);
        }
    }

    #[test]
    fn errors_name_origin_and_rule() {
        let e = RuleSet::parse("[[rules]]\nid = \"x\"\nregex = '''(a'''\n", "my.toml").unwrap_err().to_string();
        assert!(e.contains("my.toml") && e.contains("'x'") && e.contains("regex"), "{e}");
        let e = RuleSet::parse("[[rules]]\nid = \"x\"\n", "my.toml").unwrap_err().to_string();
        assert!(e.contains("neither"), "{e}");
        let e =
            RuleSet::parse("[[rules]]\nid = \"x\"\nregex = 'a(b)'\nsecretGroup = 3\n", "m").unwrap_err().to_string();
        assert!(e.contains("secretGroup"), "{e}");
        assert!(RuleSet::parse("rules = 3", "m").is_err());
    }

    #[test]
    fn go_literal_braces_are_escaped() {
        assert_eq!(escape_literal_braces(r"^\$(?:\d+|{\d+})$"), r"^\$(?:\d+|\{\d+})$");
        assert_eq!(escape_literal_braces(r"a{2,3}[{]\{x{,}"), r"a{2,3}[{]\{x\{,}");
        RuleSet::parse("[[rules]]\nid = 'x'\nregex = '''^\\${(?:[A-Z_]+)}$'''\n", "m").unwrap();
    }

    #[test]
    fn rules_without_keywords_run_as_one_set() {
        let file = "[[rules]]\nid = \"a\"\nregex = 'AAA-[0-9]{6}'\n[[rules]]\nid = \"b\"\nregex = 'BBB-[0-9]{6}'\n";
        let scanner = crate::TokenScanner::new(RuleSet::parse(file, "m").unwrap());
        let mut out = Vec::new();
        scanner.scan(b"x BBB-123456 y AAA-654321 z", None, crate::View::Raw, &mut out);
        let mut rules: Vec<&str> = out.iter().map(|f| f.rule.as_str()).collect();
        rules.sort();
        assert_eq!(rules, ["a", "b"]);
    }

    #[test]
    fn extend_use_default_adds_builtins_and_replaces_by_id() {
        let set = RuleSet::parse(
            "[extend]\nuseDefault = true\n[[rules]]\nid = \"github-pat\"\nregex = 'ghp_x'\nkeywords = ['ghp_']\n[[rules]]\nid = \"mine\"\nregex = 'mine-[0-9]+'\n",
            "m",
        )
        .unwrap();
        assert_eq!(set.rules.len(), RuleSet::builtin().rules.len() + 1);
        let gh = set.rules.iter().find(|r| r.id == "github-pat").unwrap();
        assert_eq!(gh.regex.as_ref().unwrap().as_str(), "ghp_x");
    }
}
