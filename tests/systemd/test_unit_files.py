"""The shipped unit files, checked without booting anything: `systemd-analyze verify` prints
nothing, `systemd-analyze security --offline=true` scores the services 2.0 or lower, and the
socket units match the listeners of config/tulipd.json."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SHIPPED_CONFIG, UNIT_DIR

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
SECURITY_THRESHOLD = 2.0
UNITS = sorted(p.name for p in UNIT_DIR.iterdir() if p.suffix in (".service", ".socket"))
SERVICES = [u for u in UNITS if u.endswith(".service")]

pytestmark = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def read_unit(name: str) -> dict[tuple[str, str], list[str]]:
    """(section, key) -> every value of a key, in order, space-separated lists split (systemd's
    repeated keys add to a list, which configparser cannot express)."""
    unit: dict[tuple[str, str], list[str]] = {}
    section = ""
    for line in (UNIT_DIR / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        unit.setdefault((section, key), []).extend(value.split())
    return unit


def values(unit: dict[tuple[str, str], list[str]], section: str, key: str) -> list[str]:
    return unit.get((section, key), [])


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory) -> Path:
    """A root for `systemd-analyze verify --root=`: the host's system units (verify loads
    sysinit.target and the rest from the root), the shipped units in etc/systemd/system, and
    every command their Exec*= lines name. verify only checks that a command is an executable
    file, so /usr/bin/tulipd is a stub there: the shipped path need not exist on this host."""
    root = tmp_path_factory.mktemp("verify-root")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    shutil.copytree(UNIT_DIR, root / "etc/systemd/system")
    for unit in UNITS:
        for line in (UNIT_DIR / unit).read_text().splitlines():
            match = re.match(r"^Exec[A-Za-z]*=[-@:+!]*(/\S+)", line)
            if not match:
                continue
            command = root / match.group(1).lstrip("/")
            command.parent.mkdir(parents=True, exist_ok=True)
            if Path(match.group(1)).is_file():
                shutil.copy(match.group(1), command)
            else:
                command.write_text("#!/bin/sh\nexit 0\n")
                command.chmod(0o755)
    return root


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_prints_nothing(unit, verify_root):
    """verify exits 0 even on unknown keys: any output at all is a failure."""
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={verify_root}", unit], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (
        f"systemd-analyze verify {unit}: exit {r.returncode}\n{r.stdout}{r.stderr}"
    )


@pytest.mark.parametrize("unit", SERVICES)
def test_security_exposure_is_at_most_2(unit):
    r = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(UNIT_DIR / unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert match, f"no exposure level in the output of systemd-analyze security\n{r.stdout}{r.stderr}"
    exposure = float(match.group(1))
    problems = [line for line in r.stdout.splitlines() if line.startswith("✗")]
    assert exposure <= SECURITY_THRESHOLD, f"{unit}: exposure {exposure}\n" + "\n".join(problems)


def test_one_socket_unit_per_listener_named_after_it():
    """tulipd.socket holds the first listener, tulipd-<name>.socket each other one, with
    FileDescriptorName=<name> and Service=tulipd.service; tulipd.socket pulls in the others and
    the service lists them all in Sockets=."""
    listeners = json.loads(SHIPPED_CONFIG.read_text())["listeners"]
    held = [l["name"] for l in listeners if "tcp" in l or "unix" in l]
    expected = {("tulipd.socket" if name == listeners[0]["name"] else f"tulipd-{name}.socket"): name for name in held}
    sockets = {u for u in UNITS if u.endswith(".socket")}
    assert sockets == set(expected), f"socket units {sorted(sockets)} for listeners {held}"
    for unit, name in expected.items():
        parsed = read_unit(unit)
        assert values(parsed, "Socket", "FileDescriptorName") == [name], unit
        assert values(parsed, "Socket", "Service") == ["tulipd.service"], unit
        assert len(values(parsed, "Socket", "ListenStream")) == 1, f"{unit}: one address per listener"
    others = sorted(set(expected) - {"tulipd.socket"})
    assert sorted(values(read_unit("tulipd.socket"), "Unit", "Wants")) == others
    assert sorted(values(read_unit("tulipd.service"), "Service", "Sockets")) == sorted(expected)


def test_service_settings_the_daemon_relies_on():
    for unit in SERVICES:
        service = read_unit(unit)
        assert values(service, "Service", "Type") == ["notify"], unit
        assert values(service, "Service", "ExecReload") == ["/bin/kill", "-HUP", "$MAINPID"], unit
        assert values(service, "Service", "DynamicUser") == ["yes"], unit
        grace = json.loads(SHIPPED_CONFIG.read_text())["shutdown"]["grace_seconds"]
        stop = values(service, "Service", "TimeoutStopSec")
        assert len(stop) == 1 and int(stop[0].removesuffix("s")) > grace + 5, f"{unit}: TimeoutStopSec={stop}"
