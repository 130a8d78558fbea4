#!/usr/bin/env bash
# The local demo world — a small simulated internet that only a bottle's
# sidecar can reach (spec/testing.md), shared by scripts/demo.sh and the
# sandbox-escape suite:
#   api.demo.test        HTTPS/HTTP API that records what arrived (examples/demo/upstream.py);
#                        also answers as notes.demo.test and open.demo.test (other
#                        routes to the same recorder: its records carry the Host)
#   collector.demo.test  an attacker's server: records HTTP(S), TCP 9000, UDP 53/9000
#   git.demo.test        sshd with bare repos under /srv/git (widgets.git), pinned host key
#   api.anthropic.com    a scripted stand-in for the Messages API (examples/demo/model.py):
#                        it plays the steps in DIR/model-script.json and records every request
#   api.openai.com       the same server as the Responses API (DIR/openai-script.json)
# with certificates from a throwaway CA (give it to the sidecar as
# BOT_BOTTLE_UPSTREAM_CA), built from the local base image (no registry).
#
#   scripts/world.sh up DIR NAME [BASE_IMAGE]   start it; writes DIR/world.env
#   scripts/world.sh down DIR NAME              remove its containers and network
#
# NAME prefixes the containers and names the network, so worlds can coexist.
# DIR/world.env (sourceable) holds WORLD_NET, WORLD_CA, WORLD_HOSTS (for
# BOT_BOTTLE_SIDECAR_HOSTS), WORLD_HOST_KEY, WORLD_GIT_KEY, WORLD_API_TOKEN,
# WORLD_REPOS (the bare repos, on this host) and WORLD_RECORDS (the
# recorders' JSON lines, on this host), and each server's IP.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cmd=${1:?usage: world.sh up|down DIR NAME [BASE_IMAGE]}
dir=${2:?usage: world.sh up|down DIR NAME [BASE_IMAGE]}
name=${3:?usage: world.sh up|down DIR NAME [BASE_IMAGE]}
net="$name-net"
containers=("$name-api" "$name-collector" "$name-git" "$name-model")

down() {
    docker rm -f "${containers[@]}" >/dev/null 2>&1 || true
    docker network rm "$net" >/dev/null 2>&1 || true
}

case "$cmd" in
down)
    down
    exit 0
    ;;
up) ;;
*)
    echo "world.sh: unknown command $cmd (up or down)" >&2
    exit 2
    ;;
esac

base=${4:-}
if [ -z "$base" ]; then
    base=$(docker images --format '{{.Repository}}:{{.Tag}}' bot-bottle-base | head -1)
    [ -n "$base" ] || { echo "world.sh: no bot-bottle-base image: run \`bot-bottle images build\` first" >&2; exit 1; }
fi
down
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cd "$dir"
rm -rf records srv seed
mkdir -p records srv/git seed

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bot-bottle demo world CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.demo.test" \
    -keyout upstream.key -out upstream.csr 2>/dev/null
printf 'subjectAltName=DNS:api.demo.test,DNS:notes.demo.test,DNS:open.demo.test,DNS:collector.demo.test,DNS:api.anthropic.com,DNS:api.openai.com\n' > upstream.ext
openssl x509 -req -in upstream.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile upstream.ext \
    -out upstream.pem 2>/dev/null
chmod 644 upstream.key
rm -f host_key host_key.pub git_key git_key.pub
ssh-keygen -q -t ed25519 -N '' -C demo-host -f host_key
ssh-keygen -q -t ed25519 -N '' -C demo-gate -f git_key
cp git_key.pub authorized_keys
cat > sshd_config <<CONF
Port 22
HostKey /demo/host_key
AuthorizedKeysFile /demo/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
UsePAM no
CONF
git init -q --bare -b main srv/git/widgets.git
git -C seed init -q -b main
echo "# widgets" > seed/README.md
git -C seed add README.md
git -C seed -c user.name=Demo -c user.email=demo@example.com commit -qm "initial commit"
git -C seed push -q "$dir/srv/git/widgets.git" main

git_image="bot-bottle-demo-git:$(sha256sum "$here/examples/demo/git.Dockerfile" | cut -c1-12)-${base##*:}"
if ! docker image inspect "$git_image" >/dev/null 2>&1; then
    echo "   building $git_image (installs openssh-server from the Debian mirror, once)" >&2
    DOCKER_BUILDKIT=0 docker build -q -t "$git_image" --build-arg BASE_IMAGE="$base" \
        -f "$here/examples/demo/git.Dockerfile" "$here/examples/demo" >/dev/null
fi
api_token="demo-api-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s\n' "$api_token" > api-token
docker network create --label dev.bot-bottle.world="$name" "$net" >/dev/null
for role in api collector; do
    docker run -d --name "$name-$role" --network "$net" --label dev.bot-bottle.world="$name" \
        -e WORLD_ROLE="$role" \
        -v "$dir:/demo:ro" -v "$dir/records:/records" -v "$here/examples/demo/upstream.py:/upstream.py:ro" \
        "$base" python3 /upstream.py >/dev/null
done
[ -e model-script.json ] || echo '[]' > model-script.json
[ -e openai-script.json ] || echo '[]' > openai-script.json
docker run -d --name "$name-model" --network "$net" --label dev.bot-bottle.world="$name" \
    -v "$dir:/demo:ro" -v "$dir/records:/records" -v "$here/examples/demo/model.py:/model.py:ro" \
    "$base" python3 /model.py >/dev/null
docker run -d --name "$name-git" --network "$net" --label dev.bot-bottle.world="$name" \
    -v "$dir:/demo:ro" -v "$dir/srv/git:/srv/git" "$git_image" >/dev/null
ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$1"; }
api_ip=$(ip "$name-api")
collector_ip=$(ip "$name-collector")
git_ip=$(ip "$name-git")
model_ip=$(ip "$name-model")
# Ready when each answers.
ready() { docker exec "$1" bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" 2>/dev/null; }
for _ in $(seq 1 100); do
    if ready "$name-api" 443 && ready "$name-collector" 443 && ready "$name-model" 443 && ready "$name-git" 22; then
        break
    fi
    sleep 0.1
done
cat > world.env <<ENV
WORLD_NET=$net
WORLD_CA=$dir/ca.pem
WORLD_HOSTS=api.demo.test:$api_ip,notes.demo.test:$api_ip,open.demo.test:$api_ip,collector.demo.test:$collector_ip,git.demo.test:$git_ip,api.anthropic.com:$model_ip,api.openai.com:$model_ip
WORLD_HOST_KEY='$(cut -d' ' -f1,2 host_key.pub)'
WORLD_GIT_KEY=$dir/git_key
WORLD_API_TOKEN=$api_token
WORLD_REPOS=$dir/srv/git
WORLD_RECORDS=$dir/records
WORLD_API_IP=$api_ip
WORLD_COLLECTOR_IP=$collector_ip
WORLD_GIT_IP=$git_ip
WORLD_MODEL_IP=$model_ip
WORLD_MODEL_SCRIPT=$dir/model-script.json
WORLD_OPENAI_SCRIPT=$dir/openai-script.json
ENV
