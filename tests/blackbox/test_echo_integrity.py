"""Echo byte-exactness under concurrency, and half-close semantics (RFC 862)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

from conftest import (
    KiB,
    MiB,
    async_echo_exchange,
    connect_tcp,
    connect_unix,
    first_mismatch,
    make_config,
    recv_until_eof,
    run_async,
    tcp_listener,
    unix_listener,
)


@pytest.fixture
def echo_daemon(daemon, short_tmp):
    daemon.start(
        make_config(
            tcp_listener("echo", "echo"),
            unix_listener("echo-unix", "echo", short_tmp / "echo.sock"),
        )
    )
    return daemon


def _run_concurrent(open_connection, count: int, size: int, timeout: float) -> list[str]:
    payloads = [os.urandom(size) for _ in range(count)]

    async def main():
        results = await asyncio.gather(
            *(async_echo_exchange(open_connection, p) for p in payloads), return_exceptions=True
        )
        return [
            f"connection {i}: {r!r}" if isinstance(r, BaseException) else f"connection {i}: {r}"
            for i, r in enumerate(results)
            if r is not None
        ]

    return run_async(main(), timeout)


@pytest.mark.deadline(120)
def test_echo_tcp_50_concurrent_connections_1mib_each_are_byte_exact(echo_daemon):
    host, port = echo_daemon.addr("echo")
    failures = _run_concurrent(lambda: asyncio.open_connection(host, port), count=50, size=MiB, timeout=90)
    assert not failures, f"{len(failures)} of 50 connections failed:\n" + "\n".join(failures[:10])
    echo_daemon.assert_alive()


@pytest.mark.deadline(90)
def test_echo_unix_10_concurrent_connections_256kib_each_are_byte_exact(echo_daemon):
    path = echo_daemon.unix_path("echo-unix")
    failures = _run_concurrent(lambda: asyncio.open_unix_connection(path), count=10, size=256 * KiB, timeout=60)
    assert not failures, f"{len(failures)} of 10 connections failed:\n" + "\n".join(failures[:10])
    echo_daemon.assert_alive()


# --------------------------------------------------------------------------
# Half-close: the client sends, shuts down its write side, and reads the
# complete echo followed by EOF.


def _connect(echo_daemon, transport: str) -> socket.socket:
    if transport == "tcp":
        return connect_tcp(echo_daemon.addr("echo"), timeout=10)
    return connect_unix(echo_daemon.unix_path("echo-unix"), timeout=10)


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_half_close_small_message_is_echoed_then_eof(echo_daemon, transport):
    with _connect(echo_daemon, transport) as s:
        s.sendall(b"half-close me\n")
        s.shutdown(socket.SHUT_WR)
        got = recv_until_eof(s, timeout=5)
    assert got == b"half-close me\n", f"expected the whole message before EOF, got {got!r}"


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_half_close_with_echo_still_in_flight_delivers_everything_then_eof(echo_daemon, transport):
    """The reader starts late, so when our FIN arrives the daemon still has
    echo data queued; it must flush all of it before closing."""
    payload = os.urandom(4 * MiB)
    result: dict = {}

    def reader(sock: socket.socket):
        time.sleep(0.5)
        try:
            result["data"] = recv_until_eof(sock, timeout=30, limit=len(payload) + MiB)
        except BaseException as e:  # reported below
            result["error"] = e

    with _connect(echo_daemon, transport) as s, s.dup() as r:
        # The reader gets its own socket object (same connection) so that the
        # two threads' timeouts do not interfere.
        t = threading.Thread(target=reader, args=(r,), daemon=True)
        t.start()
        s.settimeout(30)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        t.join(40)
        assert not t.is_alive(), "reader thread did not finish"
    if "error" in result:
        raise AssertionError(f"reading the echo failed: {result['error']}")
    got = result["data"]
    assert got == payload, "echo after half-close is not byte-exact: " + first_mismatch(payload, got)
    echo_daemon.assert_alive()


@pytest.mark.deadline(100)
@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_half_close_while_echo_is_backpressured_flushes_everything_then_eof(echo_daemon, transport):
    """Send without reading until every buffer on the way is full, half-close,
    wait, and only then read, slowly. When the daemon sees our FIN it still has
    echo data queued; it must flush all of it before closing (close, not
    abort)."""
    sent = bytearray()
    with _connect(echo_daemon, transport) as s:
        s.setblocking(False)
        cap = 64 * MiB
        deadline = time.monotonic() + 15
        stalled_since = None
        block = os.urandom(64 * KiB)
        while len(sent) < cap and time.monotonic() < deadline:
            try:
                n = s.send(block)
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 0.5:
                    break  # every buffer is full
                time.sleep(0.01)
                continue
            stalled_since = None
            sent += block[:n]
            block = os.urandom(64 * KiB)
        assert len(sent) > 0
        s.shutdown(socket.SHUT_WR)
        time.sleep(0.5)
        # Read slowly, so that the daemon's writes keep backing up while it
        # reads the rest of our data and the FIN.
        got = bytearray()
        s.settimeout(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(32 * KiB)
            except ConnectionResetError:
                raise AssertionError(
                    f"connection reset after {len(got)} of {len(sent)} echoed bytes (aborted instead of flushed?)"
                ) from None
            if not chunk:
                break
            got += chunk
            assert len(got) <= len(sent), f"received more than the {len(sent)} bytes we sent"
            time.sleep(0.001)
        else:
            raise AssertionError(f"no EOF within 60 s ({len(got)} of {len(sent)} bytes echoed)")
        got = bytes(got)
    assert got == bytes(sent), (
        f"after a half-close with {len(sent)} bytes in flight the echo is not complete: "
        + first_mismatch(bytes(sent), got)
    )
    echo_daemon.assert_alive()
