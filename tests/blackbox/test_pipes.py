"""`pipe` listeners: a FIFO echo that survives writers coming and going, FIFO creation and mode,
and a non-FIFO at the path."""

from __future__ import annotations

import errno
import os
import select
import signal
import stat
import threading
import time

import pytest

from conftest import EX_OK, EX_STARTUP, make_config, tail

TIMEOUT = 10.0


def pipe_listener(name, protocol, read=None, write=None, mode=None):
    body = {}
    if read is not None:
        body["read"] = str(read)
    if write is not None:
        body["write"] = str(write)
    if mode is not None:
        body["mode"] = mode
    return {"name": name, "protocol": protocol, "pipe": body}


def wait_for(condition, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_fifo_echo(daemon, tmp, **kwargs):
    read, write = tmp / "in.fifo", tmp / "out.fifo"
    daemon.start(make_config(pipe_listener("fifo", "echo", read, write, **kwargs)))
    wait_for(lambda: "tulipd ready" in daemon.stderr_text, "tulipd ready")
    return read, write


def write_once(path, data: bytes):
    """Opens the FIFO for writing (retrying while the daemon reopens it), writes, closes."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            break
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    try:
        os.set_blocking(fd, True)
        os.write(fd, data)
    finally:
        os.close(fd)


def read_exactly(fd, count: int) -> bytes:
    data = b""
    deadline = time.monotonic() + TIMEOUT
    while len(data) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out: got {data!r}, wanted {count} bytes"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if chunk:
                data += chunk
            else:
                time.sleep(0.01)  # no writer at this instant
    return data


def test_fifo_echo_survives_sequential_writers(daemon, short_tmp):
    read, write = start_fifo_echo(daemon, short_tmp)
    out = os.open(write, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for i in range(20):
            line = f"line {i} from writer {i}\n".encode()
            write_once(read, line)
            assert read_exactly(out, len(line)) == line
    finally:
        os.close(out)
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


def test_fifo_echo_with_concurrent_writers(daemon, short_tmp):
    read, write = start_fifo_echo(daemon, short_tmp)
    out = os.open(write, os.O_RDONLY | os.O_NONBLOCK)
    lines = [f"concurrent writer {i}\n".encode() for i in range(5)]
    errors = []

    def writer(line):
        try:
            write_once(read, line)
        except Exception as e:  # reported below
            errors.append(e)

    try:
        threads = [threading.Thread(target=writer, args=(line,)) for line in lines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not errors, errors
        got = read_exactly(out, sum(len(line) for line in lines))
        assert sorted(got.splitlines(keepends=True)) == sorted(lines)
        # Still serving afterwards.
        write_once(read, b"after\n")
        assert read_exactly(out, 6) == b"after\n"
    finally:
        os.close(out)
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)


@pytest.mark.parametrize("mode", ["0600", "0640"])
def test_fifos_are_created_with_mode(daemon, short_tmp, mode):
    read, write = start_fifo_echo(daemon, short_tmp, mode=mode)
    for path in (read, write):
        st = os.lstat(path)
        assert stat.S_ISFIFO(st.st_mode), f"{path} is not a FIFO"
        assert stat.S_IMODE(st.st_mode) == int(mode, 8), f"{path} has mode {oct(stat.S_IMODE(st.st_mode))}"
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
    assert stat.S_ISFIFO(os.lstat(read).st_mode), "FIFOs stay after a stop"


def test_regular_file_at_fifo_path_is_left_untouched_and_startup_fails(daemon, short_tmp):
    path = short_tmp / "precious.fifo"
    content = b"precious data, not a FIFO\n"
    path.write_bytes(content)
    before = os.lstat(path)
    daemon.start(
        make_config(pipe_listener("fifo", "echo", path, short_tmp / "out.fifo")),
        wait_ready=False,
    )
    daemon.wait(timeout=10, returncode=EX_STARTUP)
    after = os.lstat(path)
    assert stat.S_ISREG(after.st_mode) and after.st_ino == before.st_ino
    assert path.read_bytes() == content
    err = daemon.stderr_text
    assert "fifo" in err and str(path) in err, f"error does not name listener and path\n{tail(err)}"


def test_discard_reads_a_fifo_only(daemon, short_tmp):
    read = short_tmp / "in.fifo"
    daemon.start(make_config(pipe_listener("sink", "discard", read=read)))
    wait_for(lambda: "tulipd ready" in daemon.stderr_text, "tulipd ready")
    for i in range(3):
        write_once(read, b"dropped\n")
    daemon.stop(signal.SIGTERM, timeout=10, returncode=EX_OK)
