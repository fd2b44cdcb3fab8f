"""SIGHUP reload (ARCHITECTURE §5, lifecycle step 5): listeners added, removed, changed and kept
by name; a bad config keeps the running generation; RELOADING=1/READY=1 on the notify socket;
config_generation in the logs."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import time

import pytest

from conftest import (
    EX_OK,
    connect_tcp,
    connect_unix,
    echo_roundtrip,
    free_port,
    make_config,
    socket_mode,
    tail,
    tcp_listener,
    unix_listener,
    wait_refused,
    write_config,
)
from test_pipes import pipe_listener, read_exactly, write_once
from test_systemd import notify_socket  # noqa: F401  (fixture)


def reload(daemon, config, generation: int | None = None) -> None:
    """Rewrite the config file, send SIGHUP and wait for the reload's log line."""
    if isinstance(config, dict):
        daemon.config = config
    write_config(daemon.config_path, config)
    before = daemon.stderr_text.count("configuration reloaded") + daemon.stderr_text.count("reload failed")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_stderr(
        r"(?s)" + r"(configuration reloaded|reload failed).*?" * (before + 1),
        timeout=10,
    )
    if generation is not None:
        daemon.wait_for_stderr(rf"configuration reloaded.*config_generation={generation}\b")


def test_added_removed_unchanged_and_changed_listeners(daemon):
    keep = tcp_listener("keep", "echo")
    gone = tcp_listener("gone", "echo")
    swap = tcp_listener("swap", "echo")
    daemon.start(make_config(keep, gone, swap))
    kept = daemon.connect("keep")
    draining = daemon.connect("gone")
    old_protocol = daemon.connect("swap")
    try:
        for s in (kept, draining, old_protocol):
            echo_roundtrip(s, b"generation one\n")
        added = tcp_listener("added", "echo")
        swapped = dict(swap, protocol="discard")
        reload(daemon, make_config(keep, swapped, added), generation=2)
        line = re.search(r".*configuration reloaded.*", daemon.stderr_text).group(0)
        for expected in ("added=added", "removed=gone", "changed=swap", "unchanged=keep"):
            assert expected in line, line
        # Added: serves.
        with connect_tcp(daemon.addr("added")) as s:
            echo_roundtrip(s, b"new listener\n")
        # Removed: refuses new connections; its open connection still echoes until it ends.
        assert wait_refused(("127.0.0.1", gone["tcp"]["port"]), within=3) < 3
        echo_roundtrip(draining, b"still echoed while draining\n")
        draining.close()
        daemon.wait_for_stderr(r"listener drained.*listener=gone")
        # Changed (echo -> discard on the same port): new connections get the new protocol,
        # the old connection keeps the old one.
        with connect_tcp(daemon.addr("swap")) as s:
            s.sendall(b"discarded\n")
            s.settimeout(0.5)
            try:
                assert s.recv(100) == b"", "discard answered"
            except socket.timeout:
                pass
        echo_roundtrip(old_protocol, b"old protocol still echoes\n")
        # Unchanged: the connection stays open across a second reload.
        echo_roundtrip(kept, b"after one reload\n")
        reload(daemon, make_config(keep, swapped, added), generation=3)
        echo_roundtrip(kept, b"after two reloads\n")
    finally:
        for s in (kept, draining, old_protocol):
            s.close()
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)


def test_changed_listener_on_the_same_port_never_refuses(daemon):
    swap = tcp_listener("swap", "echo")
    daemon.start(make_config(swap))
    addr = daemon.addr("swap")
    config_path = daemon.config_path
    refused = 0
    for index in range(6):
        protocol = "discard" if index % 2 == 0 else "echo"
        write_config(config_path, make_config(dict(swap, protocol=protocol)))
        daemon.signal(signal.SIGHUP)
        for _ in range(40):  # connect around the replacement
            try:
                connect_tcp(addr, timeout=2).close()
            except ConnectionRefusedError:
                refused += 1
        daemon.wait_for_stderr(r"(?s)" + r"configuration reloaded.*?" * (index + 1), timeout=10)
    assert refused == 0, f"{refused} connection attempts refused during reloads"
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)


