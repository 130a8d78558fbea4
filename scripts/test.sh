#!/usr/bin/env bash
# The full test suite, exactly what CI runs (.ci/run calls this):
# formatting, lints as errors, every test in the workspace, and the
# sandbox-escape suite once more on the smolmachines backend.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real peers the tests drive, from Debian: tmux (the interactive terminal
# paths), a Python WebSocket client and server (in the system Python), sshd
# (git-gate's upstream); and from PyPI the MCP SDK (supervise's client).
install() {
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing $*"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "scripts/test.sh: install the Debian package(s) $*" >&2
        exit 1
    fi
}
command -v tmux >/dev/null 2>&1 || install tmux
/usr/bin/python3 -c 'import websocket, websockets' 2>/dev/null || install python3-websocket python3-websockets
[ -x /usr/sbin/sshd ] || install openssh-server
# The DNS-probe test runs the proxy in a private network namespace.
command -v unshare >/dev/null 2>&1 && command -v nsenter >/dev/null 2>&1 || install util-linux
command -v ip >/dev/null 2>&1 || install iproute2
# The official MCP Python SDK (PyPI), a real MCP client for the supervise tests.
venv=target/test-venv
if ! "$venv/bin/python" -c 'import mcp' 2>/dev/null; then
    echo "== creating $venv with the MCP Python SDK"
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
        install python3-venv
        rm -rf "$venv"
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "mcp==2.3.0"
fi
# smolvm itself (PyPI's smolmachines): the smolmachines tests check the CLI
# surface they hold the backend to against its own --help.
if ! ls "$venv"/lib/python3*/site-packages/smol/smol-vmm >/dev/null 2>&1; then
    echo "== installing smolmachines (smolvm) into $venv"
    "$venv/bin/pip" install -q "smolmachines==1.32.2"
fi

# A Docker Engine for the backend's tests (installed and started when missing).
bash scripts/docker.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked 2>&1 | tee "$log"
# The sandbox-escape suite again with the bottles on smolmachines, the
# machines played by the smolvm stand-in (no microVM boots on CI's machines).
echo "== the sandbox-escape suite on smolmachines"
ESCAPE_BACKEND=smolmachines cargo test -p bot-bottle --test escape --locked 2>&1 | tee -a "$log"
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
