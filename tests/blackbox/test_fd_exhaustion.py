"""File-descriptor exhaustion (ARCHITECTURE §6, CS-21): accept backs off and recovers by itself."""

from __future__ import annotations

import resource
import select
import socket
import subprocess
import time

from conftest import connect_tcp, echo_roundtrip, free_port, make_config, tcp_listener, write_config


def _start(tmp_path, tulipd_bin, listener: dict, nofile: int):
    """tulipd with `listener` and at most `nofile` descriptors (setrlimit before exec)."""
    path = write_config(tmp_path / "tulipd.json", make_config(listener))
    stderr = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(
        [str(tulipd_bin), "run", "--config", str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)),
        start_new_session=True,
    )
    return proc, stderr


def _wait_recovered(port: int, proc: subprocess.Popen, tmp_path) -> None:
    """Within a few backoff periods a fresh connection is served again, and EMFILE was logged."""
    deadline = time.monotonic() + 15
    while True:
        try:
            with connect_tcp(("127.0.0.1", port), timeout=2) as s:
                echo_roundtrip(s, b"after exhaustion", timeout=2)
            break
        except (OSError, AssertionError):
            assert time.monotonic() < deadline, "tulipd did not recover from EMFILE"
            time.sleep(0.2)
    assert proc.poll() is None
    log = (tmp_path / "stderr").read_bytes().decode(errors="replace")
    assert "out of system resource" in log, f"no EMFILE warning was logged:\n{log[-2000:]}"


def _stop(proc: subprocess.Popen, stderr) -> None:
    proc.terminate()
    assert proc.wait(timeout=15) == 0
    stderr.close()


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "tulipd exited during start-up"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("tulipd did not start listening")


def test_running_out_of_descriptors_backs_off_and_recovers(tmp_path, tulipd_bin):
    port = free_port()
    proc, stderr = _start(tmp_path, tulipd_bin, tcp_listener("echo", "echo", port=port), nofile=40)
    clients: list[socket.socket] = []
    try:
        _wait_listening(port, proc)
        # More clients than the daemon has descriptors: the kernel completes the handshakes
        # (backlog), the daemon accepts until EMFILE and then backs off.
        for _ in range(60):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(1.5)
        assert proc.poll() is None, "tulipd died when it ran out of descriptors"
        for c in clients:
            c.close()
        clients.clear()
        _wait_recovered(port, proc, tmp_path)
    finally:
        for c in clients:
            c.close()
        _stop(proc, stderr)


def test_emfile_under_connection_limits_keeps_serving_and_recovers(tmp_path, tulipd_bin):
    """`ulimit -n 64` and 500 connection attempts against a listener whose max_connections (200)
    lies beyond what the descriptors allow: EMFILE back-off and the limits work together."""
    port = free_port()
    listener = tcp_listener("echo", "echo", port=port, backlog=1024)
    listener["limits"] = {"max_connections": 200, "idle_timeout_seconds": 30}
    proc, stderr = _start(tmp_path, tulipd_bin, listener, nofile=64)
    clients: list[socket.socket] = []
    try:
        _wait_listening(port, proc)
        for _ in range(500):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            clients.append(s)
        time.sleep(1.5)
        assert proc.poll() is None, "tulipd died when it ran out of descriptors"
        # The connections it did accept are served while it backs off.
        for s in clients:
            try:
                s.send(b"x")
            except OSError:
                pass
        echoed: set[socket.socket] = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(echoed) < 10:
            readable, _, _ = select.select([c for c in clients if c not in echoed], [], [], 0.2)
            for s in readable:
                try:
                    if s.recv(1) == b"x":
                        echoed.add(s)
                except OSError:
                    pass
        assert len(echoed) >= 10, f"only {len(echoed)} of the accepted connections were served"
        for c in clients:
            c.close()
        clients.clear()
        _wait_recovered(port, proc, tmp_path)
        # Every slot came back: more connections one after another than max_connections.
        for i in range(250):
            with connect_tcp(("127.0.0.1", port), timeout=5) as s:
                echo_roundtrip(s, b"%d" % i, timeout=5)
    finally:
        for c in clients:
            c.close()
        _stop(proc, stderr)
