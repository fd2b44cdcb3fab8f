"""Fixtures and helpers for the tulipd black-box suite.

The suite drives the real built `tulipd` binary with real clients (Python
sockets, asyncio, socat) over 127.0.0.1 and unix sockets in temp dirs.

Binary: env TULIPD, default <repo>/.build/debug/tulipd. A missing binary skips
every test, except under CI=true where it is a failure.

Every test runs under a SIGALRM deadline (default DEFAULT_TEST_TIMEOUT seconds,
override with @pytest.mark.deadline(SECONDS); setup gets the same budget,
teardown TEARDOWN_TIMEOUT). Every loop in the helpers is bounded in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

# --------------------------------------------------------------------------
# Constants

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DEFAULT_BINARY = REPO / ".build" / "debug" / "tulipd"
TULIPD = Path(os.environ.get("TULIPD") or DEFAULT_BINARY)
IN_CI = os.environ.get("CI", "").strip().lower() == "true"

EX_OK = 0
EX_STARTUP = 1
EX_CONFIG = 78

BUILTIN_PLUGINS = ("echo", "discard", "chargen", "daytime", "time")

DEFAULT_TEST_TIMEOUT = 60  # seconds, per test (SIGALRM)
READY_TIMEOUT = 10.0  # seconds to wait for every listener to accept
CLI_TIMEOUT = 20.0  # seconds for `tulipd check` / `tulipd plugins`
STDERR_TAIL_LINES = 60

KiB = 1024
MiB = 1024 * 1024

# Environment variables that would make the daemon believe it runs under
# systemd (journald logging, sd_notify, socket activation, watchdog).
_SYSTEMD_ENV = (
    "JOURNAL_STREAM",
    "NOTIFY_SOCKET",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "INVOCATION_ID",
)


# --------------------------------------------------------------------------
# pytest plumbing: markers, binary check, deadline, failure reports


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deadline(seconds): per-test SIGALRM timeout (default %d s)" % DEFAULT_TEST_TIMEOUT
    )
    config.addinivalue_line(
        "markers",
        "not_supported_yet: asserts a listener kind is rejected as 'not supported yet'; "
        "delete these tests when the kind is implemented",
    )


def _binary_problem() -> str | None:
    if not TULIPD.exists():
        return f"tulipd binary not found at {TULIPD} (set TULIPD=/path/to/tulipd or build it first)"
    if not TULIPD.is_file():
        return f"tulipd path {TULIPD} is not a regular file"
    if not os.access(TULIPD, os.X_OK):
        return f"tulipd binary at {TULIPD} is not executable"
    return None


@pytest.fixture(scope="session", autouse=True)
def tulipd_bin() -> Path:
    """The tulipd binary. Session-scoped and autouse so that a missing binary
    skips (or, under CI=true, fails) every test before any daemon starts."""
    problem = _binary_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(problem)
    return TULIPD


class DeadlineExceeded(Exception):
    """Raised from SIGALRM when a test phase exceeds its deadline."""


TEARDOWN_TIMEOUT = 30  # seconds for a test's fixture teardown


def _deadline_seconds(item) -> int:
    marker = item.get_closest_marker("deadline")
    return int(marker.args[0]) if marker else DEFAULT_TEST_TIMEOUT


@contextlib.contextmanager
def _alarm(seconds: int, what: str):
    """SIGALRM-based timeout around one test phase. The alarm is armed only
    while the phase runs (never while pytest builds its reports)."""

    def on_alarm(signum, frame):
        raise DeadlineExceeded(f"{what} exceeded its deadline of {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _alarm(_deadline_seconds(item), "test setup"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _alarm(_deadline_seconds(item), "test"):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    with _alarm(TEARDOWN_TIMEOUT, "test teardown"):
        yield


# Every daemon process ever spawned, so that nothing outlives the session even
# if a teardown was interrupted.
_ALL_PROCESSES: list[subprocess.Popen] = []


def pytest_sessionfinish(session, exitstatus):
    for proc in _ALL_PROCESSES:
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    daemons: list[Daemon] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Daemon):
            daemons.append(value)
        elif isinstance(value, DaemonFactory):
            daemons.extend(value.daemons)
    seen = set()
    for d in daemons:
        if id(d) in seen or d.proc is None:
            continue
        seen.add(id(d))
        report.sections.append(
            (f"tulipd [{d.label}] pid={d.pid} state={d.describe_state()} stderr tail", d.stderr_tail())
        )


# --------------------------------------------------------------------------
# Small utilities


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (bind port 0, read it, close)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_config(path: Path | str, config: Any) -> Path:
    """Write `config` (dict -> JSON, str -> verbatim) to `path`."""
    path = Path(path)
    if isinstance(config, (bytes, bytearray)):
        path.write_bytes(bytes(config))
    elif isinstance(config, str):
        path.write_text(config)
    else:
        path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def rss_kib(pid: int) -> int:
    """Resident set size of `pid` in KiB (VmRSS from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS line in /proc/{pid}/status (process gone or a zombie?)")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in _SYSTEMD_ENV:
        env.pop(key, None)
    return env


def tail(text: str, lines: int = STDERR_TAIL_LINES) -> str:
    parts = text.splitlines()
    if len(parts) > lines:
        parts = [f"... ({len(parts) - lines} earlier lines omitted)"] + parts[-lines:]
    return "\n".join(parts)


def first_difference(a: bytes, b: bytes) -> int | None:
    """Index of the first byte where `a` and `b` differ (or where the shorter
    one ends); None if they are equal."""
    if a == b:
        return None
    n = min(len(a), len(b))
    lo, hi = 0, n  # invariant: a[:lo] == b[:lo]
    while lo < hi:
        mid = (lo + hi) // 2
        if a[lo : mid + 1] == b[lo : mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    return lo


def first_mismatch(expected: bytes, got: bytes) -> str:
    """A readable description of where two byte strings differ."""
    i = first_difference(expected, got)
    if i is None:
        return "identical"
    if i >= min(len(expected), len(got)):
        return f"length differs: expected {len(expected)} bytes, got {len(got)} (common prefix is equal)"
    return (
        f"first difference at byte offset {i} (expected {len(expected)} bytes, got {len(got)}): "
        f"expected {expected[i:i + 16]!r}, got {got[i:i + 16]!r}"
    )


# --------------------------------------------------------------------------
# Config builders


def tcp_listener(
    name: str,
    protocol: str,
    port: int | None = None,
    *,
    host: str = "127.0.0.1",
    options: dict | None = None,
    **tcp_extra: Any,
) -> dict:
    tcp = {"host": host, "port": port if port is not None else free_port(host)}
    tcp.update(tcp_extra)
    listener: dict[str, Any] = {"name": name, "protocol": protocol, "tcp": tcp}
    if options is not None:
        listener["options"] = options
    return listener


def unix_listener(
    name: str, protocol: str, path: Path | str, *, mode: str | None = None, options: dict | None = None
) -> dict:
    unix: dict[str, Any] = {"path": str(path)}
    if mode is not None:
        unix["mode"] = mode
    listener: dict[str, Any] = {"name": name, "protocol": protocol, "unix": unix}
    if options is not None:
        listener["options"] = options
    return listener


def make_config(*listeners: dict, grace: float = 10, level: str = "info", fmt: str = "text") -> dict:
    return {
        "log": {"level": level, "format": fmt},
        "shutdown": {"grace_seconds": grace},
        "listeners": list(listeners),
    }


# --------------------------------------------------------------------------
# Running the CLI (check / plugins)


def run_tulipd(
    args: Iterable[str], timeout: float = CLI_TIMEOUT, binary: Path = TULIPD
) -> subprocess.CompletedProcess:
    """Run tulipd (or `binary`, such as tulipd-test) to completion (for `check`, `plugins`, ...)
    with text output."""
    argv = [str(binary), *map(str, args)]
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=clean_env(),
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as e:
        raise AssertionError(
            f"{argv} did not finish within {timeout} s\nstdout:\n{tail(_as_text(e.stdout))}\n"
            f"stderr:\n{tail(_as_text(e.stderr))}"
        ) from None


def _as_text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    if isinstance(b, bytes):
        return b.decode("utf-8", "replace")
    return b


def describe_result(r: subprocess.CompletedProcess) -> str:
    return (
        f"argv: {r.args}\nexit code: {r.returncode}\n--- stdout ---\n{tail(r.stdout)}\n"
        f"--- stderr ---\n{tail(r.stderr)}"
    )


def check_config(config: Any, workdir: Path, filename: str = "tulipd.json") -> subprocess.CompletedProcess:
    path = write_config(Path(workdir) / filename, config)
    return run_tulipd(["check", "--config", str(path)])


# --------------------------------------------------------------------------
# The daemon


_SIGTERM = signal.SIGTERM  # (the Daemon.signal method shadows the module inside the class)


class DaemonExited(AssertionError):
    pass


def _connect_host(host: str | None) -> str:
    if host in (None, "", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class Daemon:
    """One tulipd process. start(config) -> ready; stop()/signal()/wait()."""

    def __init__(self, binary: Path, workdir: Path, label: str = "tulipd"):
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.label = label
        self.proc: subprocess.Popen | None = None
        self.config: dict | None = None
        self.config_path = self.workdir / f"{label}.json"
        self.stderr_path = self.workdir / f"{label}.stderr"
        self.stdout_path = self.workdir / f"{label}.stdout"
        self.argv: list[str] = []
        self.started_at: float | None = None
        self.exited_at: float | None = None
        # Prepended to the command line (e.g. systemd-socket-activate ...) and added to the
        # clean environment (e.g. NOTIFY_SOCKET), for the systemd tests.
        self.argv_prefix: list[str] = []
        self.extra_env: dict[str, str] = {}
        # Descriptors the daemon inherits (systemd's LISTEN_FDS, re-numbered by argv_prefix).
        self.pass_fds: tuple[int, ...] = ()

    # -- lifecycle --------------------------------------------------------

    def start(
        self,
        config: dict,
        *,
        args: list[str] | None = None,
        wait_ready: bool = True,
        retry_on_addr_in_use: bool = True,
        ready_timeout: float = READY_TIMEOUT,
    ) -> "Daemon":
        """Start tulipd with `config` (a dict). args defaults to
        ["run", "--config", CONFIG]; the string "{config}" in args is replaced
        by the config path. With wait_ready, waits until every tcp/unix
        listener accepts; on "address in use" it picks new TCP ports and tries
        once more (so tests must read ports back with port(name))."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.config = json.loads(json.dumps(config))  # private deep copy
        for attempt in (1, 2):
            self._spawn(args)
            if not wait_ready:
                return self
            try:
                self.wait_ready(ready_timeout)
                return self
            except DaemonExited:
                if attempt == 1 and retry_on_addr_in_use and self._stderr_says_addr_in_use():
                    self._rotate_logs()
                    self._reassign_tcp_ports()
                    continue
                raise
        raise AssertionError("unreachable")

    def _spawn(self, args: list[str] | None) -> None:
        write_config(self.config_path, self.config)
        if args is None:
            args = ["run", "--config", "{config}"]
        self.argv = (
            list(self.argv_prefix)
            + [str(self.binary)]
            + [a.replace("{config}", str(self.config_path)) for a in args]
        )
        with open(self.stderr_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**clean_env(), **self.extra_env},
                cwd=str(self.workdir),
                start_new_session=True,  # a ^C to pytest does not hit the daemon
                pass_fds=self.pass_fds,
            )
        _ALL_PROCESSES.append(self.proc)
        self.started_at = time.monotonic()
        self.exited_at = None

    def _rotate_logs(self) -> None:
        for p in (self.stderr_path, self.stdout_path):
            if p.exists():
                p.replace(p.with_name(p.name + ".attempt1"))

    def _stderr_says_addr_in_use(self) -> bool:
        text = self.stderr_text.lower()
        return "in use" in text or "eaddrinuse" in text

    def _reassign_tcp_ports(self) -> None:
        for listener in self.config.get("listeners", []):
            tcp = listener.get("tcp")
            if isinstance(tcp, dict) and isinstance(tcp.get("port"), int) and tcp["port"] != 0:
                tcp["port"] = free_port(_connect_host(tcp.get("host")))

    def endpoints(self) -> list[tuple[str, Any]]:
        """(kind, address) of every stream listener in the config."""
        result = []
        for listener in (self.config or {}).get("listeners", []):
            if isinstance(listener.get("tcp"), dict):
                tcp = listener["tcp"]
                result.append(("tcp", (_connect_host(tcp.get("host")), tcp["port"])))
            elif isinstance(listener.get("unix"), dict):
                result.append(("unix", listener["unix"]["path"]))
        return result

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        pending = self.endpoints()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._note_exit()
                raise DaemonExited(
                    f"tulipd exited with code {self.proc.returncode} before it was ready "
                    f"(waiting for {pending})\nargv: {self.argv}\n--- stderr tail ---\n{self.stderr_tail()}"
                )
            still = []
            for kind, addr in pending:
                if not _probe(kind, addr):
                    still.append((kind, addr))
            pending = still
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tulipd not ready after {timeout} s; not accepting on {pending}\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "daemon was never started"
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def poll(self) -> int | None:
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is not None:
            self._note_exit()
        return rc

    def alive(self) -> bool:
        return self.proc is not None and self.poll() is None

    def assert_alive(self, context: str = "") -> None:
        if not self.alive():
            raise AssertionError(
                f"tulipd is not running{(' ' + context) if context else ''}: exit code "
                f"{self.proc.returncode if self.proc else 'never started'}\n"
                f"--- stderr tail ---\n{self.stderr_tail()}"
            )

    def wait(self, timeout: float = 10.0, returncode: int | None = None) -> int:
        """Wait for exit (bounded); assert `returncode` if given. Returns the code."""
        assert self.proc is not None, "daemon was never started"
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tulipd still running {timeout} s after we started waiting for it to exit\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            time.sleep(0.02)
        self._note_exit()
        rc = self.proc.returncode
        if returncode is not None:
            assert rc == returncode, (
                f"tulipd exited with {rc}, expected {returncode}\n--- stderr tail ---\n{self.stderr_tail()}"
            )
        return rc

    def stop(self, sig: int = _SIGTERM, timeout: float = 10.0, returncode: int | None = EX_OK) -> int:
        self.signal(sig)
        return self.wait(timeout, returncode)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.poll() is not None:
            self._note_exit()

    def _note_exit(self) -> None:
        if self.exited_at is None:
            self.exited_at = time.monotonic()

    # -- introspection ----------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.poll() if self.proc else None

    @property
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    @property
    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        text = self.stderr_text
        return tail(text, lines) if text else "(stderr is empty)"

    def describe_state(self) -> str:
        if self.proc is None:
            return "never started"
        rc = self.proc.poll()
        return "running" if rc is None else f"exited({rc})"

    def listener(self, name: str) -> dict:
        for listener in (self.config or {}).get("listeners", []):
            if listener.get("name") == name:
                return listener
        raise KeyError(f"no listener named {name!r} in the config")

    def port(self, name: str) -> int:
        return self.listener(name)["tcp"]["port"]

    def addr(self, name: str) -> tuple[str, int]:
        tcp = self.listener(name)["tcp"]
        return (_connect_host(tcp.get("host")), tcp["port"])

    def unix_path(self, name: str) -> str:
        return self.listener(name)["unix"]["path"]

    def connect(self, name: str, timeout: float = 5.0) -> socket.socket:
        """A connected blocking socket (with timeout) to listener `name`."""
        listener = self.listener(name)
        if "tcp" in listener:
            return connect_tcp(self.addr(name), timeout)
        return connect_unix(self.unix_path(name), timeout)

    def rss_kib(self) -> int:
        self.assert_alive("(reading RSS)")
        return rss_kib(self.pid)

    def fd_count(self) -> int:
        self.assert_alive("(counting fds)")
        return fd_count(self.pid)

    def wait_for_stderr(self, pattern: str | re.Pattern, timeout: float = 5.0) -> re.Match:
        """Poll the stderr file until `pattern` (regex, MULTILINE) matches."""
        rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.stderr_text)
            if m:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tulipd stderr did not match {rx.pattern!r} within {timeout} s\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            time.sleep(0.05)


class DaemonFactory:
    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.workdir = Path(workdir)
        self.daemons: list[Daemon] = []

    def __call__(self, label: str | None = None) -> Daemon:
        label = label or f"tulipd{len(self.daemons)}"
        d = Daemon(self.binary, self.workdir / label, label)
        self.daemons.append(d)
        return d

    def cleanup(self) -> None:
        for d in self.daemons:
            d.kill()


def _probe(kind: str, addr: Any) -> bool:
    try:
        if kind == "tcp":
            s = connect_tcp(addr, timeout=0.5)
        else:
            s = connect_unix(addr, timeout=0.5)
    except OSError:
        return False
    s.close()
    return True


@pytest.fixture
def short_tmp():
    """A short temp dir (AF_UNIX paths are limited to 107 bytes; pytest's
    tmp_path can be longer). Removed afterwards."""
    d = tempfile.mkdtemp(prefix="tbb-", dir="/tmp")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon_factory(tulipd_bin, tmp_path):
    factory = DaemonFactory(tulipd_bin, tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    """A not-yet-started Daemon; call daemon.start(config)."""
    return daemon_factory("tulipd")


# --------------------------------------------------------------------------
# Socket helpers (blocking, always with timeouts)


def connect_tcp(addr: tuple[str, int], timeout: float = 5.0, *, rcvbuf: int | None = None) -> socket.socket:
    host, port = addr
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def connect_unix(path: str | Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(str(path))
    except BaseException:
        s.close()
        raise
    return s


def recv_exactly(s: socket.socket, n: int, timeout: float = 10.0) -> bytes:
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"received only {len(buf)} of {n} expected bytes within {timeout} s")
        s.settimeout(remaining)
        try:
            chunk = s.recv(min(n - len(buf), 256 * KiB))
        except socket.timeout:
            continue
        if not chunk:
            raise AssertionError(f"EOF after {len(buf)} of {n} expected bytes")
        buf += chunk
    return bytes(buf)


def recv_until_eof(s: socket.socket, timeout: float = 10.0, limit: int = 64 * MiB) -> bytes:
    """Read until the peer closes (recv returns b''). Fails on timeout or
    when more than `limit` bytes arrive."""
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"no EOF within {timeout} s (received {len(buf)} bytes so far: {bytes(buf[:80])!r}...)"
            )
        s.settimeout(remaining)
        try:
            chunk = s.recv(256 * KiB)
        except socket.timeout:
            continue
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise AssertionError(f"more than {limit} bytes received while waiting for EOF")


def expect_eof(s: socket.socket, timeout: float = 5.0, *, allow_reset: bool = False) -> str:
    """Assert the next recv is EOF (b''), within `timeout`. Returns "eof" or
    "reset" (the latter only if allow_reset)."""
    s.settimeout(timeout)
    try:
        data = s.recv(65536)
    except socket.timeout:
        raise AssertionError(f"expected EOF within {timeout} s, but the connection stayed open") from None
    except ConnectionResetError:
        if allow_reset:
            return "reset"
        raise AssertionError("expected a clean EOF (FIN), got a connection reset (RST)") from None
    assert data == b"", f"expected EOF, got {len(data)} more bytes: {data[:64]!r}"
    return "eof"


def set_linger_reset(s: socket.socket) -> None:
    """Make close() send RST instead of FIN."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def echo_roundtrip(s: socket.socket, payload: bytes, timeout: float = 10.0) -> None:
    """Send payload on a connected echo socket and assert it comes back."""
    s.sendall(payload)
    got = recv_exactly(s, len(payload), timeout)
    assert got == payload, "echo mismatch: " + first_mismatch(payload, got)


def is_refused(addr: tuple[str, int], timeout: float = 1.0) -> bool:
    try:
        s = connect_tcp(addr, timeout)
    except ConnectionRefusedError:
        return True
    except OSError as e:
        # A closed listener on loopback refuses; treat a timeout as "not refused".
        if e.errno == errno.ECONNREFUSED:
            return True
        return False
    s.close()
    return False


def wait_refused(addr: tuple[str, int], within: float) -> float:
    """Poll-connect until the address refuses; return seconds it took.
    Connections that still get through are closed at once."""
    start = time.monotonic()
    while True:
        if is_refused(addr, timeout=min(1.0, within)):
            return time.monotonic() - start
        if time.monotonic() - start > within:
            raise AssertionError(f"{addr[0]}:{addr[1]} still accepted connections {within} s after the signal")
        time.sleep(0.02)


def blast(
    connect: Callable[[], socket.socket],
    payload: bytes,
    *,
    reset: bool = False,
    time_limit: float = 10.0,
) -> int:
    """Send `payload` while reading and discarding whatever comes back (so no
    plugin can dead-lock us), then close (with RST if `reset`). Stops early
    and quietly if the peer closes/resets. Returns the number of bytes sent."""
    s = connect()
    sent = 0
    try:
        s.setblocking(False)
        view = memoryview(payload)
        readable = True
        deadline = time.monotonic() + time_limit
        while sent < len(payload) and time.monotonic() < deadline:
            rl = [s] if readable else []
            r, w, _ = select.select(rl, [s], [], 0.2)
            if r:
                try:
                    chunk = s.recv(256 * KiB)
                    if not chunk:
                        readable = False
                except BlockingIOError:
                    pass
                except OSError:
                    break
            if w:
                try:
                    sent += s.send(view[sent : sent + 64 * KiB])
                except BlockingIOError:
                    pass
                except OSError:
                    break
    finally:
        if reset:
            with contextlib.suppress(OSError):
                set_linger_reset(s)
        s.close()
    return sent


# --------------------------------------------------------------------------
# RFC 864 chargen pattern

CHARGEN_CHARS = bytes(range(32, 127))  # the 95 printable ASCII characters
CHARGEN_LINE_LEN = 72
CHARGEN_LINE_BYTES = CHARGEN_LINE_LEN + 2  # plus \r\n


def chargen_line(k: int) -> bytes:
    off = k % len(CHARGEN_CHARS)
    return (CHARGEN_CHARS * 2)[off : off + CHARGEN_LINE_LEN] + b"\r\n"


CHARGEN_PERIOD = b"".join(chargen_line(k) for k in range(len(CHARGEN_CHARS)))  # 95 lines, 7030 bytes


def chargen_expected(nbytes: int, first_line: int = 0) -> bytes:
    start = (first_line % len(CHARGEN_CHARS)) * CHARGEN_LINE_BYTES
    reps = (start + nbytes) // len(CHARGEN_PERIOD) + 1
    return (CHARGEN_PERIOD * reps)[start : start + nbytes]


def chargen_mismatch(data: bytes, first_line: int = 0) -> str | None:
    """None if `data` is exactly the RFC 864 stream starting at line
    `first_line` (0-based: line k starts at character offset k mod 95);
    otherwise a readable description of the first wrong line."""
    expected = chargen_expected(len(data), first_line)
    i = first_difference(expected, data)
    if i is None:
        return None
    line_no = i // CHARGEN_LINE_BYTES
    line_start = line_no * CHARGEN_LINE_BYTES
    return (
        f"{first_mismatch(expected, data)}\n"
        f"line {line_no} (0-based) expected {expected[line_start:line_start + CHARGEN_LINE_BYTES]!r}\n"
        f"                      got      {data[line_start:line_start + CHARGEN_LINE_BYTES]!r}"
    )


# --------------------------------------------------------------------------
# asyncio helpers


def run_async(coro, timeout: float):
    """asyncio.run(coro) bounded by `timeout` seconds."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


async def async_echo_exchange(
    open_connection: Callable[[], Any],
    payload: bytes,
    *,
    chunk: int = 64 * KiB,
    eof_timeout: float = 10.0,
) -> str | None:
    """Send `payload` in chunks while concurrently reading the echo; then
    half-close and expect EOF. Returns None on success or an error string."""
    reader, writer = await open_connection()
    try:
        async def send():
            view = memoryview(payload)
            for off in range(0, len(payload), chunk):
                writer.write(view[off : off + chunk])
                await writer.drain()

        sender = asyncio.create_task(send())
        received = bytearray()
        while len(received) < len(payload):
            part = await reader.read(min(256 * KiB, len(payload) - len(received)))
            if not part:
                break
            received += part
        await sender
        if bytes(received) != payload:
            return "echo mismatch: " + first_mismatch(payload, bytes(received))
        writer.write_eof()
        try:
            rest = await asyncio.wait_for(reader.read(65536), eof_timeout)
        except asyncio.TimeoutError:
            return f"all bytes echoed, but no EOF within {eof_timeout} s after our half-close"
        if rest:
            return f"extra {len(rest)} bytes after the echo: {rest[:32]!r}"
        return None
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def socket_mode(path: str | Path) -> int:
    st = os.stat(path)
    return st.st_mode


def is_socket(path: str | Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False
