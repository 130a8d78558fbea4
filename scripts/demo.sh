#!/usr/bin/env bash
# bot-bottle's main job, end to end on this machine: build bot-bottle and its
# images (the first run assembles a base image from this host's Debian
# packages), start a small local "internet" (an HTTPS API and an SSH git
# server in containers only the sidecar can reach), then run the `tour` agent
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
net=bot-bottle-demo-net
cleanup() {
    docker rm -f bot-bottle-demo-api bot-bottle-demo-git >/dev/null 2>&1 || true
    docker network rm "$net" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
cleanup_quiet() { docker rm -f bot-bottle-demo-api bot-bottle-demo-git >/dev/null 2>&1 || true; docker network rm "$net" >/dev/null 2>&1 || true; }
cleanup_quiet

echo "== images"
base=$("$bb" images build | awk '$1 == "base" {print $2}')

echo "== the demo world: api.demo.test (HTTPS) and git.demo.test (SSH)"
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bot-bottle demo CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=api.demo.test" \
    -keyout api.key -out api.csr 2>/dev/null
printf 'subjectAltName=DNS:api.demo.test\n' > api.ext
openssl x509 -req -in api.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile api.ext -out api.pem 2>/dev/null
chmod 644 api.key
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
mkdir -p srv/git seed
git init -q --bare -b main srv/git/widgets.git
git -C seed init -q -b main
echo "# widgets" > seed/README.md
git -C seed add README.md
git -C seed -c user.name=Demo -c user.email=demo@example.com commit -qm "initial commit"
git -C seed push -q "$work/srv/git/widgets.git" main
cd - >/dev/null

docker network create "$net" >/dev/null
git_image="bot-bottle-demo-git:$(sha256sum examples/demo/git.Dockerfile | cut -c1-12)-${base##*:}"
if ! docker image inspect "$git_image" >/dev/null 2>&1; then
    echo "   building $git_image (installs openssh-server from the Debian mirror, once)"
    DOCKER_BUILDKIT=0 docker build -q -t "$git_image" --build-arg BASE_IMAGE="$base" -f examples/demo/git.Dockerfile examples/demo >/dev/null
fi
api_token="demo-api-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
docker run -d --name bot-bottle-demo-api --network "$net" -e DEMO_EXPECT_TOKEN="$api_token" \
    -v "$work:/demo:ro" -v "$PWD/examples/demo/upstream.py:/upstream.py:ro" "$base" python3 /upstream.py >/dev/null
docker run -d --name bot-bottle-demo-git --network "$net" -v "$work:/demo:ro" -v "$work/srv/git:/srv/git" \
    "$git_image" >/dev/null
ip() { docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$1"; }

echo "== the tour agent, headless, in a bottle"
home="$work/home"
mkdir -p "$home"
cp -r examples/bottles examples/agents "$home/"
sed -i "s|ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPLACEHOLDERPLACEHOLDERPLACEHOLDER|$(cut -d' ' -f1,2 "$work/host_key.pub")|; s|~/.ssh/bot-bottle-tour-key|$work/git_key|" \
    "$home/bottles/tour.md"
status=0
BOT_BOTTLE_HOME="$home" \
DEMO_API_TOKEN="$api_token" \
DEMO_DB_PASSWORD="demo-db-password-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
BOT_BOTTLE_UPSTREAM_CA="$work/ca.pem" \
BOT_BOTTLE_SIDECAR_NETWORK="$net" \
BOT_BOTTLE_SIDECAR_HOSTS="api.demo.test:$(ip bot-bottle-demo-api),git.demo.test:$(ip bot-bottle-demo-git)" \
    "$bb" start tour --label tour -y --headless --prompt "$(cat examples/demo/agent.sh)" "$@" || status=$?

echo
echo "== what the upstreams saw"
docker logs bot-bottle-demo-api 2>&1 | sed 's/^/  /'
echo "  git.demo.test widgets.git main: $(git --git-dir="$work/srv/git/widgets.git" log --oneline main | tr '\n' ';' )"
exit "$status"
