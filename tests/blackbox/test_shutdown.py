"""Graceful drain on SIGTERM/SIGINT, the grace period, and the abort on a second signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time

import pytest

from conftest import (
    EX_OK,
    KiB,
    MiB,
    echo_roundtrip,
    expect_eof,
    first_mismatch,
    make_config,
    run_async,
    tcp_listener,
    wait_refused,
)

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])


def _open_idle_clients(daemon, name: str, count: int) -> list[socket.socket]:
    clients = []
    for i in range(count):
        s = daemon.connect(name, timeout=5)
        clients.append(s)
        echo_roundtrip(s, b"idle client %d\n" % i)  # accepted and served
    return clients


def test_sigterm_without_connections_exits_zero_promptly(daemon):
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=30))
    t0 = time.monotonic()
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    elapsed = time.monotonic() - t0
    assert elapsed < 3, f"with no connections the daemon should exit at once, took {elapsed:.1f} s"


@pytest.mark.deadline(120)
def test_sigterm_drains_streaming_echo_clients_byte_exact_and_refuses_new_connections(daemon):
    n_clients = 20
    size = 2 * MiB
    chunk = 32 * KiB
    grace = 30
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=grace))
    host, port = daemon.addr("echo")
    payloads = [os.urandom(size) for _ in range(n_clients)]
    timeline: dict[str, float] = {}

    async def main():
        halfway = asyncio.Semaphore(0)
        resume = asyncio.Event()
        finished_at: list[float] = []

        async def client(i: int) -> str | None:
            payload = payloads[i]
            released = False
            writer = None
            try:
                reader, writer = await asyncio.open_connection(host, port)

                async def send():
                    nonlocal released
                    view = memoryview(payload)
                    half = size // 2
                    for off in range(0, half, chunk):
                        writer.write(view[off : off + chunk])
                        await writer.drain()
                    released = True
                    halfway.release()
                    await resume.wait()
                    for off in range(half, size, chunk):
                        writer.write(view[off : off + chunk])
                        await writer.drain()
                    writer.write_eof()

                sender = asyncio.create_task(send())
                got = bytearray()
                while len(got) < size:
                    part = await reader.read(256 * KiB)
                    if not part:
                        break
                    got += part
                if bytes(got) != payload:
                    sender.cancel()
                    return f"client {i}: echo not byte-exact: " + first_mismatch(payload, bytes(got))
                try:
                    await sender
                except Exception as e:
                    return f"client {i}: sending failed: {e!r}"
                try:
                    rest = await asyncio.wait_for(reader.read(65536), 10)
                except asyncio.TimeoutError:
                    return f"client {i}: no EOF within 10 s after our half-close"
                if rest:
                    return f"client {i}: {len(rest)} unexpected bytes after the echo"
                return None
            except Exception as e:
                return f"client {i}: {e!r}"
            finally:
                if not released:
                    halfway.release()  # never leave the coordinator waiting
                if writer is not None:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
                finished_at.append(time.monotonic())

        tasks = [asyncio.create_task(client(i)) for i in range(n_clients)]
        # Wait until every client has sent half its data.
        for _ in range(n_clients):
            await asyncio.wait_for(halfway.acquire(), 60)
        timeline["signal"] = time.monotonic()
        daemon.signal(signal.SIGTERM)
        # New connections are refused within 1 s (the drain keeps the others going).
        refused_after = None
        while time.monotonic() - timeline["signal"] < 1.0:
            try:
                r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
            except (ConnectionRefusedError, asyncio.TimeoutError, OSError) as e:
                if isinstance(e, ConnectionRefusedError) or getattr(e, "errno", None) == 111:
                    refused_after = time.monotonic() - timeline["signal"]
                    break
            else:
                w.close()
            await asyncio.sleep(0.02)
        resume.set()
        results = await asyncio.gather(*tasks)
        timeline["last_client_done"] = max(finished_at) if finished_at else time.monotonic()
        return refused_after, [r for r in results if r]

    refused_after, failures = run_async(main(), timeout=90)
    assert refused_after is not None, "a new connection was still accepted 1 s after SIGTERM"
    assert not failures, f"{len(failures)} of {n_clients} streams failed during the drain:\n" + "\n".join(failures[:10])
    daemon.wait(timeout=10, returncode=EX_OK)
    exit_delay = daemon.exited_at - timeline["last_client_done"]
    assert exit_delay < 5, (
        f"daemon exited {exit_delay:.1f} s after the last client closed; it must exit as soon as the last "
        f"connection is gone (grace_seconds={grace})"
    )


@SIGNALS
def test_drain_keeps_serving_existing_connection_until_client_closes(daemon, sig):
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=30))
    addr = daemon.addr("echo")
    (client,) = _open_idle_clients(daemon, "echo", 1)
    try:
        daemon.signal(sig)
        wait_refused(addr, within=1.0)
        for i in range(5):
            echo_roundtrip(client, b"still served during the drain %d\n" % i)
            time.sleep(0.1)
        daemon.assert_alive("(while a connection is still open during the drain)")
        t0 = time.monotonic()
    finally:
        client.close()
    daemon.wait(timeout=5, returncode=EX_OK)
    assert daemon.exited_at - t0 < 3, "daemon did not exit promptly after its last connection closed"


@SIGNALS
def test_grace_period_expiry_closes_idle_clients_and_exits_zero(daemon, sig):
    grace = 2
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=grace))
    clients = _open_idle_clients(daemon, "echo", 5)
    try:
        t0 = time.monotonic()
        daemon.signal(sig)
        time.sleep(0.5)
        echo_roundtrip(clients[0], b"served during the grace period\n")
        daemon.wait(timeout=10, returncode=EX_OK)
        elapsed = daemon.exited_at - t0
        assert 1.5 <= elapsed <= 6, f"with grace_seconds={grace} and idle clients the daemon exited after {elapsed:.1f} s"
        for i, s in enumerate(clients):
            try:
                expect_eof(s, timeout=2)
            except AssertionError as e:
                raise AssertionError(f"idle client {i}: {e}") from None
    finally:
        for s in clients:
            s.close()


@pytest.mark.parametrize(
    "first, second",
    [(signal.SIGTERM, signal.SIGTERM), (signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGTERM-SIGTERM", "SIGINT-SIGINT", "SIGTERM-SIGINT"],
)
def test_second_signal_aborts_the_drain_and_exits_at_once(daemon, first, second):
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=30))
    clients = _open_idle_clients(daemon, "echo", 3)
    try:
        daemon.signal(first)
        time.sleep(0.3)
        daemon.assert_alive("(0.3 s after the first signal, idle clients connected, grace 30 s)")
        t0 = time.monotonic()
        daemon.signal(second)
        daemon.wait(timeout=5, returncode=EX_OK)
        elapsed = daemon.exited_at - t0
        assert elapsed <= 2, f"daemon took {elapsed:.1f} s to exit after the second signal (limit 2 s)"
        for i, s in enumerate(clients):
            try:
                expect_eof(s, timeout=2, allow_reset=True)
            except AssertionError as e:
                raise AssertionError(f"client {i}: {e}") from None
    finally:
        for s in clients:
            s.close()
