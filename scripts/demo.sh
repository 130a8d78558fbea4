#!/usr/bin/env bash
# bot-bottle's main job, end to end on this machine: build bot-bottle and its
# images (the first run assembles a base image from this host's Debian
# packages), start a small local "internet" (an HTTPS API and an SSH git
# server in containers only the sidecar can reach: scripts/world.sh), then run the `tour` agent
# (examples/) headless in a real bottle. It shows an allowed request with an
# injected credential, a blocked host, a blocked exfiltration, a clean push
# landing upstream and a push of a secret refused. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/docker.sh
# BOT_BOTTLE_BIN runs an already built binary (the tests use their own).
if [ -n "${BOT_BOTTLE_BIN:-}" ]; then
    bb="$BOT_BOTTLE_BIN"
else
    cargo build --release --locked -q -p bot-bottle
    bb="$PWD/target/release/bot-bottle"
fi
work=$(mktemp -d)
world=bot-bottle-demo
cleanup() {
    bash scripts/world.sh down "$work/world" "$world"
    rm -rf "$work"
}
trap cleanup EXIT

echo "== images"
base=$("$bb" images build | awk '$1 == "base" {print $2}')

echo "== the demo world: api.demo.test (HTTPS), git.demo.test (SSH), collector.demo.test (an attacker)"
bash scripts/world.sh up "$work/world" "$world" "$base"
# shellcheck disable=SC1091
. "$work/world/world.env"

echo "== the tour agent, headless, in a bottle"
home="$work/home"
mkdir -p "$home"
cp -r examples/bottles examples/agents "$home/"
sed -i "s|ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERPLACEHOLDERPLACEHOLDER|$WORLD_HOST_KEY|; s|~/.ssh/bot-bottle-tour-key|$WORLD_GIT_KEY|" \
    "$home/bottles/tour.md"
status=0
BOT_BOTTLE_HOME="$home" \
DEMO_API_TOKEN="$WORLD_API_TOKEN" \
DEMO_DB_PASSWORD="demo-db-password-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
BOT_BOTTLE_UPSTREAM_CA="$WORLD_CA" \
BOT_BOTTLE_SIDECAR_NETWORK="$WORLD_NET" \
BOT_BOTTLE_SIDECAR_HOSTS="$WORLD_HOSTS" \
    "$bb" start tour --label tour -y --headless --prompt "$(cat examples/demo/agent.sh)" "$@" || status=$?

echo
echo "== what the upstreams saw"
docker logs "$world-api" 2>&1 | sed 's/^/  /'
echo "  collector.demo.test: $(grep -c . "$WORLD_RECORDS/collector.jsonl" || true) requests"
echo "  git.demo.test widgets.git main: $(git --git-dir="$WORLD_REPOS/widgets.git" log --oneline main | tr '\n' ';' )"
exit "$status"
