#!/usr/bin/env bash
# git-gate push-scan benchmark: 1,000 commits adding ~50 MB of text, scanned
# as a push is, against `git log -p` printing the same range, in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p bot-bottle-git-gate --bench push_scan