def test_bad_config_keeps_the_generation_and_names_line_and_column(daemon):
    first = tcp_listener("first", "echo")
    daemon.start(make_config(first))
    with daemon.connect("first") as kept:
        echo_roundtrip(kept, b"before\n")
        second = tcp_listener("second", "echo")
        reload(daemon, make_config(first, second), generation=2)
        # A syntax error: line 3, column 5 of the new file.
        bad = '{\n  "listeners": [\n    ]]\n}\n'
        reload(daemon, bad)
        failed = re.search(r".*reload failed.*", daemon.stderr_text).group(0)
        assert "keeping configuration generation 2" in failed, failed
        assert f"{daemon.config_path}:3:6: syntax error" in failed, failed
        assert "config_generation=2" in failed, failed
        echo_roundtrip(kept, b"still serving after a bad reload\n")
        with connect_tcp(daemon_addr_of(second)) as s:
            echo_roundtrip(s, b"second still serves\n")
        # A schema error (unknown plugin) names the key path; still generation 2.
        reload(daemon, make_config(first, tcp_listener("third", "no-such-plugin")))
        assert "listeners[1].protocol" in daemon.stderr_text, tail(daemon.stderr_text)
        # A bind failure of an added listener: nothing of the new config is applied.
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            third = tcp_listener("third", "echo", port)
            reload(daemon, make_config(first, third))
            assert re.search(r"reload failed.*third", daemon.stderr_text), tail(daemon.stderr_text)
        with connect_tcp(daemon_addr_of(second)) as s:
            echo_roundtrip(s, b"second survived the failed reload\n")
        # The next good reload is generation 3: failures consume no number.
        reload(daemon, make_config(first), generation=3)
        assert wait_refused(daemon_addr_of(second), within=3) < 3
        echo_roundtrip(kept, b"after generation 3\n")
    generations = re.findall(r"configuration reloaded.*?config_generation=(\d+)", daemon.stderr_text)
    assert generations == ["2", "3"], generations
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)


def daemon_addr_of(listener: dict) -> tuple[str, int]:
    return (listener["tcp"]["host"], listener["tcp"]["port"])


def test_every_entry_carries_config_generation(daemon):
    first = tcp_listener("first", "echo")
    daemon.start(make_config(first))
    with daemon.connect("first") as s:
        echo_roundtrip(s, b"one\n")
    added = tcp_listener("added", "echo")
    reload(daemon, make_config(first, added), generation=2)
    with connect_tcp(daemon.addr("added")) as s:
        echo_roundtrip(s, b"two\n")
    daemon.wait_for_stderr(r"connection closed.*listener=added")
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)
    lines = [l for l in daemon.stderr_text.splitlines() if l.strip()]
    missing = [l for l in lines if "config_generation=" not in l]
    assert not missing, "entries without config_generation:\n" + "\n".join(missing)
    closed_first = [l for l in lines if "connection closed" in l and "listener=first" in l]
    closed_added = [l for l in lines if "connection closed" in l and "listener=added" in l]
    assert "config_generation=1" in closed_first[0], closed_first
    assert "config_generation=2" in closed_added[0], closed_added


