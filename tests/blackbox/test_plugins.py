"""The built-in plugins, over TCP and unix listeners, with Python sockets and socat."""

from __future__ import annotations

import email.utils
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import (
    CHARGEN_LINE_BYTES,
    KiB,
    MiB,
    Daemon,
    chargen_line,
    chargen_mismatch,
    echo_roundtrip,
    first_mismatch,
    make_config,
    recv_exactly,
    recv_until_eof,
    tail,
    tcp_listener,
    unix_listener,
)

SOCAT = shutil.which("socat") or "/usr/bin/socat"
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


# --------------------------------------------------------------------------
# One daemon hosting every plugin, shared by the module (start-up is the
# expensive part; these tests do not disturb each other).


@pytest.fixture(scope="module")
def plugins_daemon_module(tulipd_bin):
    workdir = Path(tempfile.mkdtemp(prefix="tbp-", dir="/tmp"))
    d = Daemon(tulipd_bin, workdir, "plugins")
    config = make_config(
        tcp_listener("echo", "echo"),
        unix_listener("echo-unix", "echo", workdir / "echo.sock"),
        tcp_listener("discard", "discard"),
        unix_listener("discard-unix", "discard", workdir / "discard.sock"),
        tcp_listener("chargen", "chargen"),
        unix_listener("chargen-unix", "chargen", workdir / "chargen.sock"),
        tcp_listener("daytime", "daytime"),  # no options: default format
        tcp_listener("daytime-rfc3339", "daytime", options={"format": "rfc3339"}),
        tcp_listener("daytime-rfc2822", "daytime", options={"format": "rfc2822"}),
        unix_listener("daytime-unix", "daytime", workdir / "daytime.sock", options={"format": "rfc2822"}),
        tcp_listener("time", "time"),
        unix_listener("time-unix", "time", workdir / "time.sock"),
    )
    try:
        d.start(config)
        yield d
    finally:
        d.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def pd(plugins_daemon_module) -> Daemon:
    plugins_daemon_module.assert_alive("(shared plugins daemon, before the test)")
    yield plugins_daemon_module
    plugins_daemon_module.assert_alive("(shared plugins daemon, after the test)")


# --------------------------------------------------------------------------
# echo (RFC 862)


@pytest.mark.parametrize("listener", ["echo", "echo-unix"])
def test_echo_returns_each_message_in_order(pd, listener):
    with pd.connect(listener) as s:
        for msg in (b"hello\r\n", bytes(range(256)), b"x", b"\x00" * 1000, os.urandom(100 * KiB)):
            echo_roundtrip(s, msg)


def _socat(args: list[str], payload: bytes, timeout: float = 20.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([SOCAT, *args], input=payload, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"socat {args} did not finish within {timeout} s") from None


def test_echo_over_tcp_with_socat(pd):
    payload = os.urandom(256 * KiB) + b"\nlast line\n"
    host, port = pd.addr("echo")
    r = _socat(["-t", "5", "-", f"TCP:{host}:{port}"], payload)
    assert r.returncode == 0, f"socat failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    assert r.stdout == payload, "socat got a different echo: " + first_mismatch(payload, r.stdout)


def test_echo_over_unix_with_socat(pd):
    payload = os.urandom(256 * KiB) + b"\nlast line\n"
    r = _socat(["-t", "5", "-", f"UNIX-CONNECT:{pd.unix_path('echo-unix')}"], payload)
    assert r.returncode == 0, f"socat failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
    assert r.stdout == payload, "socat got a different echo: " + first_mismatch(payload, r.stdout)


# --------------------------------------------------------------------------
# discard (RFC 863)


@pytest.mark.parametrize("listener", ["discard", "discard-unix"])
def test_discard_reads_everything_and_sends_nothing(pd, listener):
    with pd.connect(listener, timeout=30) as s:
        s.sendall(os.urandom(MiB) * 16)  # 16 MiB: more than any socket buffers hold
        s.settimeout(0.5)
        try:
            data = s.recv(65536)
        except socket.timeout:
            data = None
        assert not data, f"discard sent {len(data)} bytes: {data[:32]!r}"
        s.shutdown(socket.SHUT_WR)
        s.settimeout(3)
        try:
            data = s.recv(65536)
        except socket.timeout:
            data = None  # staying half-open is acceptable
        assert not data, f"discard sent {len(data)} bytes after our half-close: {data[:32]!r}"


# --------------------------------------------------------------------------
# chargen (RFC 864)


@pytest.mark.parametrize("listener", ["chargen", "chargen-unix"])
def test_chargen_sends_exact_rfc864_lines_from_the_first_line(pd, listener):
    nlines = 2000
    with pd.connect(listener) as s:
        data = recv_exactly(s, nlines * CHARGEN_LINE_BYTES, timeout=20)
    first = data[:CHARGEN_LINE_BYTES]
    start = next((k for k in range(95) if chargen_line(k) == first), None)
    assert start is not None, f"first line is not an RFC 864 line (72 printable chars + CRLF): {first!r}"
    problem = chargen_mismatch(data, first_line=start)
    assert problem is None, f"chargen stream is not the RFC 864 rotation over {nlines} lines:\n{problem}"
    assert start == 0, (
        f"the stream is a correct rotation but the first line starts at character offset {start} "
        f"({first[:1]!r}); line k must start at offset k mod 95, i.e. the first line starts with ' '"
    )


def test_chargen_new_connection_starts_over(pd):
    for _ in range(2):
        with pd.connect("chargen") as s:
            data = recv_exactly(s, 10 * CHARGEN_LINE_BYTES, timeout=10)
        assert chargen_mismatch(data, first_line=0) is None, f"unexpected start of stream: {data[:80]!r}"


# --------------------------------------------------------------------------
# daytime (RFC 867)

RFC3339_RX = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
RFC2822_RX = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)


