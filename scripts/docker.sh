#!/usr/bin/env bash
# Make sure a Docker Engine answers on this machine: install Debian's
# docker.io when dockerd is missing, start dockerd when it is not running,
# wait until it answers. Idempotent; used by the README commands and CI.
# With DOCKER_HOST set to something other than the local socket, only checks.
set -euo pipefail

sock=/var/run/docker.sock
ping() { local s="${DOCKER_HOST:-unix://$sock}"; case "$s" in
    unix://*) curl -fsS --max-time 5 --unix-socket "${s#unix://}" -o /dev/null http://docker/_ping 2>/dev/null ;;
    tcp://*) curl -fsS --max-time 5 -o /dev/null "http://${s#tcp://}/_ping" 2>/dev/null ;;
    *) return 1 ;;
esac; }

if ping; then
    exit 0
fi
if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix://$sock" ]; then
    echo "scripts/docker.sh: no Docker Engine answers at DOCKER_HOST=$DOCKER_HOST" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "scripts/docker.sh: no Docker Engine answers at $sock; start one (as root: scripts/docker.sh)" >&2
    exit 1
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "== installing Debian's docker.io"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
if ! ping; then
    echo "== starting dockerd"
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl start docker
    else
        nohup dockerd >/var/log/bot-bottle-dockerd.log 2>&1 &
    fi
fi
for _ in $(seq 1 120); do
    if ping; then
        exit 0
    fi
    sleep 0.5
done
echo "scripts/docker.sh: dockerd did not answer within 60 s; see /var/log/bot-bottle-dockerd.log" >&2
exit 1
