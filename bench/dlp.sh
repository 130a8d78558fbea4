#!/usr/bin/env bash
# DLP benchmark with its baseline: installs Yelp's detect-secrets (PyPI) into
# target/bench-venv if missing, then runs the throughput bench, which times
# bot-bottle and detect-secrets on the same files in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
if [ ! -x "$venv/bin/detect-secrets" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q detect-secrets==1.5.0
fi
DETECT_SECRETS="$PWD/$venv/bin/detect-secrets" cargo bench -p bot-bottle-dlp --bench throughput
