#!/usr/bin/env python3
"""TLS load client of bench-tls.sh, on uvloop (asyncio's own loop with --asyncio).

Two modes against a TLS echo server on 127.0.0.1:

* ``handshakes``: CONCURRENCY tasks each loop connect → full TLS handshake (a new context-less
  session every time, so no resumption) → close (close_notify both ways, ``wait_closed``); counts
  completed cycles.
* ``echo``: CONNECTIONS connections each ping-pong SIZE random bytes (write, then read exactly SIZE
  back); counts round trips.

After WARMUP seconds the measured window opens for DURATION seconds; with ``--server-pid`` the
server's utime+stime (/proc/PID/stat, clock ticks) is read at both edges, so operations and server
CPU cover the same interval. Prints one JSON object on stdout. Every run stops by itself: the tasks
are cancelled at the window's end, and the whole run is bounded by WARMUP + DURATION + 10 s.
"""

import argparse
import asyncio
import json
import os
import resource
import ssl
import sys
import time


def server_ticks(pid):
    if not pid:
        return None
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def client_cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Counter:
    def __init__(self):
        self.count = 0
        self.errors = 0
        self.measuring = False

    def done(self):
        if self.measuring:
            self.count += 1


async def handshake_loop(args, ctx, counter):
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname="localhost")
            writer.close()
            await writer.wait_closed()
            counter.done()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            counter.errors += 1
            await asyncio.sleep(0.01)


async def echo_loop(args, ctx, counter):
    payload = os.urandom(args.size)
    reader, writer = await asyncio.open_connection("127.0.0.1", args.port, ssl=ctx, server_hostname="localhost")
    while True:
        writer.write(payload)
        got = await reader.readexactly(args.size)
        if got != payload:
            raise RuntimeError("echo mismatch")
        counter.done()


async def run(args):
    ctx = ssl.create_default_context(cafile=args.ca)
    counter = Counter()
    if args.mode == "handshakes":
        tasks = [asyncio.create_task(handshake_loop(args, ctx, counter)) for _ in range(args.concurrency)]
    else:
        tasks = [asyncio.create_task(echo_loop(args, ctx, counter)) for _ in range(args.connections)]
    await asyncio.sleep(args.warmup)
    for task in tasks:
        if task.done():
            task.result()  # a connection that failed during warm-up fails the run
    ticks0, cpu0, t0 = server_ticks(args.server_pid), client_cpu(), time.monotonic()
    counter.measuring = True
    await asyncio.sleep(args.duration)
    counter.measuring = False
    ticks1, cpu1, t1 = server_ticks(args.server_pid), client_cpu(), time.monotonic()
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if failed:
        raise failed[0].exception()
    seconds = t1 - t0
    tck = os.sysconf("SC_CLK_TCK")
    result = {
        "operations": counter.count,
        "seconds": seconds,
        "operations_per_second": counter.count / seconds,
        "errors": counter.errors,
        "client_cpu_seconds": cpu1 - cpu0,
    }
    if ticks0 is not None:
        server_cpu = (ticks1 - ticks0) / tck
        result["server_cpu_seconds"] = server_cpu
        result["server_cpu_us_per_operation"] = server_cpu / counter.count * 1e6 if counter.count else None
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("handshakes", "echo"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True, help="PEM CA file that signed the server's certificate")
    parser.add_argument("--server-pid", type=int)
    parser.add_argument("--concurrency", type=int, default=8, help="handshake loops at once")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--duration", type=float, default=5)
    parser.add_argument("--asyncio", action="store_true", help="asyncio's own loop instead of uvloop")
    args = parser.parse_args()
    if args.warmup + args.duration > 20:
        parser.error("a run is bounded to 20 s: --warmup + --duration <= 20")

    async def bounded():
        return await asyncio.wait_for(run(args), args.warmup + args.duration + 10)

    if args.asyncio:
        result = asyncio.run(bounded())
    else:
        import uvloop

        result = uvloop.run(bounded())
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
