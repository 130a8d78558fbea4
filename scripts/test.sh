#!/usr/bin/env bash
# The full test suite, exactly what CI runs (.ci/run calls this):
# formatting, lints as errors, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests drive: tmux (the interactive terminal paths).
need() {
    command -v "$1" >/dev/null 2>&1 && return
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $2"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
    else
        echo "scripts/test.sh: '$1' is needed: install the Debian package $2" >&2
        exit 1
    fi
}
need tmux tmux

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
