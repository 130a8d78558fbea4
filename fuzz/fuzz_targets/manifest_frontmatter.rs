//! Any bytes as a bottle file and as an agent file: frontmatter split,
//! strict YAML and schema validation must return Ok or a one-line error
//! naming the file, and never panic or hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use manifest::{AgentSource, parse_agent_text, parse_bottle_text};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("/fuzz/bottles/f.md");
    if let Err(e) = parse_bottle_text("f", path, text) {
        let msg = e.to_string();
        assert!(msg.starts_with("/fuzz/bottles/f.md"), "{msg}");
    }
    if let Ok(bottle) = parse_bottle_text("f", path, text) {
        // A parsed file always folds.
        let b = manifest::Bottle::from_file(&bottle);
        let _ = manifest::Bottle::merge_all([&b, &b]);
    }
    let _ = parse_agent_text("f", Path::new("/fuzz/agents/f.md"), AgentSource::Home, text);
});
