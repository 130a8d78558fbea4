#!/usr/bin/env bash
# Launch benchmark: `start --headless` to the agent's first command, against
# a bare `docker run --rm` of the agent image in the same run, and 5 bottles
# at once. Starts Docker when needed; builds the images first (not timed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/docker.sh
cargo bench -p bot-bottle --bench launch
