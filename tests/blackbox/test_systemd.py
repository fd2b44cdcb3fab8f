"""systemd integration without a service manager: socket activation through
systemd-socket-activate (LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID the real way) and
sd_notify datagrams on a notify socket the test binds (NOTIFY_SOCKET)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import time

import pytest

from conftest import (
    EX_OK,
    EX_STARTUP,
    connect_tcp,
    connect_unix,
    echo_roundtrip,
    free_port,
    make_config,
    tail,
    tcp_listener,
    unix_listener,
)

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")


def udp_listener(name: str, protocol: str, port: int) -> dict:
    return {"name": name, "protocol": protocol, "udp": {"host": "127.0.0.1", "port": port}}


def start_activated(daemon, config: dict, *activate_args: str) -> None:
    """Start tulipd under systemd-socket-activate, which binds the sockets and runs tulipd on
    the first connection or datagram; returns once its sockets listen."""
    daemon.argv_prefix = [ACTIVATE, *activate_args]
    daemon.start(config, wait_ready=False)
    count = sum(1 for a in activate_args if a == "-l")
    daemon.wait_for_stderr(r"(?s)" + r"Listening on .*?" * count)


# --------------------------------------------------------------------------
# Socket activation


@needs_activate
def test_tcp_socket_passed_by_name_is_adopted(daemon):
    port = free_port()
    start_activated(daemon, make_config(tcp_listener("echo", "echo", port)), "-l", f"127.0.0.1:{port}", "--fdname=echo")
    with connect_tcp(("127.0.0.1", port)) as s:  # the first connection starts tulipd
        echo_roundtrip(s, b"activated over tcp\n")
    daemon.wait_for_stderr(r"listening on a socket passed by systemd")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


@needs_activate
def test_unix_socket_passed_by_name_is_adopted_and_left_in_place(daemon, short_tmp):
    path = short_tmp / "echo.sock"
    start_activated(daemon, make_config(unix_listener("echo-unix", "echo", path)), "-l", str(path), "--fdname=echo-unix")
    deadline = time.monotonic() + 5
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with connect_unix(path) as s:
        echo_roundtrip(s, b"activated over unix\n")
    daemon.wait_for_stderr(r"listening on a socket passed by systemd")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    assert path.exists(), "tulipd removed the socket file systemd owns"


@needs_activate
def test_udp_socket_passed_by_name_is_adopted(daemon):
    port = free_port()
    start_activated(daemon, make_config(udp_listener("echo-udp", "echo", port)), "--datagram", "-l", f"127.0.0.1:{port}", "--fdname=echo-udp")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"activated over udp\n", ("127.0.0.1", port))  # starts tulipd; it reads this one
        data, _ = s.recvfrom(65536)
        assert data == b"activated over udp\n"
        s.sendto(b"second\n", ("127.0.0.1", port))
        assert s.recvfrom(65536)[0] == b"second\n"
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


@needs_activate
def test_unix_datagram_socket_passed_by_name_is_adopted(daemon, short_tmp):
    path = short_tmp / "echo.dgram"
    config = make_config({"name": "echo-dgram", "protocol": "echo", "unix_datagram": {"path": str(path)}})
    start_activated(daemon, config, "--datagram", "-l", str(path), "--fdname=echo-dgram")
    client_path = short_tmp / "client.dgram"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(client_path))
        s.settimeout(5)
        s.sendto(b"activated over unix datagrams\n", str(path))
        assert s.recvfrom(65536)[0] == b"activated over unix datagrams\n"
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


@needs_activate
def test_type_mismatch_fails_startup_naming_both(daemon):
    port = free_port()
    start_activated(daemon, make_config(tcp_listener("echo", "echo", free_port())), "--datagram", "-l", f"127.0.0.1:{port}", "--fdname=echo")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"wake up\n", ("127.0.0.1", port))
    daemon.wait(timeout=10, returncode=EX_STARTUP)
    err = daemon.stderr_text
    assert '"echo"' in err, tail(err)
    assert "inet datagram" in err, f"error does not name the passed socket's type\n{tail(err)}"
    assert "tcp listener" in err and "inet stream" in err, f"error does not name the listener's kind\n{tail(err)}"


@needs_activate
def test_passed_socket_matching_no_listener_is_closed_with_a_warning(daemon):
    stray = free_port()
    config = make_config(tcp_listener("echo", "echo"))
    start_activated(daemon, config, "-l", f"127.0.0.1:{stray}", "--fdname=stray")
    trigger = connect_tcp(("127.0.0.1", stray))  # starts tulipd
    try:
        daemon.wait_for_stderr(r"no listener is named after.*stray|stray.*no listener is named after")
        daemon.wait_ready()
        with daemon.connect("echo") as s:
            echo_roundtrip(s, b"the rest still serves\n")
    finally:
        trigger.close()
    with pytest.raises(OSError):
        connect_tcp(("127.0.0.1", stray), timeout=1).close()
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


# --------------------------------------------------------------------------
# sd_notify


class NotifySocket:
    def __init__(self, directory):
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.received: list[tuple[float, str]] = []

    def next(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        self.received.append((time.monotonic(), data))
        return data

    def wait_for(self, predicate, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching notify datagram within {timeout} s; got {seen}")
            try:
                message = self.next(left)
            except socket.timeout:
                continue
            seen.append(message)
            if predicate(message):
                return message

    def close(self):
        self.sock.close()


@pytest.fixture
def notify_socket(short_tmp):
    n = NotifySocket(short_tmp)
    try:
        yield n
    finally:
        n.close()


def test_ready_status_and_stopping_are_notified(daemon, notify_socket):
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    daemon.start(make_config(tcp_listener("echo", "echo")), wait_ready=False)
    ready = notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    # READY=1 comes only once every listener serves: connecting now must work at once.
    with connect_tcp(daemon.addr("echo"), timeout=2) as s:
        echo_roundtrip(s, b"ready means ready\n")
        assert "STATUS=1 listener, 0 open connections" in ready.splitlines(), ready
        notify_socket.wait_for(lambda m: m == "STATUS=1 listener, 1 open connection")
        daemon.signal(signal.SIGTERM)
        stopping = notify_socket.wait_for(lambda m: "STOPPING=1" in m.splitlines())
        assert "STATUS=draining, 1 open connection" in stopping.splitlines(), stopping
    daemon.wait(timeout=15, returncode=EX_OK)


def test_status_updates_at_most_once_a_second(daemon, notify_socket):
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    daemon.start(make_config(tcp_listener("echo", "echo")), wait_ready=False)
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    for _ in range(20):
        with connect_tcp(daemon.addr("echo")) as s:
            echo_roundtrip(s, b"x\n")
    time.sleep(2.2)
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    notify_socket.sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        while True:
            notify_socket.next(0.2)
    statuses = [t for t, m in notify_socket.received if m.startswith("STATUS=")]
    assert len(statuses) >= 1
    gaps = [b - a for a, b in zip(statuses, statuses[1:])]
    assert all(g > 0.8 for g in gaps), f"STATUS= updates closer than a second apart: {gaps}"
    last_status = [m for _, m in notify_socket.received if m.startswith("STATUS=")][-1]
    assert last_status == "STATUS=1 listener, 0 open connections", notify_socket.received


def test_startup_failure_sends_errno_and_status(daemon, notify_socket):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
        daemon.start(make_config(tcp_listener("echo", "echo", port)), wait_ready=False, retry_on_addr_in_use=False)
        daemon.wait(timeout=10, returncode=EX_STARTUP)
    message = notify_socket.wait_for(lambda m: "ERRNO=" in m)
    lines = message.splitlines()
    assert f"ERRNO={98}" in lines, message  # EADDRINUSE
    assert any(line.startswith("STATUS=") and "echo" in line for line in lines), message


def test_watchdog_is_petted_at_half_the_interval(daemon, notify_socket):
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"}
    # WATCHDOG_PID must be tulipd's own pid: set it in a shell that execs tulipd.
    daemon.argv_prefix = ["sh", "-c", 'WATCHDOG_PID=$$ exec "$0" "$@"']
    daemon.start(make_config(tcp_listener("echo", "echo")), wait_ready=False)
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    start = time.monotonic()
    pets = []
    while time.monotonic() - start < 1.5:
        try:
            message = notify_socket.next(0.5)
        except socket.timeout:
            continue
        if message == "WATCHDOG=1":
            pets.append(time.monotonic())
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    assert 7 <= len(pets) <= 22, f"{len(pets)} WATCHDOG=1 in 1.5 s at a 200 ms watchdog"
    gaps = sorted(b - a for a, b in zip(pets, pets[1:]))
    median = gaps[len(gaps) // 2]
    assert 0.07 <= median <= 0.14, f"median gap between pets {median:.3f} s, expected about 0.1 s"
    assert max(gaps) < 0.3, f"a gap between pets of {max(gaps):.3f} s"


def test_watchdog_for_another_pid_is_not_petted(daemon, notify_socket):
    daemon.extra_env = {
        "NOTIFY_SOCKET": notify_socket.path,
        "WATCHDOG_USEC": "200000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    daemon.start(make_config(tcp_listener("echo", "echo")), wait_ready=False)
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    time.sleep(0.5)
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    notify_socket.sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        while True:
            notify_socket.next(0.2)
    assert not [m for _, m in notify_socket.received if m == "WATCHDOG=1"], notify_socket.received


# --------------------------------------------------------------------------
# journald log format


def test_journald_format_is_accepted_and_falls_back_to_stderr_without_a_journal(daemon, tmp_path):
    if os.path.exists("/run/systemd/journal/socket"):
        pytest.skip("a journal runs here: entries go there, not to stderr")
    daemon.start(make_config(tcp_listener("echo", "echo"), fmt="journald"))
    with daemon.connect("echo") as s:
        echo_roundtrip(s, b"logged\n")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    assert "tulipd ready" in daemon.stderr_text, tail(daemon.stderr_text)


def test_drain_making_progress_extends_the_stop_timeout(daemon, notify_socket):
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    daemon.start(make_config(tcp_listener("echo", "echo"), grace=10))
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    clients = [daemon.connect("echo") for _ in range(3)]
    try:
        for s in clients:
            echo_roundtrip(s, b"before the drain\n")
        daemon.signal(signal.SIGTERM)
        notify_socket.wait_for(lambda m: "STOPPING=1" in m.splitlines())
        clients.pop().close()  # progress: one connection fewer
        extend = notify_socket.wait_for(lambda m: m.startswith("EXTEND_TIMEOUT_USEC="), timeout=4)
        assert int(extend.split("=", 1)[1]) > 0, extend
    finally:
        for s in clients:
            s.close()
    daemon.wait(timeout=15, returncode=EX_OK)


def test_configuration_error_is_notified(daemon, notify_socket):
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    daemon.start(make_config(tcp_listener("echo", "no-such-plugin")), wait_ready=False)
    daemon.wait(timeout=10, returncode=78)
    message = notify_socket.wait_for(lambda m: "ERRNO=" in m)
    assert "ERRNO=22" in message.splitlines(), message  # EINVAL
    assert any(line.startswith("STATUS=") and "configuration" in line for line in message.splitlines()), message
