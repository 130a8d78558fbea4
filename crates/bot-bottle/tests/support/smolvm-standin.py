#!/usr/bin/env python3
"""A stand-in for the `smolvm` CLI, for machines where no microVM boots
(nested KVM here). It records every invocation (argv, one JSON line each,
to $SMOLVM_STANDIN_LOG), refuses any argv outside the recorded smolvm 1.32
surface ($SMOLVM_STANDIN_SURFACE, exit 2 as clap would), and emulates a
machine with a Docker container attached only to the network that holds
its `--allow-cidr` address, with host firewall rules (iptables DOCKER-USER
and INPUT) so that, like the VM's TSI allowlist, it reaches that /32 and
nothing else — not the host, not the other bottles, not the internet — and
without NET_ADMIN/NET_RAW (behind TSI the guest has no NIC to reconfigure,
so it cannot take another source address), and with no route beyond the
bundle's subnet (a send elsewhere fails at once). Its resolver is the
`--dns` address; a machine created without `--net` (nor the flags that
imply it) has no network at all. Machine records live in
$SMOLVM_STANDIN_DIR as JSON, shaped as `machine ls --json` prints them.

$SMOLVM_STANDIN_FAIL names a command (`machine cp`) that fails, as on a
fault; $SMOLVM_STANDIN_SLOW names one that first waits 3 s, or
$SMOLVM_STANDIN_SLOW_SECS (to widen a race between two callers, as a loaded
host does). Packs: `pack create --image ARCHIVE` loads the archive into Docker and
writes the image id into the pack file; `--from-vm` commits the machine's
container. What is NOT emulated: the VM's kernel boundary (the container
shares the host kernel), virtio-fs, and smolvm's own DNS path.
"""

import json
import os
import re
import subprocess
import sys
import time

STATE = os.environ.get("SMOLVM_STANDIN_DIR", "/tmp/smolvm-standin")
LOG = os.environ.get("SMOLVM_STANDIN_LOG")
SURFACE = os.environ.get("SMOLVM_STANDIN_SURFACE")


def fail(code, message, status=1):
    sys.stderr.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
    sys.exit(status)


def docker(*args, check=True, capture=True):
    r = subprocess.run(["docker", *args], capture_output=capture, text=True)
    if check and r.returncode != 0:
        fail("INTERNAL", "docker %s: %s" % (args[0], (r.stderr or "").strip()))
    return r


def surface():
    commands = {}
    for line in open(SURFACE):
        if line.startswith("#") or not line.strip():
            continue
        fields = [f.strip() for f in line.split(" |")]
        opts = {}
        for o in fields[1].split():
            takes = o.endswith("=")
            for name in o.rstrip("=").split("|"):
                opts[name] = takes
        commands[fields[0]] = (opts, fields[2] if len(fields) > 2 else "")
    return commands


def parse(argv):
    """(command, {option: [values]}, positionals), or exit 2."""
    commands = surface()
    for name, (opts, shape) in commands.items():
        words = name.split(" ")
        if argv[: len(words)] == words:
            break
    else:
        fail("USAGE", "unrecognized subcommand: %s" % " ".join(argv[:2]), 2)
    options, positionals, rest = {}, [], argv[len(words):]
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--":
            positionals += rest[i:]
            break
        if a.startswith("-") and len(a) > 1:
            flag, _, inline = a.partition("=")
            if flag not in opts:
                fail("USAGE", "unexpected argument '%s' found" % flag, 2)
            if opts[flag]:
                if not inline:
                    i += 1
                    if i >= len(rest):
                        fail("USAGE", "a value is required for '%s'" % flag, 2)
                    inline = rest[i]
                options.setdefault(flag.lstrip("-"), []).append(inline)
            else:
                options.setdefault(flag.lstrip("-"), []).append(True)
        else:
            positionals.append(a)
        i += 1
    return name, options, positionals


def one(options, *names):
    for n in names:
        if n in options:
            return options[n][-1]
    return None


def record_path(name):
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name or ""):
        fail("INVALID", "bad machine name %r" % name)
    return os.path.join(STATE, name + ".json")


def load(name):
    try:
        with open(record_path(name)) as f:
            return json.load(f)
    except FileNotFoundError:
        fail("NOT_FOUND", "machine '%s' not found" % name)


