//! Scanner::scan alone on 10 MB of clean text, best of 20: for profiling
//! (`perf record`) and quick before/after comparisons.
fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/negatives");
    let mut data = Vec::new();
    let files: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().map(|e| std::fs::read(e.path()).unwrap()).collect();
    while data.len() < 10 << 20 {
        for f in &files {
            data.extend_from_slice(f);
        }
    }
    let sc = dlp::Scanner::builtin();
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        std::hint::black_box(sc.scan(&data, None));
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("Scanner::scan: {:.0} MB/s (best of 20)", data.len() as f64 / 1048576.0 / best);
}
