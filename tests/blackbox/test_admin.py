"""The admin socket (issue 6): one command per line, one JSON object per reply line; `tulipd
status`, `reload`, `drain`, `resume`, `connections` speak it. Changing commands need root or
the daemon's uid (SO_PEERCRED)."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    connect_tcp,
    connect_unix,
    echo_roundtrip,
    make_config,
    recv_exactly,
    run_tulipd,
    tcp_listener,
    write_config,
)

NOBODY = 65534


def admin_config(admin_path: Path, *listeners: dict, mode: str = "0600") -> dict:
    config = make_config(*listeners)
    config["admin"] = {"path": str(admin_path), "mode": mode}
    return config


def ask(path: Path | str, *lines: str, timeout: float = 10.0) -> list[dict]:
    """Sends the lines on one connection (pipelined) and returns one parsed reply per line."""
    with connect_unix(path, timeout=timeout) as conn:
        conn.sendall("".join(line + "\n" for line in lines).encode())
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    replies = [json.loads(line) for line in data.decode().splitlines()]
    assert len(replies) == len(lines), f"{len(lines)} commands, {len(replies)} replies: {data!r}"
    return replies


@pytest.fixture
def served(daemon, short_tmp):
    """A daemon with an echo listener and an admin socket in a world-traversable directory."""
    os.chmod(short_tmp, 0o755)
    admin = Path(short_tmp) / "admin.sock"
    daemon.start(admin_config(admin, tcp_listener("echo", "echo")))
    deadline = time.monotonic() + 5
    while not admin.exists():
        assert time.monotonic() < deadline, "no admin socket"
        time.sleep(0.05)
    # The fixture's readiness probe is a connection too: start once the daemon has accepted and
    # closed it, so the tests' counts are theirs alone.
    while True:
        (echo,) = ask(admin, "status")[0]["listeners"]
        if echo["accepted_total"] >= 1 and echo["open_connections"] == 0:
            return daemon, admin
        assert time.monotonic() < deadline, echo
        time.sleep(0.05)


def test_status_reports_the_daemon_and_every_listener(served):
    daemon, admin = served
    (before,) = ask(admin, "status")  # the fixture's readiness probe was accepted too
    with daemon.connect("echo") as conn:
        echo_roundtrip(conn, b"12345\n")
        (status,) = ask(admin, "status")
    assert status["ok"] is True
    assert status["pid"] == daemon.pid and status["config_generation"] == 1
    assert isinstance(status["loop_lag_seconds"], float) and 0 <= status["loop_lag_seconds"] < 1
    assert status["uptime_seconds"] > 0
    (echo,) = status["listeners"]
    assert echo["name"] == "echo" and echo["kind"] == "tcp" and echo["protocol"] == "echo"
    assert echo["address"] == "127.0.0.1:%d" % daemon.port("echo")
    assert echo["state"] == "serving" and echo["open_connections"] == 1
    assert echo["accepted_total"] == before["listeners"][0]["accepted_total"] + 1
    assert echo["refused_total"] == 0 and echo["bytes_received_total"] == 6 == echo["bytes_sent_total"]
    assert stat.S_IMODE(admin.stat().st_mode) == 0o600


def test_connections_lists_the_open_ones(served):
    daemon, admin = served
    with daemon.connect("echo") as a, daemon.connect("echo") as b:
        echo_roundtrip(a, b"abc\n")
        peers = {"127.0.0.1:%d" % s.getsockname()[1] for s in (a, b)}
        (reply,) = ask(admin, "connections echo")
        (unknown,) = ask(admin, "connections nope")
    assert {c["peer"] for c in reply["connections"]} == peers
    assert sorted(c["bytes_in"] for c in reply["connections"]) == [0, 4]
    assert unknown == {"ok": False, "error": "no listener named 'nope'; listeners: echo"}


def test_drain_holds_new_connections_until_resume(served):
    daemon, admin = served
    with daemon.connect("echo") as old:
        echo_roundtrip(old, b"before\n")
        (before,) = ask(admin, "status")
        (drained,) = ask(admin, "drain echo")
        assert drained == {"ok": True, "listener": "echo", "state": "draining"}
        echo_roundtrip(old, b"open connections go on\n")
        waiting = connect_tcp(daemon.addr("echo"))  # the kernel's backlog takes it
        waiting.sendall(b"waiting\n")
        waiting.settimeout(0.5)
        with pytest.raises(socket.timeout):
            waiting.recv(16)
        (status,) = ask(admin, "status")
        assert status["listeners"][0]["state"] == "draining"
        assert status["listeners"][0]["accepted_total"] == before["listeners"][0]["accepted_total"]
        (resumed,) = ask(admin, "resume echo")
        assert resumed == {"ok": True, "listener": "echo", "state": "serving"}
        assert recv_exactly(waiting, 8) == b"waiting\n"
        waiting.close()


def test_reload_reports_what_changed_and_a_bad_config_keeps_the_generation(served):
    daemon, admin = served
    added = tcp_listener("more", "echo")
    config = dict(daemon.config)
    config["listeners"] = config["listeners"] + [added]
    write_config(daemon.config_path, config)
    (reply,) = ask(admin, "reload")
    assert reply == {
        "ok": True, "config_generation": 2, "added": ["more"], "removed": [], "changed": [], "unchanged": ["echo"],
    }
    with connect_tcp(("127.0.0.1", added["tcp"]["port"])) as conn:
        echo_roundtrip(conn, b"added by an admin reload\n")
    daemon.config_path.write_text('{"listeners": [\n  {"name": }\n]}\n')
    (bad,) = ask(admin, "reload")
    assert bad["ok"] is False
    assert bad["error"].startswith("reload failed; keeping configuration generation 2: ") and ":2:" in bad["error"]
    (status,) = ask(admin, "status")
    assert status["config_generation"] == 2 and status["reloads_total"] == 1 and status["reload_failures_total"] == 1


def run_as_nobody(path: Path, *lines: str) -> list[dict]:
    """The admin client as uid 65534 (nobody), from a child process."""
    code = (
        "import json, os, socket, sys\n"
        f"os.setgid({NOBODY}); os.setuid({NOBODY})\n"
        "s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n"
        "s.sendall(''.join(l + '\\n' for l in sys.argv[2:]).encode()); s.shutdown(socket.SHUT_WR)\n"
        "data = b''\n"
        "while (chunk := s.recv(65536)): data += chunk\n"
        "print(data.decode(), end='')\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), *lines], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_changing_commands_need_root_or_the_daemons_uid(daemon, short_tmp):
    os.chmod(short_tmp, 0o755)
    admin = Path(short_tmp) / "admin.sock"
    daemon.start(admin_config(admin, tcp_listener("echo", "echo"), mode="0666"))
    status, drain, reload = run_as_nobody(admin, "status", "drain echo", "reload")
    assert status["ok"] is True
    assert drain == {"ok": False, "error": f"drain is allowed for root and uid {os.getuid()} only, not uid {NOBODY}"}
    assert reload["ok"] is False and f"not uid {NOBODY}" in reload["error"]
    (after,) = ask(admin, "status")
    assert after["listeners"][0]["state"] == "serving" and after["config_generation"] == 1
    assert "admin command refused" in daemon.stderr_text


def test_malformed_input_gets_errors_and_the_daemon_carries_on(served):
    daemon, admin = served
    replies = ask(admin, "", "bogus", "status extra", "drain", "\x00\xff garbage")
    assert [r["ok"] for r in replies] == [False] * 5
    assert replies[1]["error"].startswith("unknown command 'bogus'")
    with connect_unix(admin) as conn:
        conn.sendall(b"x" * 10_000)
        reply = json.loads(conn.recv(4096).decode().splitlines()[0])
        assert reply == {"ok": False, "error": "line longer than 4096 bytes"}
        try:
            rest = conn.recv(16)
        except ConnectionResetError:  # closed with the rest of the line unread
            rest = b""
        assert rest == b"", "an overlong line closes the connection"
    with daemon.connect("echo") as conn:
        echo_roundtrip(conn, b"still serving\n")
    assert ask(admin, "status")[0]["ok"] is True


def test_cli_prints_tables_json_and_exit_codes(served):
    daemon, admin = served
    table = run_tulipd(["status", "--socket", admin])
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"tulipd pid {daemon.pid}, up ") and "config generation 1" in lines[0]
    assert lines[2].split() == ["LISTENER", "KIND", "ADDRESS", "PROTOCOL", "STATE", "OPEN", "ACCEPTED", "REFUSED"]
    assert lines[3].split()[:5] == ["echo", "tcp", "127.0.0.1:%d" % daemon.port("echo"), "echo", "serving"]
    as_json = run_tulipd(["status", "--json", "--config", daemon.config_path])
    assert json.loads(as_json.stdout)["pid"] == daemon.pid
    drain = run_tulipd(["drain", "echo", "--socket", admin])
    assert (drain.returncode, drain.stdout.strip()) == (0, "echo: draining")
    resume = run_tulipd(["resume", "nope", "--socket", admin])
    assert resume.returncode == 1 and resume.stdout.startswith("error: no listener named 'nope'")
    reload = run_tulipd(["reload", "--socket", admin])
    assert reload.returncode == 0 and reload.stdout.startswith("reloaded: config generation 2")


def test_cli_without_an_admin_socket(tmp_path):
    config = write_config(tmp_path / "t.json", make_config(tcp_listener("echo", "echo")))
    missing = run_tulipd(["status", "--config", config])
    assert missing.returncode == 78 and 'has no "admin" socket' in missing.stderr
    unreachable = run_tulipd(["status", "--socket", tmp_path / "none.sock"])
    assert unreachable.returncode == 1 and "cannot reach the admin socket" in unreachable.stderr


def test_admin_socket_is_removed_on_stop(served):
    daemon, admin = served
    daemon.stop()
    assert not admin.exists()


def test_a_client_that_does_not_read_its_replies_is_not_buffered_without_bound(served):
    """200,000 pipelined lines (about 26 MB of error replies) from a client that reads nothing:
    the daemon stops reading it instead of queueing the replies, then answers every line once
    the client reads."""
    daemon, admin = served
    count = 200_000
    with connect_unix(admin, timeout=30) as conn:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        before = daemon.rss_kib()
        payload = b"x\n" * count
        conn.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 3
        while sent < len(payload) and time.monotonic() < deadline:
            try:
                sent += conn.send(payload[sent:])
            except BlockingIOError:
                time.sleep(0.01)
        time.sleep(0.5)
        grown = daemon.rss_kib() - before
        assert grown < 6 * 1024, f"the daemon grew by {grown} KiB for a client that reads nothing"
        assert sent < len(payload), "everything was accepted: the daemon kept reading a client that reads nothing"
        conn.setblocking(True)
        replies = 0
        buffer = b""
        while replies < count:
            if sent < len(payload):
                conn.setblocking(False)
                try:
                    sent += conn.send(payload[sent:])
                except BlockingIOError:
                    pass
                conn.setblocking(True)
            chunk = conn.recv(1 << 20)
            assert chunk, f"closed after {replies} replies"
            buffer += chunk
            lines = buffer.split(b"\n")
            buffer = lines.pop()
            replies += len(lines)
        assert replies == count
    daemon.assert_alive()