def save(m):
    with open(record_path(m["name"]), "w") as f:
        json.dump(m, f)


def container(name):
    return "smolvm-standin-" + name


def network_holding(ip):
    """The Docker network whose subnet holds `ip`."""
    def num(a):
        return sum(int(x) << (8 * (3 - i)) for i, x in enumerate(a.split(".")))
    for net in docker("network", "ls", "-q").stdout.split():
        # Other tests create and remove networks all the while: one listed
        # a moment ago may be gone now, and is then not the one we want.
        r = docker("network", "inspect", net, check=False)
        if r.returncode != 0:
            continue
        info = json.loads(r.stdout)[0]
        for c in (info.get("IPAM") or {}).get("Config") or []:
            sub = c.get("Subnet", "")
            if "." not in sub:
                continue
            base, prefix = sub.split("/")
            mask = (0xFFFFFFFF << (32 - int(prefix))) & 0xFFFFFFFF
            if num(base) & mask == num(ip) & mask:
                return info["Name"]
    fail("NETWORK", "no network holds %s" % ip)


def firewall(m, add):
    """The allowlist: the container may reach its /32s and nothing else."""
    ip = m.get("container_ip")
    if not ip:
        return
    rules = [("DOCKER-USER", ["-s", ip, "-j", "DROP"]), ("INPUT", ["-s", ip, "-j", "DROP"])]
    rules += [("DOCKER-USER", ["-s", ip, "-d", c, "-j", "ACCEPT"]) for c in m["allowed_cidrs"]]
    for chain, rule in rules:
        while subprocess.run(["iptables", "-D", chain, *rule], capture_output=True).returncode == 0:
            pass
        if add:
            if subprocess.run(["iptables", "-I", chain, *rule], capture_output=True).returncode != 0:
                fail("INTERNAL", "iptables %s %s failed (the stand-in needs root)" % (chain, " ".join(rule)))


