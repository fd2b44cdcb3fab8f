"""Connection limits (`limits`): max_connections pauses accepting, per-source caps refuse at
once, the idle timeout closes idle connections only."""

from __future__ import annotations

import asyncio
import re
import resource
import select
import socket
import time

import pytest

from conftest import (
    EX_CONFIG,
    check_config,
    connect_tcp,
    describe_result,
    connect_unix,
    echo_roundtrip,
    expect_eof,
    make_config,
    tcp_listener,
    unix_listener,
)

BURST = 2000
CLIENT_CONCURRENCY = 200
MAX_CONNECTIONS = 50


def _raise_nofile(wanted: int) -> None:
    """Lets this test process hold `wanted` sockets at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def _wait_probes_closed(daemon) -> None:
    """Waits until the start-up readiness probe's connection is gone, so that it does not take a
    slot from the test's connections."""
    daemon.wait_for_stderr(r"connection closed bytes_in=0")


def _expect_closed_at_once(s: socket.socket) -> None:
    """The daemon closed `s` right after accepting it: whatever we send is never echoed."""
    try:
        s.sendall(b"one too many\n")
    except (BrokenPipeError, ConnectionResetError):
        return  # closed before the bytes even left
    expect_eof(s, timeout=5, allow_reset=True)


def _no_reply_within(s: socket.socket, seconds: float) -> bool:
    readable, _, _ = select.select([s], [], [], seconds)
    return not readable


def _max_concurrency(log: str) -> tuple[int, int]:
    """The most connections open at once according to the daemon's own open/close entries, which
    it writes in event order on its one loop thread; and how many were opened."""
    open_now = peak = opened = 0
    for line in log.splitlines():
        if "connection opened" in line:
            open_now += 1
            opened += 1
            peak = max(peak, open_now)
        elif "connection closed" in line:
            open_now -= 1
    return peak, opened


def test_the_connection_after_max_connections_waits_until_a_slot_frees(daemon):
    listener = tcp_listener("echo", "echo", backlog=1024)
    listener["limits"] = {"max_connections": MAX_CONNECTIONS}
    daemon.start(make_config(listener))
    _wait_probes_closed(daemon)
    held = [daemon.connect("echo") for _ in range(MAX_CONNECTIONS)]
    waiting: list[socket.socket] = []
    try:
        for i, s in enumerate(held):
            echo_roundtrip(s, b"held %d\n" % i)
        daemon.wait_for_stderr(r"notice .*listener paused at its connection limit")
        # The kernel completes these handshakes, but the daemon does not accept them.
        waiting = [daemon.connect("echo") for _ in range(5)]
        for i, s in enumerate(waiting):
            s.sendall(b"waiting %d\n" % i)
        assert all(_no_reply_within(s, 0.1) for s in waiting[:-1])
        assert _no_reply_within(waiting[-1], 0.5), "a connection past max_connections was served"
        # Ten slots free, five are taken by the waiting connections: the listener stays below
        # its limit, which the log says within a second.
        for s in held[:10]:
            s.close()
        for i, s in enumerate(waiting):
            s.settimeout(10)
            assert s.recv(64) == b"waiting %d\n" % i
        daemon.wait_for_stderr(r"notice .*listener resumed accepting")
        daemon.assert_alive()
    finally:
        for s in held + waiting:
            s.close()


@pytest.mark.deadline(120)
def test_a_burst_of_2000_is_served_at_most_50_at_a_time(daemon):
    _raise_nofile(CLIENT_CONCURRENCY + 100)
    listener = tcp_listener("echo", "echo", backlog=1024)
    listener["limits"] = {"max_connections": MAX_CONNECTIONS}
    daemon.start(make_config(listener, level="debug"))
    host, port = daemon.addr("echo")

    async def one(i: int, gate: asyncio.Semaphore) -> None:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                line = b"connection %d\n" % i
                writer.write(line)
                await writer.drain()
                got = await asyncio.wait_for(reader.readexactly(len(line)), 60)
                assert got == line, f"connection {i} got {got!r}"
            finally:
                writer.close()
                await writer.wait_closed()

    async def burst() -> None:
        gate = asyncio.Semaphore(CLIENT_CONCURRENCY)
        await asyncio.wait_for(asyncio.gather(*(one(i, gate) for i in range(BURST))), 100)

    asyncio.run(burst())
    daemon.assert_alive("after the burst")
    # Every close is logged once the protocol was told; wait for the last ones.
    deadline = time.monotonic() + 10
    while True:
        peak, opened = _max_concurrency(daemon.stderr_text)
        closed = daemon.stderr_text.count("connection closed")
        if closed >= opened or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert opened >= BURST, f"only {opened} connections were served"
    assert closed == opened, f"{opened - closed} connections never closed"
    assert peak <= MAX_CONNECTIONS, f"{peak} connections were served at once; the limit is {MAX_CONNECTIONS}"
    assert "refused" not in daemon.stderr_text