def _read_daytime(pd: Daemon, listener: str) -> str:
    with pd.connect(listener) as s:
        data = recv_until_eof(s, timeout=5, limit=4096)  # the server closes after the line
    assert data.endswith(b"\r\n"), f"daytime reply is not terminated by CRLF: {data!r}"
    assert data.count(b"\n") == 1, f"daytime sent more than one line: {data!r}"
    return data[:-2].decode("ascii")


def _assert_now(dt: datetime, raw: str) -> None:
    skew = abs((dt - datetime.now(timezone.utc)).total_seconds())
    assert skew <= 5, f"daytime {raw!r} is {skew:.1f} s away from the local clock (allowed ±5 s)"


@pytest.mark.parametrize(
    "listener, fmt",
    [
        ("daytime", "rfc3339"),  # default
        ("daytime-rfc3339", "rfc3339"),
        ("daytime-rfc2822", "rfc2822"),
        ("daytime-unix", "rfc2822"),
    ],
)
def test_daytime_sends_one_line_with_current_time_then_closes(pd, listener, fmt):
    line = _read_daytime(pd, listener)
    if fmt == "rfc3339":
        assert RFC3339_RX.match(line), f"not an RFC 3339 timestamp (e.g. 2026-11-26T15:10:02Z): {line!r}"
        dt = datetime.fromisoformat(line)
    else:
        assert RFC2822_RX.match(line), f"not an RFC 2822 date (e.g. Thu, 26 Nov 2026 15:10:02 +0000): {line!r}"
        dt = email.utils.parsedate_to_datetime(line)
        assert dt.strftime("%a") == line[:3], f"weekday {line[:3]} does not match the date in {line!r}"
    assert dt.tzinfo is not None, f"timestamp without a UTC offset: {line!r}"
    _assert_now(dt, line)


# --------------------------------------------------------------------------
# time (RFC 868)


@pytest.mark.parametrize("listener", ["time", "time-unix"])
def test_time_sends_four_byte_seconds_since_1900_then_closes(pd, listener):
    with pd.connect(listener) as s:
        data = recv_until_eof(s, timeout=5, limit=4096)
    now = time.time() + NTP_EPOCH_OFFSET
    assert len(data) == 4, f"time must send exactly 4 bytes then close, got {len(data)}: {data!r}"
    (value,) = struct.unpack("!I", data)
    assert abs(value - now) <= 5, (
        f"time says {value} (= unix {value - NTP_EPOCH_OFFSET}), local clock says {now:.0f}: off by "
        f"{value - now:+.1f} s (allowed ±5 s; a big-endian/little-endian or epoch mix-up?)"
    )


# --------------------------------------------------------------------------
# Logging: one info line per closed connection


@pytest.mark.parametrize("fmt", ["text", "auto"])
def test_each_closed_connection_is_logged_once_with_listener_and_protocol(daemon, fmt):
    """`auto` means text on stderr when not under journald (JOURNAL_STREAM unset)."""
    daemon.start(make_config(tcp_listener("log-probe", "echo"), fmt=fmt))
    n = 3
    for i in range(n):
        with daemon.connect("log-probe") as s:
            echo_roundtrip(s, b"log me %d\n" % i)
    line_rx = re.compile(r"^(?=.*listener=\"?log-probe\b)(?=.*protocol=\"?echo\b)(?=.*bytes_in=)(?=.*bytes_out=).*$", re.M)
    # The readiness probe made one connection too.
    expected = n + 1
    deadline = time.monotonic() + 5
    while len(line_rx.findall(daemon.stderr_text)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    lines = line_rx.findall(daemon.stderr_text)
    assert len(lines) == expected, (
        f"expected {expected} connection-closed lines with listener=log-probe, protocol=echo, bytes_in=, bytes_out= "
        f"(readiness probe + {n} clients), found {len(lines)}\n--- stderr tail ---\n{tail(daemon.stderr_text)}"
    )
