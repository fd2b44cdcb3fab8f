"""Fixtures for the real-systemd suite: the shipped units of systemd/ installed into a booted
container (container.py) with a test config, run by the binaries of the build directory.

Binaries: env TULIPD (default <repo>/.build/debug/tulipd) and tulipd-test next to it. Their
directory is bound read-only at /opt/tulip inside; the directories of their RUNPATH (the Swift
toolchain's runtime) are bound read-only at the same paths, so the debug build runs as built.

Needs root and systemd-nspawn (Debian systemd-container): without them every test fails with
the reason, because CI runs as root and a skipped systemd suite would hide a regression.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
UNIT_DIR = REPO / "systemd"
SHIPPED_CONFIG = REPO / "config" / "tulipd.json"

# The black-box suite's helpers (ports, clients) and its SIGALRM deadline hooks, loaded under
# another module name: both directories call theirs conftest.py.
_spec = importlib.util.spec_from_file_location("blackbox_conftest", REPO / "tests" / "blackbox" / "conftest.py")
blackbox = importlib.util.module_from_spec(_spec)
sys.modules["blackbox_conftest"] = blackbox
_spec.loader.exec_module(blackbox)
from blackbox_conftest import free_port  # noqa: E402  (after the module is registered)
from blackbox_conftest import (  # noqa: E402,F401  (hooks: the per-test deadline and its marker)
    pytest_configure,
    pytest_runtest_call,
    pytest_runtest_setup,
    pytest_runtest_teardown,
)
from container import SystemdContainer, container_problem  # noqa: E402

TULIPD = Path(os.environ.get("TULIPD") or REPO / ".build" / "debug" / "tulipd").resolve()
TULIPD_TEST = TULIPD.parent / "tulipd-test"
INSIDE = Path("/opt/tulip")  # where the build directory appears inside the container
CONFIG_INSIDE = "/etc/tulipd/tulipd.json"


def socket_unit(listener: str, first: str) -> str:
    """The shipped socket unit that holds `listener`: tulipd.socket for the first one."""
    return "tulipd.socket" if listener == first else f"tulipd-{listener}.socket"


def runpath_dirs(binary: Path) -> list[str]:
    """The absolute RUNPATH/RPATH directories of `binary` ($ORIGIN ones are bound already)."""
    out = subprocess.run(["readelf", "-d", str(binary)], capture_output=True, text=True, check=True).stdout
    dirs = []
    for match in re.finditer(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out):
        dirs += [d for d in match.group(1).split(":") if d.startswith("/") and Path(d).is_dir()]
    return dirs


class ContainerSetup:
    """The test config (the shipped one with free ports) and the drop-ins that point the shipped
    units at it and at the build's binary."""

    def __init__(self):
        self.config = json.loads(SHIPPED_CONFIG.read_text())
        listeners = self.config["listeners"]
        self.first = listeners[0]["name"]
        self.ports: dict[str, int] = {}
        for listener in listeners:
            if "tcp" in listener:
                self.ports[listener["name"]] = listener["tcp"]["port"] = free_port()
        # The unix listener keeps its /tmp path: adopted by name, tulipd never looks at it (and
        # under PrivateTmp= it could not bind there anyway).
        self.unix = {l["name"]: l["unix"]["path"] for l in listeners if "unix" in l}

    def dropins(self) -> dict[str, dict[str, str]]:
        dropins = {
            "tulipd.service": {
                "10-test.conf": f"[Service]\nExecStart=\nExecStart={INSIDE}/tulipd run --config {CONFIG_INSIDE}\n"
            }
        }
        for name, port in self.ports.items():
            dropins[socket_unit(name, self.first)] = {
                "10-test.conf": f"[Socket]\nListenStream=\nListenStream=127.0.0.1:{port}\n"
            }
        return dropins

    def config_with(self, *extra_listeners: dict) -> dict:
        config = copy.deepcopy(self.config)
        config["listeners"] += list(extra_listeners)
        return config


@pytest.fixture(scope="module")
def setup() -> ContainerSetup:
    return ContainerSetup()


@pytest.fixture(scope="module")
def machine(setup):
    """A booted container with the shipped units, the test config and drop-ins installed."""
    problem = container_problem()
    if problem:
        pytest.fail(f"cannot run the real-systemd tests: {problem}", pytrace=False)
    for binary in (TULIPD, TULIPD_TEST):
        if not os.access(binary, os.X_OK):
            pytest.fail(f"{binary} is not built (swift build, or set TULIPD=)", pytrace=False)
    binds = {str(TULIPD.parent): str(INSIDE)}
    with SystemdContainer("tulip-systemd", binds=binds, ro_paths=runpath_dirs(TULIPD)) as container:
        container.install_units(UNIT_DIR, setup.dropins())
        yield container


@pytest.fixture
def units(machine, setup):
    """Every test starts from the test config in place, the sockets listening and
    tulipd.service stopped; a test may rewrite the config (a reload test) or add drop-ins, and
    removes its drop-ins itself."""
    machine.systemctl("stop", "tulipd.service")
    machine.systemctl("reset-failed", check=False)
    machine.write_file(CONFIG_INSIDE, json.dumps(setup.config, indent=2) + "\n")
    machine.systemctl("start", "tulipd.socket")
    yield machine
