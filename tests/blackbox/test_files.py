"""The `files` plugin: byte-exact sendfile of large sparse files, and refusal of every request
that would leave the root or name anything but a regular file."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    EX_CONFIG,
    KiB,
    MiB,
    Daemon,
    check_config,
    make_config,
    recv_until_eof,
    tcp_listener,
    unix_listener,
)

GiB = 1024 * MiB
BIG_SIZE = 1 * GiB
BIG_MARKERS = {0: b"TULIP-START", 4096: b"\x01\x02\x03", 300 * MiB + 7: b"middle", BIG_SIZE - 9: b"TULIP-END"}


def make_sparse(path: Path, size: int, markers: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in markers.items():
            f.seek(offset)
            f.write(data)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def files_daemon(tulipd_bin):
    base = Path(tempfile.mkdtemp(prefix="tbf-", dir="/tmp"))
    root = base / "root"
    outside = base / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret outside root\n")
    (root / "small.txt").write_bytes(b"hello, files\n")
    (root / "empty").write_bytes(b"")
    (root / "sub").mkdir()
    (root / "sub" / "nested.txt").write_bytes(b"nested\n")
    make_sparse(root / "big.bin", BIG_SIZE, BIG_MARKERS)
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink(outside, root / "out")
    os.symlink(outside / "secret.txt", root / "secret-link")
    os.symlink("small.txt", root / "inside-link")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(root / "sock"))
    d = Daemon(tulipd_bin, base / "work", "files")
    config = make_config(
        tcp_listener("files", "files", options={"root": str(root)}),
        unix_listener("files-unix", "files", base / "files.sock", options={"root": str(root)}),
    )
    try:
        d.start(config)
        d.root = root
        yield d
    finally:
        d.kill()
        sock.close()
        shutil.rmtree(base, ignore_errors=True)


def request(d: Daemon, line: bytes, listener: str = "files", timeout: float = 10.0) -> bytes:
    s = d.connect(listener)
    try:
        s.sendall(line)
        return recv_until_eof(s, timeout=timeout)
    finally:
        s.close()


def test_small_file_is_sent_exactly_then_the_connection_closes(files_daemon):
    assert request(files_daemon, b"small.txt\n") == b"OK 13\nhello, files\n"
    assert request(files_daemon, b"sub/nested.txt\n", "files-unix") == b"OK 7\nnested\n"
    assert request(files_daemon, b"empty\n") == b"OK 0\n"


@pytest.mark.deadline(120)
def test_one_gib_sparse_file_is_byte_exact(files_daemon):
    expected = file_sha256(files_daemon.root / "big.bin")
    s = files_daemon.connect("files", timeout=30)
    try:
        s.sendall(b"big.bin\n")
        header = b""
        while not header.endswith(b"\n"):
            part = s.recv(1)
            assert part, f"EOF inside the header {header!r}"
            header += part
        assert header == b"OK %d\n" % BIG_SIZE
        h = hashlib.sha256()
        received = 0
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, f"only {received} of {BIG_SIZE} bytes within 60 s"
            chunk = s.recv(4 * MiB)
            if not chunk:
                break
            received += len(chunk)
            h.update(chunk)
        assert received == BIG_SIZE
        assert h.hexdigest() == expected
    finally:
        s.close()


HOSTILE = [
    b"../outside/secret.txt\n",
    b"../../../../etc/passwd\n",
    b"sub/../../outside/secret.txt\n",
    b"sub/..\n",
    b"./small.txt\n",
    b"sub/./nested.txt\n",
    b"/etc/passwd\n",
    None,  # the absolute path of small.txt, filled in below
    b"//etc/passwd\n",
    b"passwd\n",
    b"out/secret.txt\n",
    b"secret-link\n",
    b"inside-link\n",
    b"fifo\n",
    b"sock\n",
    b"sub\n",
    b"sub/\n",
    b".\n",
    b"..\n",
    b"\n",
    b"small.txt\x00\n",
    b"\x00../etc/passwd\n",
    b"sub//nested.txt\n",
    b"\xff\xfe\n",
    b"\xc0\xae\xc0\xae/outside/secret.txt\n",
    b"small\ttxt\n",
    b"..\\..\\etc\\passwd\n",
    b"missing.txt\n",
    b"small.txt/x\n",
    b"x" * (5 * KiB) + b"\n",
    b"a/" * 3000 + b"\n",
]


def test_thirty_hostile_requests_are_refused_and_the_daemon_keeps_serving(files_daemon):
    hostile = [line if line is not None else str(files_daemon.root / "small.txt").encode() + b"\n" for line in HOSTILE]
    assert len(hostile) >= 30
    for line in hostile:
        reply = request(files_daemon, line, timeout=5)
        assert reply.startswith(b"ERR "), f"{line[:60]!r} got {reply[:80]!r}"
        assert reply.count(b"\n") == 1 and reply.endswith(b"\n"), f"{line[:60]!r} got {reply[:80]!r}"
        assert b"secret" not in reply and b"root:" not in reply
    files_daemon.wait_for_stderr(r"refused request")
    assert request(files_daemon, b"small.txt\n") == b"OK 13\nhello, files\n"


def test_a_long_line_without_newline_is_refused_at_once(files_daemon):
    s = files_daemon.connect("files")
    try:
        s.sendall(b"y" * (8 * KiB))  # no newline: refused once over 4 KiB
        reply = recv_until_eof(s, timeout=5)
    finally:
        s.close()
    assert reply.startswith(b"ERR ")


def test_symlink_to_etc_passwd_is_refused(files_daemon):
    reply = request(files_daemon, b"passwd\n")
    assert reply.startswith(b"ERR ") and b"root:" not in reply


def test_fifo_is_refused_without_hanging(files_daemon):
    start = time.monotonic()
    reply = request(files_daemon, b"fifo\n", timeout=5)
    assert reply.startswith(b"ERR ")
    assert time.monotonic() - start < 5


@pytest.mark.deadline(60)
def test_a_file_that_shrinks_during_the_transfer_ends_the_connection_early(files_daemon):
    size = 256 * MiB
    path = files_daemon.root / "shrinking.bin"
    markers = {0: b"begin", 600 * KiB: b"marker"}
    make_sparse(path, size, markers)
    try:
        s = files_daemon.connect("files", timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * KiB)
        s.sendall(b"shrinking.bin\n")
        received = bytearray()
        while len(received) < 1 * MiB + 16:  # read slowly
            chunk = s.recv(16 * KiB)
            assert chunk, "EOF before the truncation"
            received += chunk
            time.sleep(0.0005)
        os.truncate(path, 3 * 512 * KiB)
        deadline = time.monotonic() + 20
        while True:
            assert time.monotonic() < deadline, "the connection did not end after the file shrank"
            try:
                chunk = s.recv(1 * MiB)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        s.close()
        header, _, body = bytes(received).partition(b"\n")
        assert header == b"OK %d" % size
        assert 1 * MiB <= len(body) < size  # ended early, never padded past the original
        expected = bytearray(len(body))
        for offset, data in markers.items():
            expected[offset : offset + len(data)] = data
        assert body == bytes(expected)
        # The daemon still serves.
        assert request(files_daemon, b"small.txt\n") == b"OK 13\nhello, files\n"
    finally:
        path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "options, message",
    [({}, "listeners[0].options.root"), ({"root": "/nonexistent-tulip"}, "listeners[0].options.root"),
     ({"root": "/etc/passwd"}, "listeners[0].options.root")],
)
def test_root_must_be_an_existing_directory(tmp_path, options, message):
    r = check_config(make_config(tcp_listener("files", "files", options=options)), tmp_path)
    assert r.returncode == EX_CONFIG, r.stderr
    assert message in r.stderr