def test_reload_is_notified_reloading_then_ready(daemon, notify_socket):  # noqa: F811
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    first = tcp_listener("first", "echo")
    daemon.start(make_config(first))
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    for config in (make_config(first, tcp_listener("added", "echo")), "{ not json"):
        write_config(daemon.config_path, config)
        before = time.monotonic()
        daemon.signal(signal.SIGHUP)
        reloading = notify_socket.wait_for(lambda m: "RELOADING=1" in m.splitlines())
        fields = dict(line.split("=", 1) for line in reloading.splitlines())
        assert set(fields) == {"RELOADING", "MONOTONIC_USEC"}, reloading
        usec = int(fields["MONOTONIC_USEC"])
        assert before * 1e6 - 1e6 <= usec <= time.monotonic() * 1e6 + 1e6, (before, usec)
        ready = notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
        assert any(l.startswith("STATUS=") for l in ready.splitlines()), ready
    assert "STATUS=2 listeners, 0 open connections" in ready.splitlines(), ready
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)


def test_sighup_during_drain_is_ignored(daemon):
    daemon.start(make_config(tcp_listener("first", "echo"), grace=5))
    with daemon.connect("first") as s:
        echo_roundtrip(s, b"hold the drain open\n")
        daemon.signal(signal.SIGTERM)
        daemon.wait_for_stderr(r"draining")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_stderr(r"SIGHUP received while draining; ignored")
        echo_roundtrip(s, b"still echoed during the drain\n")
    daemon.wait(timeout=15, returncode=EX_OK)


def test_changed_unix_and_udp_listeners_take_over_their_sockets(daemon, short_tmp):
    path = short_tmp / "echo.sock"
    unix = unix_listener("echo-unix", "echo", path)
    udp_port = free_port()
    udp = {"name": "echo-udp", "protocol": "echo", "udp": {"host": "127.0.0.1", "port": udp_port}}
    gone = unix_listener("gone-unix", "echo", short_tmp / "gone.sock")
    daemon.start(make_config(unix, udp, gone))
    with connect_unix(path) as old:
        echo_roundtrip(old, b"generation one\n")
        changed_unix = unix_listener("echo-unix", "discard", path, mode="0600")
        reload(daemon, make_config(changed_unix, dict(udp, protocol="discard")), generation=2)
        assert socket_mode(path) & 0o777 == 0o600, oct(socket_mode(path))
        with connect_unix(path) as fresh:
            fresh.sendall(b"discarded\n")
            fresh.settimeout(0.5)
            with pytest.raises(socket.timeout):
                fresh.recv(100)
        echo_roundtrip(old, b"the old connection keeps the old protocol\n")
    daemon.wait_for_stderr(r"listener drained.*listener=echo-unix")
    # The replaced listener closed without unlinking the socket file its successor serves.
    assert path.exists()
    with connect_unix(path) as s:
        s.sendall(b"still served\n")
    # A removed unix listener removes its socket file.
    assert not (short_tmp / "gone.sock").exists()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(b"discarded datagram\n", ("127.0.0.1", udp_port))
        with pytest.raises(socket.timeout):
            s.recvfrom(100)
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)


def test_changed_pipe_listener_is_replaced(daemon, short_tmp):
    read, write = short_tmp / "in.fifo", short_tmp / "out.fifo"
    daemon.start(make_config(pipe_listener("fifo", "echo", read, write)))
    daemon.wait_for_stderr(r"tulipd ready")
    out = os.open(write, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_once(read, b"echoed by generation one\n")
        assert read_exactly(out, 25) == b"echoed by generation one\n"
        reload(daemon, make_config(pipe_listener("fifo", "discard", read, write)), generation=2)
        daemon.wait_for_stderr(r"listener drained.*listener=fifo")
        write_once(read, b"discarded\n")
        ready, _, _ = select.select([out], [], [], 0.5)
        assert not ready or os.read(out, 100) == b"", "the replaced pipe listener still echoes"
        reload(daemon, make_config(pipe_listener("fifo", "echo", read, write)), generation=3)
        daemon.wait_for_stderr(r"(?s)listener drained.*listener drained.*listener=fifo")
        write_once(read, b"echoed by generation three\n")
        assert read_exactly(out, 27) == b"echoed by generation three\n"
    finally:
        os.close(out)
    daemon.stop(signal.SIGTERM, timeout=15, returncode=EX_OK)
