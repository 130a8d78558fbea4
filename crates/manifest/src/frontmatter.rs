//! Splitting a Markdown file into its `---` YAML frontmatter and its body.

/// Largest manifest file read; real ones are a few KiB.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// `(yaml, body)`: the frontmatter text (which starts on line 2 of the file)
/// and the Markdown after the closing `---`.
pub fn split(text: &str) -> Result<(&str, &str), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or("");
    if first.trim_end() != "---" {
        return Err("must start with a '---' line opening the YAML frontmatter".to_string());
    }
    let yaml_start = first.len();
    let mut offset = yaml_start;
    for line in lines {
        if line.trim_end() == "---" {
            return Ok((&text[yaml_start..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err("has no closing '---' line after the YAML frontmatter".to_string())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn splits() {
        assert_eq!(split("---\na: 1\n---\nbody\n").unwrap(), ("a: 1\n", "body\n"));
        assert_eq!(split("---\n---\n").unwrap(), ("", ""));
        assert_eq!(split("\u{feff}---\r\na: 1\r\n---\r\nx").unwrap(), ("a: 1\r\n", "x"));
        assert!(split("a: 1\n").is_err());
        assert!(split("---\na: 1\n").is_err());
    }
}