def main():
    argv = sys.argv[1:]
    if LOG:
        with open(LOG, "a") as f:
            f.write(json.dumps(argv) + "\n")
    os.makedirs(STATE, exist_ok=True)
    command, options, positionals = parse(argv)
    name = one(options, "name", "n")
    # A command that fails as smolvm's would on a fault (to test what a
    # launch failing at that step leaves behind).
    if os.environ.get("SMOLVM_STANDIN_FAIL") == command:
        fail("INTERNAL", "`%s` failed (SMOLVM_STANDIN_FAIL)" % command)
    if os.environ.get("SMOLVM_STANDIN_SLOW") == command:
        time.sleep(float(os.environ.get("SMOLVM_STANDIN_SLOW_SECS", "3")))

    if command == "pack create":
        out = one(options, "output", "o")
        if "image" in options or "I" in options:
            loaded = docker("load", "-q", "-i", one(options, "image", "I")).stdout
            ref = loaded.strip().split()[-1]
            image = docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip()
        else:
            vm = load(one(options, "from-vm"))
            if vm["state"] != "stopped":
                fail("INVALID_STATE", "machine '%s' must be stopped to pack it" % vm["name"])
            image = docker("commit", container(vm["name"])).stdout.strip()
        # As smolvm does: the executable OUT and its sidecar OUT.smolmachine.
        with open(out, "w") as f:
            f.write("#!/bin/sh\necho 'a smolvm stand-in pack'\n")
        with open(out + ".smolmachine", "w") as f:
            json.dump({"image": image}, f)
    elif command == "machine create":
        if os.path.exists(record_path(name)):
            fail("CONFLICT", "machine '%s' already exists" % name)
        with open(one(options, "from")) as f:
            image = json.load(f)["image"]
        labels = dict(l.split("=", 1) for l in options.get("label", []))
        # A smolvm that did not apply the allowlist (to test the refusal).
        allowed = [] if os.environ.get("SMOLVM_STANDIN_IGNORE_ALLOW") == "1" else options.get("allow-cidr", [])
        # --allow-cidr and --dns imply --net; without any of them, smolvm
        # gives the machine no network at all.
        network = bool("net" in options or allowed or one(options, "dns"))
        save({"name": name, "image": image, "allowed_cidrs": allowed,
              "dns": one(options, "dns"), "labels": labels, "network": network, "state": "created",
              "mem": one(options, "mem"), "pid": None})
    elif command == "machine start":
        m = load(name)
        c = container(name)
        if not m.get("network"):
            # No network at all: no NIC, so no allowlist to apply.
            if docker("container", "inspect", c, check=False).returncode != 0:
                docker("create", "--name", c, "--network", "none", "--label", "dev.bot-bottle.smolvm-standin=1",
                       "--cap-drop", "NET_ADMIN", "--cap-drop", "NET_RAW", m["image"], "sleep", "infinity")
            docker("start", c)
            m["state"] = "running"
            save(m)
            return
        if docker("container", "inspect", c, check=False).returncode != 0:
            ip = m["allowed_cidrs"][0].split("/")[0]
            # No NIC to reconfigure, as behind TSI: root in the "guest" cannot
            # take another address and slip past the source-address rules.
            args = ["create", "--name", c, "--network", network_holding(ip), "--label", "dev.bot-bottle.smolvm-standin=1",
                    "--cap-drop", "NET_ADMIN", "--cap-drop", "NET_RAW"]
            if m.get("dns"):
                args += ["--dns", m["dns"]]
            # --mem is MiB, as smolvm's is: the machine's memory bound.
            if m.get("mem"):
                args += ["--memory", "%sm" % m["mem"], "--memory-swap", "%sm" % m["mem"]]
            docker(*args, m["image"], "sleep", "infinity")
        docker("start", c)
        # Behind TSI nothing outside the allowlist is reachable: no route
        # beyond the bundle's own subnet (a send elsewhere fails at once, as
        # it would for the guest), and the firewall rules below on top.
        pid = docker("inspect", "-f", "{{.State.Pid}}", c).stdout.strip()
        r = subprocess.run(["nsenter", "--net=/proc/%s/ns/net" % pid, "ip", "route", "del", "default"],
                           capture_output=True, text=True)
        if r.returncode != 0 and "No such process" not in r.stderr:
            fail("INTERNAL", "cannot remove the default route: %s" % r.stderr.strip())
        m["container_ip"] = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c).stdout.strip()
        firewall(m, True)
        m["state"] = "running"
        save(m)
    elif command == "machine stop":
        m = load(name)
        docker("stop", "-t", "1", container(name), check=False)
        firewall(m, False)
        m["state"] = "stopped"
        save(m)
    elif command == "machine delete":
        m = load(name)
        docker("rm", "-f", container(name), check=False)
        firewall(m, False)
        os.remove(record_path(name))
    elif command == "machine ls":
        out = []
        for f in sorted(os.listdir(STATE)):
            if f.endswith(".json"):
                with open(os.path.join(STATE, f)) as fh:
                    out.append(json.load(fh))
        print(json.dumps(out, indent=2))
    elif command == "machine status":
        print(json.dumps(load(name), indent=2))
    elif command == "machine exec":
        m = load(name)
        if m["state"] != "running":
            fail("INVALID_STATE", "machine '%s' is not running" % name)
        args = ["docker", "exec"]
        if "interactive" in options or "i" in options:
            args.append("-i")
        if "tty" in options or "t" in options:
            args.append("-t")
        for k, flag in (("user", "-u"), ("u", "-u"), ("workdir", "-w"), ("w", "-w")):
            if k in options:
                args += [flag, options[k][-1]]
        for e in options.get("env", []) + options.get("e", []):
            args += ["-e", e]
        cmd = positionals[1:] if positionals and positionals[0] == "--" else positionals
        os.execvp("docker", args + [container(name)] + cmd)
    elif command == "machine cp":
        src, dst = positionals
        guest = dst if ":" in dst else src
        machine, path = guest.split(":", 1)
        load(machine)
        c = container(machine)
        if ":" in dst:
            docker("cp", src, "%s:%s" % (c, path))
            if "mode" in options:
                docker("exec", "-u", "0", c, "chmod", options["mode"][-1], path)
            owner = "%s:%s" % (one(options, "uid") or "0", one(options, "gid") or "0")
            docker("exec", "-u", "0", c, "chown", owner, path)
        else:
            docker("cp", "%s:%s" % (c, path), dst)
    else:
        fail("UNSUPPORTED", "the stand-in does not emulate `%s`" % command)


main()
