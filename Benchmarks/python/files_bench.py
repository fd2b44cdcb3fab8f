#!/usr/bin/env python3
"""The pieces bench-files.sh runs: a fetch client, a timed local command, and two yardstick servers.

    files_bench.py fetch --port P --path REL --expect-size N [--server-pid PID]
    files_bench.py local --expect-size N -- CMD...
    files_bench.py serve --mode sendfile|readwrite --root DIR --port P

Each of `fetch` and `local` prints one JSON line. CPU is measured with nanosecond resolution where it
can be: a server's CPU is read from its process CPU clock (`clock_gettime` on the clock id Linux's
`clock_getcpuclockid(pid)` returns: utime + stime of every thread, the scheduler's own runtime) before
and after the transfer, next to the coarser `/proc/PID/stat` ticks; a local command's CPU is its
`wait4` rusage.

fetch speaks tulipd's `files` protocol: it sends `REL\\n`, expects `OK <size>\\n` and then exactly `size`
bytes before the server closes, reading them with `recv_into` into one reused 1 MiB bytearray and
discarding them (one system call per MiB at most, so the interpreter adds next to nothing to the
kernel's copy). The clock runs from the request to the server's close. Exit status:
0 done; 1 a wrong reply, a short or long body, a stall longer than --stall-timeout, or a failed command.
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time

GIB = 1 << 30
BUFFER = 1 << 20


def die(message):
    print(f"files_bench: {message}", file=sys.stderr)
    sys.exit(1)


def process_cpu_clock(pid):
    """Linux's clock id for `pid`'s process-wide CPU time (as `clock_getcpuclockid` makes it)."""
    return ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def proc_ticks(pid):
    """utime + stime of `pid` in clock ticks, /proc/PID/stat fields 14 and 15."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def self_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ServerCPU:
    """The server's CPU seconds (ns clock) and ticks between start() and stop()."""

    def __init__(self, pid):
        self.pid = pid

    def start(self):
        if self.pid:
            self.ticks = proc_ticks(self.pid)
            self.clock = time.clock_gettime(process_cpu_clock(self.pid))

    def stop(self, out):
        if self.pid:
            clock = time.clock_gettime(process_cpu_clock(self.pid))
            ticks = proc_ticks(self.pid)
            out.update(
                server_pid=self.pid,
                server_cpu_seconds=clock - self.clock,
                server_cpu_ticks=ticks - self.ticks,
                clock_ticks_per_second=os.sysconf("SC_CLK_TCK"),
            )


def read_header(sock, deadline):
    """Reads up to and including the first newline; returns (header, bytes of the body already read)."""
    data = b""
    while b"\n" not in data:
        if len(data) > 4096 or time.monotonic() > deadline:
            die(f"no reply header (got {data[:80]!r})")
        chunk = sock.recv(4096)
        if not chunk:
            die(f"closed before the header (got {data[:80]!r})")
        data += chunk
    header, rest = data.split(b"\n", 1)
    return header.decode("ascii", "replace"), len(rest)


def fetch(args):
    out = {"client": "python recv_into, 1 MiB bytearray", "path": args.path}
    cpu = ServerCPU(args.server_pid)
    client_cpu_before = self_cpu()
    sock = socket.create_connection((args.host, args.port), timeout=args.stall_timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cpu.start()
    started = time.monotonic()
    sock.sendall(args.path.encode() + b"\n")
    header, received = read_header(sock, started + args.stall_timeout)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    while True:
        count = sock.recv_into(view)  # a stall raises socket.timeout after --stall-timeout
        if count == 0:
            break
        received += count
    seconds = time.monotonic() - started
    cpu.stop(out)
    sock.close()

    if header != f"OK {args.expect_size}":
        die(f"reply header {header!r}, expected 'OK {args.expect_size}'")
    if received != args.expect_size:
        die(f"received {received} body bytes, expected {args.expect_size}")
    out.update(
        bytes=received,
        seconds=seconds,
        gib_per_second=received / GIB / seconds,
        client_cpu_seconds=self_cpu() - client_cpu_before,
    )
    print(json.dumps(out))


def local(args):
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        die("local: no command")
    started = time.monotonic()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except BaseException:
        process.kill()
        raise
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        die(f"{command[0]} exit {process.returncode}")
    print(
        json.dumps(
            {
                "command": " ".join(command),
                "bytes": args.expect_size,
                "seconds": seconds,
                "gib_per_second": args.expect_size / GIB / seconds,
                "process_cpu_seconds": usage.ru_utime + usage.ru_stime,
            }
        )
    )


def serve(args):
    """One connection at a time: read `REL\\n`, send `OK <size>\\n` and the file, close (benchmark only)."""
    listener = socket.create_server(("127.0.0.1", args.port), reuse_port=False)
    print("ready", flush=True)
    buffer = bytearray(BUFFER)
    view = memoryview(buffer)
    while True:
        conn, _ = listener.accept()
        with conn:
            request = b""
            while not request.endswith(b"\n") and len(request) < 4096:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            name = request.decode(errors="replace").strip()
            if not name or name.startswith("/") or ".." in name.split("/"):
                conn.sendall(b"ERR refused\n")
                continue
            try:
                fd = os.open(os.path.join(args.root, name), os.O_RDONLY | os.O_NOFOLLOW)
            except OSError as error:
                conn.sendall(f"ERR {error.strerror}\n".encode())
                continue
            try:
                size = os.fstat(fd).st_size
                conn.sendall(f"OK {size}\n".encode())
                offset = 0
                if args.mode == "sendfile":
                    while offset < size:
                        sent = os.sendfile(conn.fileno(), fd, offset, size - offset)
                        if sent == 0:
                            break
                        offset += sent
                else:
                    while offset < size:
                        count = os.readv(fd, [view])
                        if count == 0:
                            break
                        conn.sendall(view[:count])
                        offset += count
            except OSError:
                pass
            finally:
                os.close(fd)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("fetch")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--expect-size", type=int, required=True)
    p.add_argument("--server-pid", type=int)
    p.add_argument("--stall-timeout", type=float, default=30, help="seconds without progress before failing")
    p = sub.add_parser("local")
    p.add_argument("--expect-size", type=int, required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("serve")
    p.add_argument("--mode", choices=("sendfile", "readwrite"), required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    {"fetch": fetch, "local": local, "serve": serve}[args.action](args)


if __name__ == "__main__":
    main()
