"""File-descriptor exhaustion (ARCHITECTURE §6, CS-21): accept backs off and recovers by itself."""

from __future__ import annotations

import resource
import socket
import subprocess
import time

from conftest import connect_tcp, echo_roundtrip, free_port, make_config, tcp_listener, write_config


def _limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))


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
    config = make_config(tcp_listener("echo", "echo", port=port))
    path = write_config(tmp_path / "tulipd.json", config)
    stderr = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(
        [str(tulipd_bin), "run", "--config", str(path)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        preexec_fn=_limit_fds, start_new_session=True,
    )
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
        # Recovery: within a few backoff periods a fresh connection is served again.
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
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        stderr.close()
