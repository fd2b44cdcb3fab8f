#!/usr/bin/env python3
"""CPython asyncio echo server: the asyncio yardstick of Tulip's echo benchmark.

The textbook shape: an ``asyncio.Protocol`` whose ``data_received`` calls ``transport.write(data)``.
With ``--uvloop`` the same code runs on uvloop's loop. Listens on ``--tcp HOST:PORT`` and/or
``--unix PATH`` (backlog 256; asyncio and uvloop set TCP_NODELAY on accepted TCP sockets themselves),
prints ``ready`` on stdout once bound, and runs until SIGTERM or SIGINT. With ``--certfile`` and
``--keyfile`` it serves TLS (``ssl.SSLContext(PROTOCOL_TLS_SERVER)``, asyncio's own TLS layer),
the yardstick of bench-tls.sh.
"""

import argparse
import asyncio
import os
import signal
import ssl
import stat
import sys


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        # Returning a false value closes the transport, like an echo server should on EOF.
        return False


def parse_host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def remove_stale_socket(path):
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


async def serve(args):
    loop = asyncio.get_running_loop()
    tls = None
    if args.certfile:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.certfile, args.keyfile)
    servers = []
    if args.tcp:
        host, port = args.tcp
        servers.append(
            await loop.create_server(EchoProtocol, host, port, backlog=256, reuse_address=True, ssl=tls)
        )
    if args.unix:
        remove_stale_socket(args.unix)
        servers.append(await loop.create_unix_server(EchoProtocol, args.unix, backlog=256, ssl=tls))

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    print("ready", flush=True)
    await stop.wait()

    for server in servers:
        server.close()
    # Connections are left to die with the process; wait_closed() would wait for them since 3.12.


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tcp", type=parse_host_port, metavar="HOST:PORT", help="listen on TCP HOST:PORT")
    parser.add_argument("--unix", metavar="PATH", help="listen on this unix socket path")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's own loop")
    parser.add_argument("--certfile", help="serve TLS with this PEM certificate chain (needs --keyfile)")
    parser.add_argument("--keyfile", help="the PEM private key of --certfile")
    args = parser.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if not args.tcp and not args.unix:
        parser.error("give --tcp HOST:PORT and/or --unix PATH")

    if args.uvloop:
        import uvloop

        if hasattr(uvloop, "run"):
            uvloop.run(serve(args))
        else:  # uvloop < 0.18
            uvloop.install()
            asyncio.run(serve(args))
    else:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
