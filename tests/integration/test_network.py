"""Networking: none / host / private (pasta, slirp4netns), published ports, user networks.

Only loopback on the host and addresses inside namespaces the tests make are used: published
ports are fetched from 127.0.0.1, user networks live in namespaces rootbox creates.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import socket
import time
import urllib.request
import uuid

import pytest

from util import IS_ROOT, alive, wait_until

HELPERS = ["pasta", "slirp4netns"]


def have(helper):
    return shutil.which(helper, path=os.environ.get("PATH", "") + ":/usr/bin:/bin") is not None


def need(helper):
    if not have(helper):
        pytest.skip(f"{helper} is not installed (tests/setup-root.sh installs it)")


def free_port(proto=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, proto) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port, path="/", timeout=10.0):
    """GET http://127.0.0.1:PORT/PATH, retrying until the server in the container listens."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
                return r.read().decode()
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port}: {last}")


def state_of(xdg, name):
    """The recorded state of the container named NAME (its directory is named by its id), once
    it has its network recorded (the command may run a moment before the launcher writes the
    record)."""

    def read():
        for f in (pathlib.Path(xdg) / "rootbox").glob("*/state.json"):
            try:
                st = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if st.get("name") == name and "network" in st:
                return st
        return None

    return wait_until(read, 5, what=f"container {name}'s network in its state")


