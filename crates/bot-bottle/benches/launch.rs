//! Launch benchmark (not a timed test): the time from `bot-bottle start
//! --headless` (images present) to the agent's first command running,
//! against a bare `docker run --rm <agent image>` running the same first
//! command, measured in the same run (the two interleaved); then 5 bottles
//! started at once. Best and median of nine runs each.
//!
//! `cargo bench -p bot-bottle --bench launch` (or bench/launch.sh).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RUNS: usize = 9;

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

/// The first command prints its own clock; the gap from the spawn is the
/// time to the first command.
const FIRST: &str = "date +%s%N";

fn first_command_after(start_ns: u128, stdout: &[u8]) -> Duration {
    let text = String::from_utf8_lossy(stdout);
    let stamp: u128 = text
        .lines()
        .find_map(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no timestamp in the output: {text}"));
    Duration::from_nanos((stamp - start_ns) as u64)
}

fn stats(mut xs: Vec<Duration>) -> (Duration, Duration) {
    xs.sort();
    (xs[0], xs[xs.len() / 2])
}

fn main() {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_bot-bottle"));
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("bb");
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/docker");
    assert!(Command::new("cp").arg("-r").arg(&fixtures).arg(&home).status().unwrap().success());
    // Images present: build them first (not timed).
    let o = Command::new(&bin).args(["images", "build"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let agent_image = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("agent").map(|t| t.trim().to_string()))
        .expect("images build names the agent image");

    let start = |label: &str| {
        let started = now_ns();
        let child = Command::new(&bin)
            .args(["start", "life", "--label", label, "--headless", "--prompt", FIRST])
            .env("BOT_BOTTLE_HOME", &home)
            .env("LIFE_SECRET", "bench")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        (started, child)
    };

    // The two interleaved, a pause after each (a `docker run --rm` still
    // being removed would slow the next launch down, and the other way
    // round): the machine's speed drifts, and both see the same drift.
    let settle = || std::thread::sleep(Duration::from_secs(1));
    let mut docker_run = Vec::new();
    let mut bottle = Vec::new();
    for i in 0..RUNS {
        let t = now_ns();
        let o = Command::new("docker").args(["run", "--rm", &agent_image, "sh", "-c", FIRST]).output().unwrap();
        assert!(o.status.success());
        docker_run.push(first_command_after(t, &o.stdout));
        settle();
        let (t, child) = start(&format!("bench {i}"));
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        bottle.push(first_command_after(t, &o.stdout));
        settle();
    }
    let (dr_best, dr_med) = stats(docker_run);
    let (bb_best, bb_med) = stats(bottle);

    // Five at once.
    let wall = Instant::now();
    let children: Vec<_> = (0..5).map(|i| start(&format!("bench many {i}"))).collect();
    let mut many = Vec::new();
    for (t, child) in children {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success());
        many.push(first_command_after(t, &o.stdout));
    }
    let wall = wall.elapsed();
    let (many_best, many_med) = stats(many.clone());
    let many_max = many.iter().max().copied().unwrap_or_default();

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("launch benchmark: time to the first command, {RUNS} runs each (best / median)");
    println!("docker run --rm (baseline)   {:>7.0} ms / {:>7.0} ms", ms(dr_best), ms(dr_med));
    println!("bot-bottle start --headless  {:>7.0} ms / {:>7.0} ms", ms(bb_best), ms(bb_med));
    println!("ratio (median)               {:>7.2}x (target <= 2.5x)", ms(bb_med) / ms(dr_med));
    println!(
        "5 bottles at once            {:>7.0} ms / {:>7.0} ms, slowest {:.0} ms, all done in {:.0} ms",
        ms(many_best),
        ms(many_med),
        ms(many_max),
        ms(wall)
    );
}
