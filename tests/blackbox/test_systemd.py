"""systemd integration without a service manager: socket activation through
systemd-socket-activate (LISTEN_FDS/LISTEN_FDNAMES/LISTEN_PID the real way) and
sd_notify datagrams on a notify socket the test binds (NOTIFY_SOCKET)."""

from __future__ import annotations

import fcntl
import os
import re
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
    recv_exactly,
    tail,
    tcp_listener,
    unix_listener,
    write_config,
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
        # Descriptors that came with a datagram (FDSTORE=1), by message; closed with the socket.
        self.fds: list[tuple[str, list[int]]] = []

    def next(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        data, fds, _, _ = socket.recv_fds(self.sock, 4096, 16)
        message = data.decode()
        self.received.append((time.monotonic(), message))
        if fds:
            self.fds.append((message, fds))
        return message

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
        for _, fds in self.fds:
            for fd in fds:
                os.close(fd)
        self.fds = []


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


# --------------------------------------------------------------------------
# fd store (FDSTORE=1 / FDSTOREREMOVE=1), and adoption of what it passes back


def _stored(notify: NotifySocket, names: set[str], timeout: float = 5.0) -> dict[str, list[int]]:
    """The descriptors each listener sent with FDSTORE=1, once every name in `names` has sent."""
    deadline = time.monotonic() + timeout
    while True:
        by_name: dict[str, list[int]] = {}
        for message, fds in notify.fds:
            fields = dict(line.split("=", 1) for line in message.splitlines())
            assert fields.get("FDSTORE") == "1", message
            by_name.setdefault(fields["FDNAME"], []).extend(fds)
        if names <= set(by_name):
            return by_name
        left = deadline - time.monotonic()
        assert left > 0, f"FDSTORE=1 only for {sorted(by_name)}; expected {sorted(names)}: {notify.received}"
        try:
            notify.next(left)
        except socket.timeout:
            pass


def _sockname(fd: int):
    probe = socket.socket(fileno=os.dup(fd))
    try:
        return probe.family, probe.type, probe.getsockname()
    finally:
        probe.close()


def test_sockets_go_to_the_fd_store_and_the_next_start_adopts_them(daemon_factory, notify_socket, short_tmp):
    port, two_port, udp_port = free_port(), free_port(), free_port()
    path = short_tmp / "echo.sock"
    config = make_config(
        tcp_listener("echo", "echo", port),
        tcp_listener("two-hosts", "echo", two_port, host=["127.0.0.1", "127.0.0.2"]),
        unix_listener("echo-unix", "echo", path),
        udp_listener("echo-udp", "echo", udp_port),
        {"name": "fifo", "protocol": "echo", "pipe": {"read": str(short_tmp / "in.fifo")}},
    )
    first = daemon_factory("first")
    first.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    first.start(config, wait_ready=False)
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    stored = _stored(notify_socket, {"echo", "two-hosts", "echo-unix", "echo-udp"})
    assert "fifo" not in stored, "a pipe went to the fd store"
    assert [_sockname(fd)[2] for fd in stored["echo"]] == [("127.0.0.1", port)]
    assert sorted(_sockname(fd)[2] for fd in stored["two-hosts"]) == [("127.0.0.1", two_port), ("127.0.0.2", two_port)]
    assert [_sockname(fd)[2] for fd in stored["echo-unix"]] == [str(path)]
    assert [(_sockname(fd)[1], _sockname(fd)[2]) for fd in stored["echo-udp"]] == [
        (socket.SOCK_DGRAM, ("127.0.0.1", udp_port))
    ]
    first.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    assert path.exists(), "a unix socket in the fd store lost its file when tulipd stopped"

    # While no tulipd runs, the stored sockets still accept: the connection waits in the backlog.
    waiting = connect_tcp(("127.0.0.1", port))
    try:
        waiting.sendall(b"sent while tulipd was down\n")
        # The next start gets the store back as systemd passes it: fds 3.. with LISTEN_FDNAMES.
        names = ["echo", "two-hosts", "two-hosts", "echo-unix", "echo-udp"]
        sources = stored["echo"] + stored["two-hosts"] + stored["echo-unix"] + stored["echo-udp"]
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in sources]
        try:
            moves = " ".join(f"{3 + i}<&{fd} {fd}<&-" for i, fd in enumerate(high))
            second = daemon_factory("second")
            second.pass_fds = tuple(high)
            second.extra_env = {
                "LISTEN_FDS": str(len(high)),
                "LISTEN_FDNAMES": ":".join(names),
                "NOTIFY_SOCKET": notify_socket.path,
            }
            second.argv_prefix = ["bash", "-c", f'exec {moves}; LISTEN_PID=$$ exec "$0" "$@"']
            second.start(config, wait_ready=False)
        finally:
            for fd in high:
                os.close(fd)
        assert recv_exactly(waiting, len(b"sent while tulipd was down\n")) == b"sent while tulipd was down\n"
    finally:
        waiting.close()
    second.wait_for_stderr(r"tulipd ready")
    stored_before = len(notify_socket.fds)
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    # Sockets systemd passed back are not stored again; only the pipe has none to store.
    assert len(notify_socket.fds) == stored_before, notify_socket.received
    adopted = re.findall(r"listening on a socket passed by systemd.*listener=(\S+)", second.stderr_text)
    assert sorted(adopted) == ["echo", "echo-unix", "two-hosts"], tail(second.stderr_text)
    for host in ("127.0.0.1", "127.0.0.2"):
        with connect_tcp((host, two_port)) as s:
            echo_roundtrip(s, b"both hosts adopted\n")
    with connect_unix(path) as s:
        echo_roundtrip(s, b"unix adopted\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(b"udp adopted\n", ("127.0.0.1", udp_port))
        assert s.recvfrom(65536)[0] == b"udp adopted\n"
    second.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


def test_reload_removes_a_dropped_listener_from_the_fd_store(daemon, notify_socket):
    keep, gone = tcp_listener("keep", "echo"), tcp_listener("gone", "echo")
    moved = tcp_listener("moved", "echo")
    daemon.extra_env = {"NOTIFY_SOCKET": notify_socket.path}
    daemon.start(make_config(keep, gone, moved))
    _stored(notify_socket, {"keep", "gone", "moved"})
    new_port = free_port()
    write_config(daemon.config_path, make_config(keep, tcp_listener("moved", "echo", new_port)))
    daemon.signal(signal.SIGHUP)
    removals = set()
    deadline = time.monotonic() + 5
    while removals != {"gone", "moved"}:
        assert time.monotonic() < deadline, notify_socket.received
        message = notify_socket.wait_for(lambda m: "FDSTOREREMOVE=1" in m.splitlines())
        removals.add(dict(line.split("=", 1) for line in message.splitlines())["FDNAME"])
    # The moved listener's new socket is stored under its name; "keep" is not stored again.
    notify_socket.wait_for(lambda m: "READY=1" in m.splitlines())
    restored = [fds for message, fds in notify_socket.fds if "FDNAME=moved" in message]
    assert [_sockname(fd)[2] for fd in restored[-1]] == [("127.0.0.1", new_port)]
    assert sum("FDNAME=keep" in message for message, _ in notify_socket.fds) == 1
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
