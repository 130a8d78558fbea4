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
cargo test --workspace --locked
