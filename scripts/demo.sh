#!/usr/bin/env bash
# bot-bottle's main job on the bundled example: build the CLI, then prepare
# the `demo` agent in its `demo` bottle (examples/) and print the preflight:
# what the launch will do, with every value hidden. It uses a throwaway
# BOT_BOTTLE_HOME and leaves no state behind.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -q -p bot-bottle
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
cp -r examples/bottles examples/agents "$home/"
# The demo route injects this token; the agent would only see a placeholder.
export DEMO_API_TOKEN="${DEMO_API_TOKEN:-demo-token-not-secret}"
BOT_BOTTLE_HOME="$home" ./target/release/bot-bottle start demo --dry-run "$@"
