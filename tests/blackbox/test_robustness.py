"""Bad input and abusive clients never take the daemon down or leak resources."""

from __future__ import annotations

import os
import socket
import time

import pytest

from conftest import (
    BUILTIN_PLUGINS,
    CHARGEN_LINE_BYTES,
    KiB,
    MiB,
    blast,
    chargen_mismatch,
    connect_tcp,
    echo_roundtrip,
    make_config,
    recv_exactly,
    recv_until_eof,
    set_linger_reset,
    tcp_listener,
)

CONTROL = "control-echo"


@pytest.fixture
def robust_daemon(daemon):
    daemon.start(
        make_config(
            *(tcp_listener(p, p) for p in BUILTIN_PLUGINS),
            tcp_listener(CONTROL, "echo"),
        )
    )
    return daemon


def assert_plugin_works(d, plugin: str) -> None:
    """A quick functional check of listener `plugin` (named like its plugin)."""
    with d.connect(plugin, timeout=5) as s:
        if plugin == "echo":
            echo_roundtrip(s, b"fresh round-trip\n")
        elif plugin == "discard":
            s.sendall(b"x" * KiB)
            s.settimeout(0.2)
            try:
                data = s.recv(100)
            except socket.timeout:
                data = b""
            assert not data, f"discard answered {data!r}"
        elif plugin == "chargen":
            data = recv_exactly(s, 10 * CHARGEN_LINE_BYTES, timeout=5)
            assert chargen_mismatch(data) is None, f"chargen stream broken: {data[:80]!r}"
        elif plugin == "daytime":
            data = recv_until_eof(s, timeout=5, limit=4096)
            assert data.endswith(b"\r\n") and len(data) > 10, f"daytime answered {data!r}"
        elif plugin == "time":
            data = recv_until_eof(s, timeout=5, limit=4096)
            assert len(data) == 4, f"time answered {data!r}"
        else:
            raise AssertionError(plugin)


def assert_daemon_healthy(d, abused: str) -> None:
    d.assert_alive(f"(after abusing the {abused} listener)")
    with d.connect(CONTROL, timeout=5) as s:
        echo_roundtrip(s, b"control listener still serves\n" + os.urandom(4 * KiB))
    assert_plugin_works(d, abused)
    d.assert_alive(f"(after abusing the {abused} listener)")


PLUGINS = pytest.mark.parametrize("plugin", BUILTIN_PLUGINS)


@PLUGINS
def test_random_garbage_leaves_the_daemon_serving(robust_daemon, plugin):
    d = robust_daemon
    for reset in (False, True):
        sent = blast(lambda: d.connect(plugin), os.urandom(64 * KiB), reset=reset)
        if plugin in ("echo", "discard"):
            assert sent == 64 * KiB, f"{plugin} stopped reading after {sent} bytes of garbage"
    assert_daemon_healthy(d, plugin)


@PLUGINS
def test_one_mebibyte_line_without_newline_leaves_the_daemon_serving(robust_daemon, plugin):
    d = robust_daemon
    sent = blast(lambda: d.connect(plugin), b"A" * MiB, time_limit=20)
    if plugin in ("echo", "discard"):
        assert sent == MiB, f"{plugin} stopped reading after {sent} bytes of a 1 MiB line"
    assert_daemon_healthy(d, plugin)


@PLUGINS
def test_many_tiny_connections_reset_by_the_client_leave_the_daemon_serving(robust_daemon, plugin):
    d = robust_daemon
    for i in range(100):
        s = d.connect(plugin, timeout=5)
        try:
            if i % 2:
                s.send(b"?")
            set_linger_reset(s)
        finally:
            s.close()  # RST
    assert_daemon_healthy(d, plugin)


@PLUGINS
def test_200_connections_opened_and_closed_immediately_leave_the_daemon_serving(robust_daemon, plugin):
    d = robust_daemon
    for _ in range(200):
        d.connect(plugin, timeout=5).close()
    assert_daemon_healthy(d, plugin)


@pytest.mark.deadline(90)
def test_connection_storm_does_not_leak_file_descriptors(robust_daemon):
    d = robust_daemon
    time.sleep(0.3)  # let the readiness probes' connections be reaped
    baseline = min(d.fd_count() for _ in range(3))
    for plugin in BUILTIN_PLUGINS:
        for i in range(100):
            s = d.connect(plugin, timeout=5)
            if i % 3 == 0:
                set_linger_reset(s)
            s.close()
        blast(lambda: d.connect(plugin), os.urandom(16 * KiB))
    deadline = time.monotonic() + 10
    count = d.fd_count()
    while count > baseline + 4 and time.monotonic() < deadline:
        time.sleep(0.1)
        count = d.fd_count()
    assert count <= baseline + 4, (
        f"daemon holds {count} file descriptors 10 s after ~{len(BUILTIN_PLUGINS) * 101} closed connections "
        f"(baseline {baseline}): closed connections are leaking"
    )
    for plugin in BUILTIN_PLUGINS:
        assert_daemon_healthy(d, plugin)


# --------------------------------------------------------------------------
# chargen and a client that stops reading: back-pressure, not buffering


RSS_GROWTH_LIMIT_KIB = 32 * 1024  # 32 MiB


@pytest.mark.deadline(90)
def test_chargen_slow_reader_is_backpressured_and_stream_stays_exact(daemon):
    daemon.start(make_config(tcp_listener("chargen", "chargen")))
    time.sleep(0.2)
    rss_before = daemon.rss_kib()
    s = connect_tcp(daemon.addr("chargen"), timeout=10, rcvbuf=64 * KiB)
    try:
        data = bytearray(recv_exactly(s, 20 * CHARGEN_LINE_BYTES, timeout=10))
        time.sleep(3)  # stop reading
        rss_after = daemon.rss_kib()
        growth = rss_after - rss_before
        assert growth < RSS_GROWTH_LIMIT_KIB, (
            f"daemon RSS grew by {growth} KiB ({rss_before} -> {rss_after} KiB) while a chargen client did not "
            f"read for 3 s; the bound is {RSS_GROWTH_LIMIT_KIB} KiB (32 MiB): chargen must respect back-pressure "
            f"(pauseWriting) instead of buffering"
        )
        # Resume: read well past whatever the kernel buffered during the pause,
        # so the data generated after resumeWriting is checked too.
        paused_at = len(data)
        target = paused_at + 12 * MiB
        deadline = time.monotonic() + 40
        while len(data) < target:
            remaining = deadline - time.monotonic()
            assert remaining > 0, (
                f"chargen delivered only {len(data) - paused_at} bytes in 40 s after the reader resumed "
                f"(wanted {target - paused_at}): writing did not resume?"
            )
            s.settimeout(remaining)
            try:
                chunk = s.recv(256 * KiB)
            except socket.timeout:
                continue
            assert chunk, f"chargen closed the connection after {len(data)} bytes"
            data += chunk
    finally:
        s.close()
    whole_lines = len(data) // CHARGEN_LINE_BYTES
    assert whole_lines >= 1000
    problem = chargen_mismatch(bytes(data[: whole_lines * CHARGEN_LINE_BYTES]))
    assert problem is None, (
        f"chargen stream across the pause ({whole_lines} lines, paused after byte {paused_at}) is not exact "
        f"RFC 864:\n{problem}"
    )
    daemon.assert_alive()
