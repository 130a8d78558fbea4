#!/usr/bin/env bash
# Egress proxy benchmark with its baselines: installs Debian's mitmproxy if
# missing, then runs the bench, which measures direct, bot-bottle egress and
# mitmdump in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mitmdump >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mitmproxy >/dev/null
fi
cargo bench -p bot-bottle --bench proxy
