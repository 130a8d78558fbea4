//! Strict YAML: a real YAML 1.2 parser (saphyr) that refuses what a policy
//! file has no use for and an attacker has much use for.
//!
//! Refused: anchors and aliases (billion-laughs, action at a distance), tags,
//! more than one document, duplicate keys, non-scalar keys, nesting deeper
//! than [`MAX_DEPTH`]. The result is a small tree of [`Node`]s that remember
//! their line, so schema errors can point at the file position.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

/// Deepest nesting accepted; manifests need about five levels.
pub const MAX_DEPTH: usize = 32;

/// A parsed YAML value with the line (1-based, within the YAML text) it started on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Value,
    /// The line it starts on.
    pub line: usize,
}

/// A YAML value: scalars stay text until a schema reads them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A scalar; `plain` is false for quoted and block scalars, which are
    /// always strings.
    Scalar {
        /// The scalar's text.
        text: String,
        /// Unquoted, not a block scalar.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// Keys in document order; duplicates are refused at parse time.
    Map(Vec<(String, Node)>),
}

impl Node {
    /// A plain `~`, `null`, `Null`, `NULL` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            _ if self.is_null() => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The value as JSON, with YAML 1.2 core-schema typing for plain scalars.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            _ if self.is_null() => serde_json::Value::Null,
            Value::Scalar { text, plain: false } => serde_json::Value::String(text.clone()),
            Value::Scalar { text, plain: true } => plain_scalar_json(text),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => {
                serde_json::Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

fn plain_scalar_json(text: &str) -> serde_json::Value {
    match text {
        "true" | "True" | "TRUE" => return serde_json::Value::Bool(true),
        "false" | "False" | "FALSE" => return serde_json::Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return serde_json::Value::from(i);
    }
    if let Ok(f) = text.parse::<f64>()
        && f.is_finite()
        && text.chars().any(|c| c.is_ascii_digit())
    {
        return serde_json::Value::from(f);
    }
    serde_json::Value::String(text.to_string())
}

/// Why a YAML text was refused; `line` is 1-based within the YAML text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Parse one YAML document. An empty text is an empty map.
pub fn parse(text: &str) -> Result<Node, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| YamlError { line: e.marker().line(), message: e.info().to_string() })?;
        let line = span.start.line();
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err(line, "more than one YAML document; use a single frontmatter block"));
                }
            }
            Event::Alias(_) => {
                return Err(err(line, "YAML aliases (*name) are not allowed; write the value out"));
            }
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor_and_tag(anchor, tag.is_some(), span)?;
                let plain = matches!(style, ScalarStyle::Plain);
                builder.push(Node { value: Value::Scalar { text: text.into_owned(), plain }, line })?;
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_anchor_and_tag(anchor, tag.is_some(), span)?;
                builder.open(Node { value: Value::Seq(Vec::new()), line })?;
            }
            Event::MappingStart(anchor, tag) => {
                refuse_anchor_and_tag(anchor, tag.is_some(), span)?;
                builder.open(Node { value: Value::Map(Vec::new()), line })?;
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close()?,
        }
    }
    Ok(builder.root.unwrap_or(Node { value: Value::Map(Vec::new()), line: 1 }))
}

fn err(line: usize, message: &str) -> YamlError {
    YamlError { line, message: message.to_string() }
}

fn refuse_anchor_and_tag(anchor: usize, tagged: bool, span: Span) -> Result<(), YamlError> {
    let line = span.start.line();
    if anchor != 0 {
        return Err(err(line, "YAML anchors (&name) are not allowed; write the value out"));
    }
    if tagged {
        return Err(err(line, "YAML tags (!tag) are not allowed; remove the tag"));
    }
    Ok(())
}

/// Assembles nodes from events. A map's pending key (and its line) waits
/// beside the map; a map value takes its key's line, so errors about an
/// entry point at the key.
#[derive(Default)]
struct Builder {
    stack: Vec<(Node, Option<(String, usize)>)>,
    root: Option<Node>,
}

impl Builder {
    fn open(&mut self, node: Node) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(err(node.line, "YAML nested too deeply"));
        }
        if let Some((Node { value: Value::Map(_), .. }, None)) = self.stack.last() {
            return Err(err(node.line, "map keys must be plain strings, not lists or maps"));
        }
        self.stack.push((node, None));
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let (node, _) = self.stack.pop().ok_or_else(|| err(0, "unbalanced YAML events"))?;
        self.push(node)
    }

    fn push(&mut self, node: Node) -> Result<(), YamlError> {
        let Some((parent, pending_key)) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                None => {
                    let Value::Scalar { text, .. } = node.value else {
                        return Err(err(node.line, "map keys must be plain strings"));
                    };
                    if entries.iter().any(|(k, _)| *k == text) {
                        return Err(YamlError { line: node.line, message: format!("duplicate key '{text}'") });
                    }
                    *pending_key = Some((text, node.line));
                }
                Some((key, line)) => entries.push((key, Node { line, ..node })),
            },
            Value::Scalar { .. } => return Err(err(node.line, "unbalanced YAML events")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_maps_and_lists_with_lines() {
        let n = parse("a: 1\nb:\n  - x\n  - 'y'\nc: {d: true}\n").unwrap();
        let Value::Map(entries) = &n.value else { panic!() };
        assert_eq!(entries[0].0, "a");
        assert_eq!(entries[1].1.line, 2, "a map value takes its key's line");
        let Value::Seq(items) = &entries[1].1.value else { panic!() };
        assert_eq!(items[1].line, 4);
        assert_eq!(n.to_json(), serde_json::json!({"a": 1, "b": ["x", "y"], "c": {"d": true}}));
    }

    #[test]
    fn refuses_anchors_aliases_tags_and_documents() {
        let anchors = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert!(anchors.message.contains("anchors"), "{anchors:?}");
        assert!(parse("a: !!str 1\n").unwrap_err().message.contains("tags"));
        assert!(parse("a: !custom 1\n").unwrap_err().message.contains("tags"));
        assert!(parse("a: 1\n---\nb: 2\n").unwrap_err().message.contains("more than one"));
        assert!(parse("a: 1\na: 2\n").unwrap_err().message.contains("duplicate key 'a'"));
        assert!(parse("? [a]\n: 1\n").unwrap_err().message.contains("keys"));
    }

    #[test]
    fn refuses_deep_nesting_without_recursion() {
        let deep = "[".repeat(10_000);
        assert!(parse(&deep).is_err());
    }

    #[test]
    fn empty_text_is_an_empty_map() {
        assert_eq!(parse("").unwrap().value, Value::Map(vec![]));
    }

    #[test]
    fn null_and_quoted_scalars() {
        let n = parse("a:\nb: ~\nc: ''\nd: 'true'\n").unwrap();
        assert_eq!(n.to_json(), serde_json::json!({"a": null, "b": null, "c": "", "d": "true"}));
    }
}