def uniq(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


HTTPD = "mkdir -p /tmp/www && echo {msg} > /tmp/www/index.html && echo serving && exec httpd -f -p 80 -h /tmp/www"


# --- none and host -------------------------------------------------------------


def test_none_has_only_loopback_and_no_helper(box):
    r = box("sh", "-c", "ls /sys/class/net; echo ---; cat /proc/net/route", opts=["--network", "none"])
    assert r.rc == 0, r
    ifaces, routes = r.out.split("---\n")
    assert ifaces.split() == ["lo"], r
    assert routes.splitlines()[1:] == [], f"no routes expected:{r}"


def test_host_sees_the_hosts_interfaces(box):
    host = sorted(os.listdir("/sys/class/net"))
    r = box("sh", "-c", "cat /proc/net/dev", opts=["--network", "host"])
    assert r.rc == 0, r
    ifaces = sorted(line.split(":", 1)[0].strip() for line in r.lines[2:] if ":" in line)
    assert ifaces == host, r


def test_default_is_private_when_a_helper_is_installed(box, rootbox):
    if not (have("pasta") or have("slirp4netns")):
        pytest.skip("no helper installed")
    info = json.loads(rootbox("info", "--json").out)
    assert info["network_default"].startswith("private"), info
    r = box("sh", "-c", "ls /sys/class/net")
    assert r.rc == 0, r
    assert len(r.lines) == 2 and "lo" in r.lines, r


# --- private networks --------------------------------------------------------------


@pytest.mark.parametrize("helper", HELPERS)
def test_private_network_has_address_route_and_dns(box, helper):
    need(helper)
    r = box(
        "sh",
        "-c",
        "cat /proc/net/route; echo ---; ip -o -4 addr show; echo ---; cat /etc/hosts; echo ---; "
        "cat /etc/resolv.conf; echo ---; hostname",
        opts=["--network", helper, "--hostname", "netbox"],
    )
    assert r.rc == 0, r
    route, addrs, hosts, resolv, hostname = r.out.split("---\n")
    default = [l for l in route.splitlines()[1:] if l.split()[1] == "00000000"]
    assert default and int(default[0].split()[3], 16) & 2, f"no default route via a gateway:{r}"
    ips = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", addrs)
    ips = [ip for ip in ips if not ip.startswith("127.")]
    assert ips, f"no address besides loopback:{r}"
    assert f"{ips[0]}\tnetbox" in hosts, r
    assert re.search(r"^nameserver \S+", resolv, re.M), r
    assert hostname.strip() == "netbox", r


@pytest.mark.parametrize("helper", HELPERS)
def test_published_port_answers_on_loopback_and_helper_goes_away(background, box_args, xdg_runtime_dir, helper):
    need(helper)
    port = free_port()
    name = uniq("web")
    b = background(
        box_args("sh", "-c", HTTPD.format(msg=f"hello-{helper}"), opts=["--init", "--network", helper, "--name", name, "-p", f"{port}:80"]),
        env={"XDG_RUNTIME_DIR": xdg_runtime_dir},
    )
    b.wait_for("serving")
    assert fetch(port).strip() == f"hello-{helper}"

    st = state_of(xdg_runtime_dir, name)
    net = st["network"]
    assert net["mode"] == helper
    assert net["ports"] == [{"hostIp": "127.0.0.1", "hostPort": port, "containerPort": 80, "proto": "tcp"}], net
    assert net.get("ip"), net
    helper_pid = net["helper"]["pid"]
    assert alive(helper_pid)

    b.signal(15)
    r = b.finish()
    assert r.rc is not None, r
    wait_until(lambda: not alive(helper_pid), 5, what=f"{helper} (pid {helper_pid}) to exit")
    # Nothing listens on the port any more.
    assert _bindable(port)


@pytest.mark.parametrize("helper", HELPERS)
def test_killed_runtime_leaves_no_helper(background, box_args, xdg_runtime_dir, helper):
    need(helper)
    name = uniq("killed")
    b = background(box_args("sh", "-c", "echo up; exec sleep 60", opts=["--network", helper, "--name", name, "-p", f"{free_port()}:80"]))
    b.wait_for("up")
    helper_pid = state_of(xdg_runtime_dir, name)["network"]["helper"]["pid"]
    assert alive(helper_pid)
    b.signal(9)  # the runtime dies without cleaning up: the helper must die with it
    wait_until(lambda: not alive(helper_pid), 5, what=f"{helper} (pid {helper_pid}) to exit")


@pytest.mark.parametrize("helper", HELPERS)
def test_random_host_port_is_chosen_and_reported(background, box_args, helper):
    need(helper)
    b = background(box_args("sh", "-c", HTTPD.format(msg="random"), opts=["--init", "--network", helper, "-p", "80"]))
    b.wait_for("serving")
    m = re.search(r"publishing 80/tcp -> 127\.0\.0\.1:(\d+)", b.err)
    assert m, b.err
    assert fetch(int(m.group(1))).strip() == "random"
    b.signal(15)
    b.finish()


@pytest.mark.parametrize("helper", HELPERS)
def test_port_in_use_is_a_clear_error(box, helper):
    need(helper)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = box("true", opts=["--network", helper, "-p", f"{port}:80"])
    assert r.rc == 125, r
    assert f"127.0.0.1:{port}/tcp" in r.err and "already in use" in r.err, r


@pytest.mark.unprivileged
def test_privileged_port_is_a_clear_error(box):
    start = int(open("/proc/sys/net/ipv4/ip_unprivileged_port_start").read())
    if start == 0:
        pytest.skip("every port is unprivileged on this host")
    r = box("true", opts=["-p", f"{start - 1}:80"])
    assert r.rc == 125, r
    assert f"host port {start - 1}" in r.err and "privileged" in r.err and "ip_unprivileged_port_start" in r.err, r


@pytest.mark.parametrize(
    "spec, why",
    [
        ("80:abc", 'container port "abc" is not a number'),
        ("70000:80", "out of range"),
        ("8080:80/sctp", "unknown protocol"),
        ("1.2.3:8080:80", "not an IP address"),
        ("8000-8010:80", "ranges are not supported"),
        ("a:b:c:d", "expected [IP:][HOST_PORT:]CONTAINER_PORT"),
        ("192.0.2.254:18080:80", "not an address of this host"),
    ],
)
def test_bad_publish_specs_are_refused(box, spec, why):
    r = box("true", opts=["-p", spec])
    assert r.rc == 125, r
    assert why in r.err and spec.split(":")[0] in r.err, r


@pytest.mark.parametrize(
    "opts, why",
    [
        (["--network", "none", "-p", "8080:80"], "--network none has only loopback"),
        (["--network", "host", "-p", "8080:80"], "--network host"),
        (["--network", "bad name!"], 'unknown network "bad name!"'),
        (["--network", "no-such-net"], 'network "no-such-net" does not exist'),
        (["--add-host", "nocolon"], "expected NAME:IP"),
        (["--dns", "not-an-ip"], 'invalid --dns "not-an-ip"'),
    ],
)
def test_bad_network_options_are_refused(box, opts, why):
    r = box("true", opts=opts)
    assert r.rc == 125, r
    assert why in r.err, r


def test_add_host_dns_and_search_domain(box):
    r = box(
        "sh",
        "-c",
        "cat /etc/hosts; echo ---; cat /etc/resolv.conf",
        opts=["--network", "none", "--add-host", "db.example:10.9.8.7", "--dns", "10.1.2.3", "--dns-search", "corp.example"],
    )
    assert r.rc == 0, r
    hosts, resolv = r.out.split("---\n")
    assert "10.9.8.7\tdb.example" in hosts.splitlines(), r
    assert "nameserver 10.1.2.3" in resolv.splitlines(), r
    assert "search corp.example" in resolv.splitlines(), r


# --- user networks ------------------------------------------------------------------


@pytest.fixture
def user_network(rootbox):
    made = []

    def create(helper=None):
        name = uniq("rbnet")
        args = ["network", "create", name] + (["--helper", helper] if helper else [])
        r = rootbox(*args)
        assert r.rc == 0, r
        made.append(name)
        return name

    yield create
    for n in made:
        rootbox("network", "rm", "--force", n)


def net_info(rootbox, name):
    r = rootbox("network", "inspect", name)
    assert r.rc == 0, r
    return json.loads(r.out)[0]


@pytest.mark.parametrize("helper", HELPERS)
def test_containers_on_a_user_network_reach_each_other_by_name(rootbox, user_network, background, box_args, box, rootfs, tmp_path, helper):
    need(helper)
    net = user_network(helper)
    info = net_info(rootbox, net)
    assert info["Running"] and info["Driver"] == helper and info["IPAddress"], info
    web = uniq("web")
    b = background(box_args("sh", "-c", HTTPD.format(msg="hello-by-name"), opts=["--init", "--network", net, "--name", web]))
    b.wait_for("serving")
    client = uniq("client")
    r = box(
        "sh",
        "-c",
        f"wget -q -O- http://{web}/ && grep -w {web} /etc/hosts",
        opts=["--network", net, "--name", client],
    )
    assert r.rc == 0, r
    assert r.lines[0] == "hello-by-name", r
    assert r.lines[1].split() == [info["IPAddress"], web], r
    # The network lists the running member; removing it while in use is refused.
    assert [c["name"] for c in net_info(rootbox, net)["Containers"]] == [web]
    r = rootbox("network", "rm", net)
    assert r.rc != 0 and "in use" in r.err and web in r.err, r

    b.signal(15)
    b.finish()
    assert net_info(rootbox, net)["Containers"] == []
    pids = [info["InfraPid"], info["HelperPid"]]
    assert all(alive(p) for p in pids), info
    r = rootbox("network", "rm", net)
    assert r.rc == 0, r
    wait_until(lambda: not any(alive(p) for p in pids), 5, what="the network's processes to exit")
    assert rootbox("network", "ls", "-q").out.split().count(net) == 0


def test_published_port_on_a_user_network(rootbox, user_network, background, box_args, xdg_runtime_dir):
    need("slirp4netns")
    net = user_network("slirp4netns")
    port = free_port()
    name = uniq("pub")
    b = background(box_args("sh", "-c", HTTPD.format(msg="net-published"), opts=["--init", "--network", net, "--name", name, "-p", f"{port}:80"]))
    b.wait_for("serving")
    assert fetch(port).strip() == "net-published"
    b.signal(15)
    b.finish()
    # The forward went away with the container: the port is free again.
    wait_until(lambda: _bindable(port), 5, what=f"port {port} to be released")


def _bindable(port):
    """Whether nothing listens on 127.0.0.1:PORT (connections in TIME_WAIT do not count)."""
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False


def test_ports_on_a_pasta_user_network_are_refused_clearly(rootbox, user_network, box):
    need("pasta")
    net = user_network("pasta")
    r = box("true", opts=["--network", net, "-p", f"{free_port()}:80"])
    assert r.rc == 125, r
    assert "needs slirp4netns" in r.err, r


def test_network_names_are_checked(rootbox):
    for bad, why in [("host", "is a network mode"), ("a/b", "invalid network name")]:
        r = rootbox("network", "create", bad)
        assert r.rc != 0 and why in r.err, r
    r = rootbox("network", "rm", "never-made")
    assert r.rc != 0 and "does not exist" in r.err, r


def test_network_create_twice_is_refused(rootbox, user_network):
    if not (have("pasta") or have("slirp4netns")):
        pytest.skip("no helper installed")
    net = user_network()
    r = rootbox("network", "create", net)
    assert r.rc != 0 and "already exists" in r.err, r


def test_user_network_restarts_when_its_process_died(rootbox, user_network, box):
    if not (have("pasta") or have("slirp4netns")):
        pytest.skip("no helper installed")
    net = user_network()
    info = net_info(rootbox, net)
    os.kill(info["InfraPid"], 9)
    wait_until(lambda: not net_info(rootbox, net)["Running"], 5, what="the network to show as stopped")
    name = uniq("again")
    r = box("sh", "-c", f"ls /sys/class/net; grep -w {name} /etc/hosts", opts=["--network", net, "--name", name])
    assert r.rc == 0, r
    assert len(r.lines) == 3 and "lo" in r.lines[:2], r
    info2 = net_info(rootbox, net)
    assert info2["Running"] and info2["InfraPid"] != info["InfraPid"], info2
    old_helper = info["HelperPid"]
    wait_until(lambda: not alive(old_helper), 5, what="the old helper to be stopped")


# --- detached containers (run -d: the monitor attaches the network) -----------------------


@pytest.mark.parametrize("helper", HELPERS)
def test_detached_published_port_port_inspect_and_rm_kills_the_helper(lc, rootfs, helper):
    need(helper)
    port = free_port()
    name = uniq("dweb")
    r = lc("run", "-d", "--init", "--network", helper, "--name", name, "-p", f"{port}:80",
           "--rootfs", rootfs, "--", "sh", "-c", HTTPD.format(msg=f"detached-{helper}"))
    assert r.rc == 0, r
    cid = r.out.strip()
    assert fetch(port).strip() == f"detached-{helper}"

    r = lc("port", name)
    assert r.rc == 0, r
    assert r.lines == [f"80/tcp -> 127.0.0.1:{port}"], r
    info = lc.inspect(name)
    ns = info["NetworkSettings"]
    assert ns["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}, ns
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ns["IPAddress"]), ns
    assert info["HostConfig"]["NetworkMode"] == helper, info["HostConfig"]
    # The address inspect shows is the container's own.
    r = lc("exec", name, "ip", "-o", "-4", "addr", "show")
    assert r.rc == 0 and f"inet {ns['IPAddress']}/" in r.out, r
    r = lc("exec", name, "cat", "/etc/hosts")
    assert r.rc == 0 and f"{ns['IPAddress']}\t" in r.out and name in r.out, r
    r = lc("ps")
    assert f"80/tcp -> 127.0.0.1:{port}" in r.out, r

    with open(lc.dir / cid / "state.json") as f:
        helper_pid = json.load(f)["network"]["helper"]["pid"]
    assert alive(helper_pid)
    # The helper is the monitor's, not the CLI's that ran `run -d` (long gone).
    with open(f"/proc/{helper_pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid == info["Monitor"]["Pid"], (ppid, info["Monitor"])

    r = lc("rm", "-f", name)
    assert r.rc == 0, r
    wait_until(lambda: not alive(helper_pid), 5, what=f"{helper} (pid {helper_pid}) to exit")
    wait_until(lambda: _bindable(port), 5, what=f"port {port} to be released")


def test_detached_stop_frees_the_port_and_start_publishes_it_again(lc, rootfs):
    if not (have("pasta") or have("slirp4netns")):
        pytest.skip("no helper installed")
    port = free_port()
    name = uniq("dre")
    r = lc("run", "-d", "--init", "--name", name, "-p", f"{port}:80", "--rootfs", rootfs,
           "--", "sh", "-c", HTTPD.format(msg="again"))
    assert r.rc == 0, r
    assert fetch(port).strip() == "again"
    r = lc("stop", "-t", "5", name)
    assert r.rc == 0, r
    wait_until(lambda: _bindable(port), 5, what=f"port {port} to be released")
    assert lc("port", name).out.strip() == "", "a stopped container publishes nothing"
    assert lc.inspect(name)["NetworkSettings"]["IPAddress"] == ""
    r = lc("start", name)
    assert r.rc == 0, r
    assert fetch(port).strip() == "again"
    assert lc("port", name).lines == [f"80/tcp -> 127.0.0.1:{port}"]


def test_detached_on_a_user_network_resolves_peers(lc, rootfs):
    if not (have("pasta") or have("slirp4netns")):
        pytest.skip("no helper installed")
    # Made in lc's state dir, where its containers are.
    net = uniq("rbnet")
    r = lc("network", "create", net)
    assert r.rc == 0, r
    try:
        a, b = uniq("da"), uniq("db")
        for n in (a, b):
            r = lc("run", "-d", "--network", net, "--name", n, "--rootfs", rootfs, "--", "sleep", "60")
            assert r.rc == 0, r
        # The first member's hosts file was rewritten in place when the second joined.
        r = lc("exec", a, "cat", "/etc/hosts")
        assert r.rc == 0 and re.search(rf"^\S+\t{b}$", r.out, re.M), r
        assert lc.inspect(a)["NetworkSettings"]["Networks"][net]["IPAddress"], lc.inspect(a)
        r = lc("rm", "-f", b)
        assert r.rc == 0, r
        r = lc("exec", a, "cat", "/etc/hosts")
        assert r.rc == 0 and b not in r.out, r
    finally:
        for n in lc("ps", "-aq").out.split():
            lc("rm", "-f", n)
        lc("network", "rm", "--force", net)
