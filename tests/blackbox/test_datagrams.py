"""udp and unix_datagram listeners: the built-ins over datagrams, the reflection guard, and
endpoints that survive send errors. Traffic stays on 127.0.0.1 and unix paths in temp dirs."""

from __future__ import annotations

import random
import re
import socket
import struct
import time
from pathlib import Path

import pytest

from conftest import make_config

MAX_UDP = 65507


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def udp_listener(name: str, protocol: str, port: int, options: dict | None = None) -> dict:
    listener = {"name": name, "protocol": protocol, "udp": {"host": "127.0.0.1", "port": port}}
    if options is not None:
        listener["options"] = options
    return listener


def dgram_listener(name: str, protocol: str, path: Path, options: dict | None = None) -> dict:
    listener = {"name": name, "protocol": protocol, "unix_datagram": {"path": str(path)}}
    if options is not None:
        listener["options"] = options
    return listener


def start(daemon, *listeners) -> None:
    daemon.start(make_config(*listeners, grace=2))
    # Datagram listeners cannot be probed by connecting: wait for their log lines.
    deadline = time.monotonic() + 10
    while daemon.stderr_text.count("endpoint opened") < len(listeners):
        daemon.assert_alive("while waiting for the datagram endpoints")
        assert time.monotonic() < deadline, f"endpoints not opened\n{daemon.stderr_tail()}"
        time.sleep(0.05)


def udp_client() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    return s


