#!/usr/bin/env bash
# The full test suite, exactly what CI runs (.ci/run calls this):
# formatting, lints as errors, and every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
