"""tulipd under the real systemd (PID 1 of a container): the shipped units of systemd/ with
DynamicUser= and the whole hardening on, a test config, the build's binaries.

One container for the module; each test starts from the sockets listening and the service
stopped (the `units` fixture)."""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time

import pytest
from blackbox_conftest import connect_tcp, connect_unix, echo_roundtrip, free_port, recv_exactly
from conftest import CONFIG_INSIDE, INSIDE, ContainerSetup

DYNAMIC_UIDS = range(61184, 65520)  # systemd's DynamicUser= range


def start_by_connection(units, setup: ContainerSetup) -> socket.socket:
    """Opens a connection to the first listener, which starts tulipd.service; returns it once
    the daemon has echoed a line on it."""
    conn = connect_tcp(("127.0.0.1", setup.ports[setup.first]))
    echo_roundtrip(conn, b"start\n")
    units.wait_for("tulipd.service", ActiveState="active", SubState="running")
    return conn


def test_first_connection_activates_the_service_and_every_socket_is_adopted(units, setup):
    sockets = ["tulipd.socket"] + [f"tulipd-{name}.socket" for name in [*setup.ports, *setup.unix] if name != setup.first]
    for unit in sockets:
        assert units.show(unit, "ActiveState")["ActiveState"] == "active", f"{unit} not started by tulipd.socket"
    assert units.show("tulipd.service", "ActiveState")["ActiveState"] == "inactive"

    with start_by_connection(units, setup):
        pass
    with connect_tcp(("127.0.0.1", setup.ports["daytime"])) as conn:
        assert recv_exactly(conn, 10).startswith(b"20"), "daytime served over the held socket"
    for name in setup.unix:
        with connect_unix(units.path("/run/tulipd/echo.sock")) as conn:
            echo_roundtrip(conn, f"over {name}\n".encode())
    adopted = units.journal("SYSLOG_IDENTIFIER=tulipd", "MESSAGE=listening on a socket passed by systemd")
    assert sorted(e.get("LISTENER") for e in adopted) == sorted(l["name"] for l in setup.config["listeners"])