def unix_client(directory: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.bind(str(directory / "client.sock"))
    s.settimeout(5)
    return s


def payload(seq: int, size: int) -> bytes:
    rng = random.Random(seq)
    return struct.pack("!Q", seq) + rng.randbytes(size - 8)


def mixed_sizes(count: int) -> list[int]:
    rng = random.Random(1234)
    sizes = []
    for i in range(count):
        roll = rng.random()
        if roll < 0.70:
            sizes.append(rng.randint(8, 1500))
        elif roll < 0.95:
            sizes.append(rng.randint(1501, 16384))
        else:
            sizes.append(rng.randint(16385, MAX_UDP))
    sizes[0] = MAX_UDP
    sizes[1] = 8
    return sizes


def echo_many(sock: socket.socket, target, count: int, window: int, window_bytes: int) -> int:
    """Echoes `count` datagrams with a bounded window; returns how many were sent again.

    UDP may drop a datagram even on loopback when a receive buffer is full (the kernel charges
    more than the payload for a 64 KiB datagram), so a datagram not echoed within 0.5 s is sent
    again; a late duplicate echo is ignored. Corruption is never tolerated."""
    sizes = mixed_sizes(count)
    outstanding: dict[int, int] = {}
    done: set[int] = set()
    outstanding_bytes = 0
    next_seq = 0
    resent = 0
    deadline = time.monotonic() + 120
    sock.settimeout(0.5)
    while len(done) < count:
        assert time.monotonic() < deadline, f"echo stalled: {len(done)} of {count} back"
        while next_seq < count and len(outstanding) < window and (
            not outstanding or outstanding_bytes + sizes[next_seq] <= window_bytes
        ):
            sock.sendto(payload(next_seq, sizes[next_seq]), target)
            outstanding[next_seq] = sizes[next_seq]
            outstanding_bytes += sizes[next_seq]
            next_seq += 1
        try:
            data = sock.recv(MAX_UDP + 1)
        except TimeoutError:
            for seq, size in outstanding.items():
                sock.sendto(payload(seq, size), target)
                resent += 1
            assert resent <= count // 10, f"too many datagrams lost: {resent} resent"
            continue
        seq = struct.unpack("!Q", data[:8])[0]
        if seq in done:
            continue  # the echo of a datagram that was sent again
        assert seq in outstanding, f"unexpected datagram seq={seq}"
        size = outstanding.pop(seq)
        outstanding_bytes -= size
        assert data == payload(seq, size), f"datagram {seq} ({size} bytes) came back corrupted"
        done.add(seq)
    sock.settimeout(5)
    return resent


def test_udp_echo_of_10000_mixed_datagrams(daemon):
    port = free_udp_port()
    start(daemon, udp_listener("echo-udp", "echo", port, {"rate_limit": None}))
    with udp_client() as s:
        resent = echo_many(s, ("127.0.0.1", port), 10_000, window=100, window_bytes=96 * 1024)
        s.sendto(b"", ("127.0.0.1", port))  # an empty datagram is echoed too
        while s.recv(MAX_UDP + 1) != b"":
            pass  # late echoes of datagrams sent twice
    daemon.assert_alive()
    daemon.stop()
    m = daemon.wait_for_stderr(r"endpoint closed.*datagrams_in=(\d+)")
    assert 10_001 <= int(m.group(1)) <= 10_001 + resent


def test_unix_datagram_echo_of_10000_mixed_datagrams(daemon, short_tmp):
    path = short_tmp / "echo.dgram"
    start(daemon, dgram_listener("echo-dgram", "echo", path, {"rate_limit": None}))
    with unix_client(short_tmp) as s:
        echo_many(s, str(path), 10_000, window=8, window_bytes=512 * 1024)
    daemon.assert_alive()
    daemon.stop()
    assert not path.exists(), "the socket file is removed on close"


def test_unix_datagram_from_an_unnamed_socket_does_not_close_the_listener(daemon, short_tmp):
    """DT-6: one datagram from an unbound unix socket used to close the listener (NIO cannot
    build its sender address). Now it is dropped and the listener keeps serving."""
    path = short_tmp / "echo.dgram"
    start(daemon, dgram_listener("echo-dgram", "echo", path, {"rate_limit": None}))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
        for i in range(200):
            unnamed.sendto(b"anonymous %d" % i, str(path))
    with unix_client(short_tmp) as s:
        s.sendto(b"hello", str(path))
        assert s.recv(100) == b"hello"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unnamed:
            unnamed.sendto(b"anonymous", str(path))
        s.sendto(b"again", str(path))
        assert s.recv(100) == b"again"
    daemon.assert_alive()
    assert "endpoint closed" not in daemon.stderr_text
    assert path.exists()


def test_the_rate_limit_drops_replies_above_the_burst_by_default(daemon):
    port = free_udp_port()
    start(daemon, udp_listener("echo-udp", "echo", port))
    with udp_client() as s:
        for i in range(300):
            s.sendto(b"x%d" % i, ("127.0.0.1", port))
        s.settimeout(0.5)
        replies = 0
        try:
            while True:
                s.recv(100)
                replies += 1
        except TimeoutError:
            pass
        # The burst of 100, plus what 50/s refilled while sending.
        assert 100 <= replies < 150, f"{replies} replies to 300 requests"
        time.sleep(1.0)
        s.settimeout(5)
        s.sendto(b"again", ("127.0.0.1", port))
        assert s.recv(100) == b"again", "the source gets tokens back over time"
    daemon.assert_alive()


def test_each_builtin_over_udp(daemon):
    ports = {name: free_udp_port() for name in ("echo", "discard", "chargen", "daytime", "time")}
    start(daemon, *[udp_listener(f"{name}-udp", name, port) for name, port in ports.items()])
    with udp_client() as s:
        s.sendto(b"hello", ("127.0.0.1", ports["echo"]))
        assert s.recv(100) == b"hello"

        s.sendto(b"anything", ("127.0.0.1", ports["discard"]))
        s.settimeout(0.3)
        with pytest.raises(TimeoutError):
            s.recv(100)
        s.settimeout(5)

        s.sendto(b"", ("127.0.0.1", ports["chargen"]))
        first = s.recv(1024)
        s.sendto(b"", ("127.0.0.1", ports["chargen"]))
        second = s.recv(1024)
        for reply in (first, second):
            assert 0 < len(reply) <= 512
            lines = reply.split(b"\r\n")
            assert lines[-1] == b"" and all(len(line) == 72 for line in lines[:-1])
        assert first != second, "the rotation continues between requests"
        assert second.split(b"\r\n")[0][0] == first.split(b"\r\n")[0][0] + 6

        s.sendto(b"", ("127.0.0.1", ports["daytime"]))
        line = s.recv(1024)
        assert len(line) <= 512 and line.endswith(b"\r\n")
        assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\r\n", line)

        s.sendto(b"", ("127.0.0.1", ports["time"]))
        data = s.recv(100)
        assert len(data) == 4
        assert abs(struct.unpack("!I", data)[0] - (int(time.time()) + 2208988800)) <= 5
    daemon.assert_alive()


def test_the_endpoint_survives_an_icmp_error_and_an_oversized_reply(daemon, short_tmp):
    port = free_udp_port()
    path = short_tmp / "echo.dgram"
    start(
        daemon,
        udp_listener("echo-udp", "echo", port, {"rate_limit": None}),
        dgram_listener("echo-dgram", "echo", path, {"rate_limit": None}),
    )
    # The reply goes to a port that was closed in between: ICMP port unreachable.
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gone.bind(("127.0.0.1", 0))
    gone.sendto(b"x" * 100, ("127.0.0.1", port))
    gone.close()
    time.sleep(0.2)
    # A unix datagram larger than the daemon's send buffer: the reply fails with EMSGSIZE.
    with unix_client(short_tmp) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 << 20)
        s.sendto(b"y" * 250_000, str(path))
        time.sleep(0.2)
        s.sendto(b"still there", str(path))
        reply = s.recv(300_000)
        if reply != b"still there":  # the daemon's send buffer took the big one after all
            assert reply == b"y" * len(reply)
            assert s.recv(100) == b"still there"
    with udp_client() as s:
        s.sendto(b"still there", ("127.0.0.1", port))
        assert s.recv(100) == b"still there"
    daemon.assert_alive()
    assert "endpoint closed" not in daemon.stderr_text


def test_a_busy_port_exits_1_naming_the_listener(daemon):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        daemon.start(make_config(udp_listener("busy-udp", "echo", port)), wait_ready=False)
        assert daemon.wait(returncode=1) == 1
        assert "busy-udp" in daemon.stderr_text and f"127.0.0.1:{port}" in daemon.stderr_text
    finally:
        holder.close()


def test_sigterm_closes_datagram_endpoints_and_exits_0(daemon, short_tmp):
    port = free_udp_port()
    start(daemon, udp_listener("echo-udp", "echo", port), dgram_listener("d", "discard", short_tmp / "d.sock"))
    t0 = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - t0 < 2, "datagram endpoints do not hold up shutdown"
    assert daemon.stderr_text.count("endpoint closed") == 2
