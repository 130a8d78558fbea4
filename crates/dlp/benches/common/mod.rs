//! Inputs the DLP benchmarks share, built from the test corpus.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The clean text's size.
pub const SIZE: usize = 10 * 1024 * 1024;

/// The files of `tests/corpus/<dir>`, sorted by name.
pub fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus").join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(root).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Source-like text: the negative corpus's code and docs, repeated to `SIZE`.
pub fn clean_text() -> Vec<u8> {
    let parts = corpus("negatives");
    let mut out = Vec::with_capacity(SIZE);
    'fill: loop {
        for p in &parts {
            if out.len() + p.len() > SIZE {
                break 'fill;
            }
            out.extend_from_slice(p);
        }
    }
    out
}
