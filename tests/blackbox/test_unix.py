"""Unix-socket listeners: stale socket files, non-socket files, mode, cleanup."""

from __future__ import annotations

import os
import signal
import socket
import stat

import pytest

from conftest import (
    EX_OK,
    EX_STARTUP,
    connect_unix,
    echo_roundtrip,
    is_socket,
    make_config,
    tail,
    unix_listener,
)


def test_stale_socket_file_is_replaced(daemon, short_tmp):
    path = short_tmp / "echo.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # leaves the socket file behind, nobody listening
    assert is_socket(path)
    with pytest.raises(ConnectionRefusedError):
        connect_unix(path, timeout=1)  # stale: nobody listens
    daemon.start(make_config(unix_listener("echo-unix", "echo", path)))
    assert is_socket(path), f"{path} is not a socket after start-up"
    with connect_unix(path) as s:
        echo_roundtrip(s, b"through the replaced socket\n")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


def test_regular_file_at_socket_path_is_left_untouched_and_startup_fails(daemon, short_tmp):
    path = short_tmp / "precious.sock"
    content = b"precious data, not a socket\n" * 10
    path.write_bytes(content)
    os.chmod(path, 0o640)
    before = os.lstat(path)
    daemon.start(make_config(unix_listener("echo-unix", "echo", path)), wait_ready=False)
    daemon.wait(timeout=10, returncode=EX_STARTUP)
    after = os.lstat(path)
    assert stat.S_ISREG(after.st_mode), f"{path} is no longer a regular file"
    assert path.read_bytes() == content, f"content of {path} was changed"
    assert after.st_ino == before.st_ino, f"{path} was replaced (inode changed)"
    assert stat.S_IMODE(after.st_mode) == 0o640, f"mode of {path} changed to {oct(stat.S_IMODE(after.st_mode))}"
    err = daemon.stderr_text
    assert "echo-unix" in err, f"error does not name the listener\n--- stderr ---\n{tail(err)}"
    assert str(path) in err, f"error does not name the path {path}\n--- stderr ---\n{tail(err)}"


@pytest.mark.parametrize("mode", ["0600", "0660", "0666"])
def test_socket_file_mode_is_honored(daemon, short_tmp, mode):
    path = short_tmp / "mode.sock"
    daemon.start(make_config(unix_listener("echo-unix", "echo", path, mode=mode)))
    actual = stat.S_IMODE(os.stat(path).st_mode)
    assert actual == int(mode, 8), f'"mode": "{mode}" but the socket file has mode {actual:04o}'
    with connect_unix(path) as s:
        echo_roundtrip(s, b"mode ok\n")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_socket_file_is_removed_after_clean_exit(daemon, short_tmp, sig):
    path = short_tmp / "gone.sock"
    daemon.start(make_config(unix_listener("echo-unix", "echo", path)))
    with connect_unix(path) as s:
        echo_roundtrip(s, b"bye\n")
    daemon.stop(sig, timeout=10, returncode=EX_OK)
    assert not os.path.lexists(path), f"{path} still exists after a clean exit"
