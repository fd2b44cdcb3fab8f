"""The Debian package (issue 6): built by packaging/build-deb.sh (dpkg-deb from a release
build, lintian errors fail it), installed with `dpkg -i` inside a real-systemd container, started
by its socket unit, asked with `tulipd status`, then removed and purged cleanly.

The container's /usr is the host's, read-only; for dpkg it gets a writable overlay and a copy of
the host's dpkg database. The package's config listens on 127.0.0.1:7007 and friends, on the
network the container shares with the host.

env TULIPD_DEB: test this .deb instead of building one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from blackbox_conftest import connect_tcp, echo_roundtrip
from conftest import REPO
from container import SystemdContainer, container_problem

PACKAGED_CONFIG = json.loads((REPO / "packaging" / "tulipd.json").read_text())
PORTS = {l["name"]: l["tcp"]["port"] for l in PACKAGED_CONFIG["listeners"] if "tcp" in l}
ADMIN = PACKAGED_CONFIG["admin"]["path"]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def deb(tmp_path_factory) -> Path:
    if os.environ.get("TULIPD_DEB"):
        return Path(os.environ["TULIPD_DEB"]).resolve()
    out = tmp_path_factory.mktemp("deb")
    result = subprocess.run(
        [str(REPO / "packaging" / "build-deb.sh"), "--out", str(out)],
        capture_output=True, text=True, timeout=1800, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, f"build-deb.sh failed:\n{result.stdout}\n{result.stderr[-4000:]}"
    return Path(result.stdout.strip().splitlines()[-1]).resolve()


@pytest.fixture(scope="module")
def machine(deb):
    problem = container_problem()
    if problem:
        pytest.fail(f"cannot run the package test: {problem}", pytrace=False)
    busy = [name for name, port in PORTS.items() if port_in_use(port)]
    if busy:
        pytest.fail(f"the packaged config's ports are taken on this host: {busy} (stop `make run`?)", pytrace=False)
    binds = {str(deb.parent): "/opt/deb", "/var/lib/dpkg": "/opt/host-dpkg"}
    with SystemdContainer("tulip-deb", binds=binds) as container:
        # dpkg needs its database and a writable /usr (merged /usr: the units go to /usr/lib).
        container.run("cp", "-a", "/opt/host-dpkg/.", "/var/lib/dpkg/")
        # The host's overrides name groups this container's fresh /etc does not have.
        container.run("truncate", "-s", "0", "/var/lib/dpkg/statoverride")
        container.run("mkdir", "-p", "/var/log/apt", "/tmp/usr-upper", "/tmp/usr-work")
        container.run(
            "mount", "-t", "overlay", "overlay",
            "-o", "lowerdir=/usr,upperdir=/tmp/usr-upper,workdir=/tmp/usr-work", "/usr",
        )  # fmt: skip
        # A Docker-built host image ships policy-rc.d answering 101 ("never start services");
        # a real machine has none, and the package's postinst is to be seen starting its sockets.
        container.run("rm", "-f", "/usr/sbin/policy-rc.d")
        yield container


# The deadline covers the module's fixtures too: a release build from scratch takes minutes.
@pytest.mark.deadline(1800)
def test_install_start_status_and_remove(machine, deb):
    installed = machine.run("dpkg", "-i", f"/opt/deb/{deb.name}", timeout=120)
    assert "Setting up tulipd" in installed.stdout, installed.stdout
    assert machine.run("test", "-x", "/usr/bin/tulipd", check=False).returncode == 0
    # postinst enabled and started the socket units; the first connection starts the service.
    # (The other socket units are pulled in by tulipd.socket's Wants=: static, and started.)
    state = machine.show("tulipd.socket", "ActiveState", "UnitFileState")
    assert state == {"ActiveState": "active", "UnitFileState": "enabled"}, state
    assert machine.show("tulipd-echo-unix.socket", "ActiveState")["ActiveState"] == "active"
    assert machine.show("tulipd.service", "ActiveState")["ActiveState"] == "inactive"
    with connect_tcp(("127.0.0.1", PORTS["echo"])) as conn:
        echo_roundtrip(conn, b"hello from the package\n")
        machine.wait_for("tulipd.service", ActiveState="active", SubState="running")
        status = machine.run("tulipd", "status")
        lines = status.stdout.splitlines()
        assert lines[0].startswith("tulipd pid ") and "config generation 1" in lines[0], status.stdout
        rows = {line.split()[0]: line.split() for line in lines[3:]}
        assert set(rows) == {l["name"] for l in PACKAGED_CONFIG["listeners"]}, status.stdout
        assert rows["echo"][4:6] == ["serving", "1"], status.stdout
        as_json = json.loads(machine.run("tulipd", "status", "--json").stdout)
        assert as_json["pid"] == int(machine.show("tulipd.service", "MainPID")["MainPID"])
    machine.run("dpkg", "-r", "tulipd", timeout=60)
    assert machine.run("test", "-e", "/usr/bin/tulipd", check=False).returncode != 0
    assert machine.show("tulipd.service", "ActiveState")["ActiveState"] == "inactive"
    assert machine.show("tulipd.socket", "ActiveState")["ActiveState"] == "inactive"
    deadline = time.monotonic() + 5
    while port_in_use(PORTS["echo"]):
        assert time.monotonic() < deadline, "port 7007 still served after dpkg -r"
        time.sleep(0.1)
    assert machine.run("test", "-e", "/etc/tulipd/tulipd.json", check=False).returncode == 0, "a conffile stays until purge"
    machine.run("dpkg", "--purge", "tulipd", timeout=60)
    assert machine.run("test", "-e", "/etc/tulipd/tulipd.json", check=False).returncode != 0
    listed = machine.run("dpkg-query", "-W", "-f", "${Status}", "tulipd", check=False)
    assert "installed" not in listed.stdout.replace("not-installed", ""), listed.stdout