def test_per_source_cap_refuses_the_next_connection_from_that_address_only(daemon):
    listener = tcp_listener("echo", "echo")
    listener["limits"] = {"max_connections_per_source": 3}
    daemon.start(make_config(listener))
    _wait_probes_closed(daemon)
    host, port = daemon.addr("echo")
    held = [connect_tcp((host, port)) for _ in range(3)]
    try:
        for i, s in enumerate(held):
            echo_roundtrip(s, b"ok %d\n" % i)
        over = connect_tcp((host, port))
        with over:
            _expect_closed_at_once(over)
        daemon.wait_for_stderr(r"connection refused .*reason=per_source")
        # Another address on loopback is another source.
        other = socket.create_connection((host, port), timeout=5, source_address=("127.0.0.2", 0))
        with other:
            echo_roundtrip(other, b"from 127.0.0.2\n")
        # A freed slot lets the capped address in again.
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:
            again = connect_tcp((host, port))
            with again:
                again.sendall(b"again\n")
                again.settimeout(5)
                try:
                    if again.recv(64) == b"again\n":
                        break
                except ConnectionResetError:
                    pass
            assert time.monotonic() < deadline, "the freed per-source slot was never reused"
            time.sleep(0.05)
        daemon.assert_alive()
    finally:
        for s in held:
            s.close()


def test_per_source_cap_on_a_unix_listener_counts_the_peer_uid(daemon, short_tmp):
    listener = unix_listener("echo", "echo", short_tmp / "echo.sock")
    listener["limits"] = {"max_connections_per_source": 2}
    config = make_config(listener)
    config["limits"] = {"max_connections_per_source": 100}  # the listener's key wins
    daemon.start(config)
    _wait_probes_closed(daemon)
    path = daemon.unix_path("echo")
    held = [connect_unix(path) for _ in range(2)]
    try:
        for i, s in enumerate(held):
            echo_roundtrip(s, b"unix %d\n" % i)
        over = connect_unix(path)
        with over:
            _expect_closed_at_once(over)
        daemon.wait_for_stderr(r"connection refused .*reason=per_source")
    finally:
        for s in held:
            s.close()


def test_idle_timeout_closes_an_idle_connection_but_not_an_active_one(daemon):
    listener = tcp_listener("echo", "echo")
    listener["limits"] = {"idle_timeout_seconds": 1}
    daemon.start(make_config(listener))
    idle = daemon.connect("echo")
    active = daemon.connect("echo")
    try:
        echo_roundtrip(idle, b"then silence\n")
        assert _no_reply_within(idle, 0.5), "closed long before the idle timeout"
        # Traffic every 0.25 s for 2.5 timeouts keeps `active` open.
        for i in range(10):
            echo_roundtrip(active, b"tick %d\n" % i)
            time.sleep(0.25)
        expect_eof(idle, timeout=2)
        echo_roundtrip(active, b"still here\n")
    finally:
        idle.close()
        active.close()


def test_idle_timeout_accepts_fractions_from_the_top_level_default(daemon):
    config = make_config(tcp_listener("echo", "echo"))
    config["limits"] = {"idle_timeout_seconds": 0.5}
    daemon.start(config)
    s = daemon.connect("echo")
    with s:
        started = time.monotonic()
        expect_eof(s, timeout=5)
        assert time.monotonic() - started >= 0.4
    log = daemon.stderr_text
    assert re.search(r"connection closed .*bytes_in=0", log), log[-2000:]


@pytest.mark.parametrize(
    ("where", "limits", "key_path"),
    [
        ("top", {"max_connections": 0}, "limits.max_connections"),
        ("listener", {"idle_timeout_seconds": -1}, "listeners[0].limits.idle_timeout_seconds"),
        ("listener", {"max_connections_per_source": "5"}, "listeners[0].limits.max_connections_per_source"),
        ("udp", {"max_connections": 5}, "listeners[1].limits"),
    ],
)
def test_bad_limits_are_config_errors_naming_the_key_path(where, limits, key_path, tmp_path):
    config = make_config(
        tcp_listener("echo", "echo"),
        {"name": "echo-udp", "protocol": "echo", "udp": {"host": "127.0.0.1", "port": 0}},
    )
    if where == "top":
        config["limits"] = limits
    else:
        config["listeners"][0 if where == "listener" else 1]["limits"] = limits
    r = check_config(config, tmp_path)
    assert r.returncode == EX_CONFIG, describe_result(r)
    assert key_path in r.stderr, describe_result(r)