def test_ready_status_text_and_hardening(units, setup):
    with start_by_connection(units, setup):
        deadline = time.monotonic() + 5
        while (status := units.show("tulipd.service", "StatusText")["StatusText"]) != (
            f"{len(setup.config['listeners'])} listeners, 1 open connection"
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == f"{len(setup.config['listeners'])} listeners, 1 open connection"
        pid = units.show("tulipd.service", "MainPID")["MainPID"]
        proc = dict(
            line.split(":", 1) for line in units.run("cat", f"/proc/{pid}/status").stdout.splitlines() if ":" in line
        )
    assert int(proc["Uid"].split()[0]) in DYNAMIC_UIDS, f"not a DynamicUser= uid: {proc['Uid']}"
    assert proc["NoNewPrivs"].strip() == "1" and proc["Seccomp"].strip() == "2"
    assert int(proc["CapEff"], 16) == 0 and int(proc["CapBnd"], 16) == 0


def test_journal_has_the_connection_fields(units, setup):
    conn = start_by_connection(units, setup)
    peer = "127.0.0.1:%d" % conn.getsockname()[1]
    conn.close()
    deadline = time.monotonic() + 5
    while not (entries := units.journal("SYSLOG_IDENTIFIER=tulipd", f"PEER={peer}")) and time.monotonic() < deadline:
        time.sleep(0.1)
    closed = [e for e in entries if e.get("MESSAGE") == "connection closed"]
    assert closed, f"no 'connection closed' entry for {peer}: {entries}"
    entry = closed[0]
    assert entry["LISTENER"] == setup.first and entry["PROTOCOL"] == "echo"
    assert entry["CONNECTION_ID"].isdigit() and entry["PRIORITY"] == "6"
    assert entry["CODE_FILE"].endswith(".swift") and entry["_SYSTEMD_UNIT"] == "tulipd.service"


def test_stop_drains_an_open_connection_and_exits_0(units, setup):
    conn = start_by_connection(units, setup)
    with conn:
        units.systemctl("stop", "--no-block", "tulipd.service")
        units.wait_for("tulipd.service", ActiveState="deactivating")
        echo_roundtrip(conn, b"still served while draining\n")
        assert units.show("tulipd.service", "StatusText")["StatusText"].startswith("draining")
    units.wait_for("tulipd.service", ActiveState="inactive")
    state = units.show("tulipd.service", "Result", "ExecMainStatus", "ExecMainCode")
    assert state == {"Result": "success", "ExecMainStatus": "0", "ExecMainCode": "1"}, state
    assert units.show("tulipd.socket", "ActiveState")["ActiveState"] == "active", "the socket outlives the service"


def test_restart_refuses_no_connection(units, setup):
    """A client connects every 5 ms for about 2 s while `systemctl restart` runs: systemd holds
    the listening socket, so every connection is accepted and echoed by one daemon or the next."""
    with start_by_connection(units, setup):
        pass
    old_pid = units.show("tulipd.service", "MainPID")["MainPID"]
    refused, attempts, echoed = connect_during_restart(units, setup.ports[setup.first])
    assert refused == 0, f"{refused} of {attempts} connections refused during the restart"
    assert echoed == attempts, f"{attempts - echoed} of {attempts} accepted connections never echoed"
    assert units.show("tulipd.service", "MainPID")["MainPID"] not in (old_pid, "0"), "no restart happened"


def connect_when_served(port: int, timeout: float = 10.0) -> socket.socket:
    """A connection to `port` once something there echoes a line (after a reload, say)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = connect_tcp(("127.0.0.1", port), timeout=2)
            echo_roundtrip(conn, b"hello\n")
            return conn
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_for_journal(units, *matches: str, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (entries := units.journal(*matches)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return entries


def test_reload_adds_a_listener_and_keeps_an_unchanged_listeners_connection(units, setup):
    """`systemctl reload` (ExecReload sends SIGHUP): the added listener serves, the open
    connection on the unchanged first listener goes on being echoed, the process stays, the
    journal shows generation 2 and StatusText counts the new listener."""
    conn = start_by_connection(units, setup)
    pid = units.show("tulipd.service", "MainPID")["MainPID"]
    port = free_port()
    extra = {"name": "extra", "protocol": "echo", "tcp": {"host": "127.0.0.1", "port": port}}
    units.write_file(CONFIG_INSIDE, json.dumps(setup.config_with(extra), indent=2) + "\n")
    with conn:
        units.systemctl("reload", "tulipd.service")
        with connect_when_served(port):
            pass
        echo_roundtrip(conn, b"still the same connection after the reload\n")
        reloaded = wait_for_journal(units, "SYSLOG_IDENTIFIER=tulipd", "MESSAGE=configuration reloaded")
        assert reloaded, "no 'configuration reloaded' entry"
        assert reloaded[-1]["CONFIG_GENERATION"] == "2" and reloaded[-1]["ADDED"] == "extra", reloaded[-1]
        assert units.show("tulipd.service", "MainPID")["MainPID"] == pid, "a reload must not restart"
        listeners = len(setup.config["listeners"]) + 1
        deadline = time.monotonic() + 5
        while (status := units.show("tulipd.service", "StatusText")["StatusText"]) != (
            f"{listeners} listeners, 1 open connection"
        ) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == f"{listeners} listeners, 1 open connection"
        state = units.show("tulipd.service", "ActiveState", "SubState")
        assert state == {"ActiveState": "active", "SubState": "running"}, state


def test_fd_store_keeps_a_daemon_bound_socket_across_restart(units, setup):
    """A listener no socket unit holds is bound by tulipd and handed to systemd's fd store
    (FDSTORE=1, FDNAME=extra); `systemctl restart` gives it back to the next process, which adopts
    it by name, so clients connecting every 5 ms during the restart are never refused."""
    port = free_port()
    extra = {"name": "extra", "protocol": "echo", "tcp": {"host": "127.0.0.1", "port": port}}
    units.write_file(CONFIG_INSIDE, json.dumps(setup.config_with(extra), indent=2) + "\n")
    with start_by_connection(units, setup):
        pass
    with connect_when_served(port):
        pass
    deadline = time.monotonic() + 5
    while units.show("tulipd.service", "NFileDescriptorStore")["NFileDescriptorStore"] != "1":
        assert time.monotonic() < deadline, units.show("tulipd.service", "NFileDescriptorStore")
        time.sleep(0.1)
    old_pid = units.show("tulipd.service", "MainPID")["MainPID"]
    refused, attempts, echoed = connect_during_restart(units, port)
    new_pid = units.show("tulipd.service", "MainPID")["MainPID"]
    assert new_pid not in (old_pid, "0"), "no restart happened"
    assert refused == 0, f"{refused} of {attempts} connections to the stored socket refused during the restart"
    assert echoed == attempts, f"{attempts - echoed} of {attempts} accepted connections never echoed"
    adopted = wait_for_journal(
        units, "SYSLOG_IDENTIFIER=tulipd", f"_PID={new_pid}", "LISTENER=extra",
        "MESSAGE=listening on a socket passed by systemd",
    )
    assert adopted, "the restarted daemon did not adopt the stored socket by name"


def connect_during_restart(units, port: int) -> tuple[int, int, int]:
    """A client connects to `port` every 5 ms for about 2 s while `systemctl restart` runs in
    another thread; each connection sends its number and waits for the echo. Returns (refused,
    attempts, echoed)."""
    restart = threading.Thread(target=units.systemctl, args=("restart", "tulipd.service"))
    selector = selectors.DefaultSelector()
    refused, attempts, echoed = 0, 0, 0
    start = time.monotonic()
    try:
        while attempts < 1000 and (time.monotonic() - start < 2.0 or restart.is_alive()):
            if attempts == 40:
                restart.start()
            attempts += 1
            try:
                conn = connect_tcp(("127.0.0.1", port), timeout=2)
            except ConnectionRefusedError:
                refused += 1
            else:
                conn.sendall(b"%d\n" % attempts)
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ, b"%d\n" % attempts)
            echoed += collect_echoes(selector, 0)
            time.sleep(0.005)
        deadline = time.monotonic() + 15
        while selector.get_map() and time.monotonic() < deadline:
            echoed += collect_echoes(selector, 0.1)
    finally:
        restart.join(timeout=60)
        for key in list(selector.get_map().values()):
            key.fileobj.close()
    return refused, attempts, echoed


def collect_echoes(selector: selectors.BaseSelector, timeout: float) -> int:
    """Reads what is ready; a connection whose whole line came back is closed. Returns how many
    completed."""
    done = 0
    for key, _ in selector.select(timeout):
        conn, expected = key.fileobj, key.data
        data = conn.recv(64)
        assert expected.startswith(data), f"echo {data!r} for {expected!r}"
        if data == expected:
            selector.unregister(conn)
            conn.close()
            done += 1
    return done


@pytest.mark.deadline(60)
def test_watchdog_kills_a_blocked_loop(units, setup):
    """With WatchdogSec=2, tulipd-test stays up while its loop pets the watchdog, then is killed
    (Result=watchdog) once the block-loop plugin blocks the loop."""
    port = free_port()
    block = {"name": "block", "protocol": "block-loop", "tcp": {"host": "127.0.0.1", "port": port}}
    units.write_file("/etc/tulipd/watchdog.json", json.dumps(setup.config_with(block)))
    dropin = (
        "[Service]\nExecStart=\n"
        f"ExecStart={INSIDE}/tulipd-test run --config /etc/tulipd/watchdog.json\n"
        # A long RestartSec= keeps the killed service in auto-restart, so Result= stays visible.
        "WatchdogSec=2\nRestartSec=1h\nLimitCORE=0\n"
    )
    units.install_units(dropins={"tulipd.service": {"20-watchdog.conf": dropin}})
    try:
        units.systemctl("start", "tulipd.service")
        with connect_tcp(("127.0.0.1", port)) as conn:
            echo_roundtrip(conn, b"ping\n")
            time.sleep(3)  # longer than WatchdogSec: the loop's WATCHDOG=1 keeps it alive
            state = units.show("tulipd.service", "ActiveState", "SubState", "Result")
            assert state == {"ActiveState": "active", "SubState": "running", "Result": "success"}, state
            conn.sendall(b"block\n")
            units.wait_for("tulipd.service", timeout=15, Result="watchdog", SubState="auto-restart")
    finally:
        units.systemctl("stop", "tulipd.service")
        units.remove_dropin("tulipd.service", "20-watchdog.conf")


def test_template_instances_share_a_port_with_reuse_port(units):
    """tulipd@a and tulipd@b, each with its own /etc/tulipd/INSTANCE.json, both bind one port
    with reuse_port; the kernel spreads connections over both."""
    port = free_port()
    listener = {"name": "echo", "protocol": "echo", "tcp": {"host": "127.0.0.1", "port": port, "reuse_port": True}}
    instances = ("a", "b")
    for name in instances:
        units.write_file(f"/etc/tulipd/{name}.json", json.dumps({"listeners": [listener]}))
    dropin = f"[Service]\nExecStart=\nExecStart={INSIDE}/tulipd run --config /etc/tulipd/%i.json\n"
    units.install_units(dropins={"tulipd@.service": {"10-test.conf": dropin}})
    try:
        units.systemctl("start", *(f"tulipd@{name}.service" for name in instances))
        peers = []
        for i in range(40):
            with connect_tcp(("127.0.0.1", port)) as conn:
                echo_roundtrip(conn, b"%d\n" % i)
                peers.append("127.0.0.1:%d" % conn.getsockname()[1])
        deadline = time.monotonic() + 5
        served: dict[str, int] = {}
        while time.monotonic() < deadline:
            # Only the instances' entries: earlier tests' clients to tulipd.service's own "echo"
            # listener may have had the same ephemeral ports.
            entries = [
                entry
                for name in instances
                for entry in units.journal(
                    "SYSLOG_IDENTIFIER=tulipd", "MESSAGE=connection closed", f"_SYSTEMD_UNIT=tulipd@{name}.service"
                )
            ]
            served = {}
            for entry in entries:
                if entry.get("PEER") in peers:
                    served[entry["_SYSTEMD_UNIT"]] = served.get(entry["_SYSTEMD_UNIT"], 0) + 1
            if sum(served.values()) == len(peers):
                break
            time.sleep(0.1)
        assert set(served) == {f"tulipd@{name}.service" for name in instances}, served
        assert sum(served.values()) == len(peers), served
    finally:
        units.systemctl("stop", *(f"tulipd@{name}.service" for name in instances))
