"""A throwaway machine whose PID 1 is the real systemd: `systemd-nspawn --boot` on the host's
own /usr (read-only) with a tmpfs for everything else, as ../shared/design/SYSTEMD-TESTING.md
describes. Never a service manager on the host itself.

    with SystemdContainer("tulip-units", binds={"/abs/build/debug": "/opt/tulip"}) as machine:
        machine.install_units("systemd", dropins={"tulipd.service": {"test.conf": "..."}})
        machine.systemctl("start", "tulipd.socket")
        machine.show("tulipd.service", "ActiveState")   # {"ActiveState": "inactive"}

The container shares the host's network: its 127.0.0.1:PORT is the host's. Commands run
inside with `nsenter -t LEADER -a`; files are written through /proc/LEADER/root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping

CGROUP_ROOTS = (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"))
BOOT_TIMEOUT = 30.0  # seconds from nspawn to `systemctl is-system-running` answering
COMMAND_TIMEOUT = 30.0  # seconds for one command inside
POWEROFF_TIMEOUT = 20.0  # seconds for SIGTERM to power the container off


class ContainerError(AssertionError):
    """The container could not be set up, or a command inside failed."""


def container_problem() -> str | None:
    """Why a container cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "the real-systemd tests need root (systemd-nspawn and cgroups); run them as root"
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            package = "systemd-container" if tool == "systemd-nspawn" else "util-linux"
            return f"{tool} is not installed (Debian package {package}; `make deps` installs it)"
    missing = [str(root) for root in CGROUP_ROOTS if not root.is_dir()]
    if missing:
        return f"no cgroup hierarchy at {', '.join(missing)} (the hybrid layout SYSTEMD-TESTING.md assumes)"
    return None


class SystemdContainer:
    """One booted container. Use as a context manager, or call `boot()` then `poweroff()` in a
    `finally`: poweroff also removes the cgroups made for it, whatever state boot reached."""

    def __init__(self, name: str, binds: Mapping[str, str] | None = None, ro_paths: Iterable[str] = ()):
        self.name = f"{name}-{os.getpid()}"
        self.binds = dict(binds or {})
        self.ro_paths = list(ro_paths)
        self.nspawn: subprocess.Popen | None = None
        self.leader: int | None = None
        self.console_path = Path(f"/tmp/{self.name}.console")
        self._cgroups = [root / self.name for root in CGROUP_ROOTS]

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> "SystemdContainer":
        try:
            self.boot()
        except BaseException:
            self.poweroff()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.poweroff()

    def boot(self, timeout: float = BOOT_TIMEOUT) -> None:
        problem = container_problem()
        if problem:
            raise ContainerError(problem)
        for cgroup in self._cgroups:
            cgroup.mkdir()
        argv = [
            "systemd-nspawn", "-D", "/", "--volatile=yes", "--boot", "--register=no", "--keep-unit",
            "--console=pipe", "-M", self.name,
            *(f"--bind-ro={src}:{dst}" for src, dst in self.binds.items()),
            *(f"--bind-ro={path}" for path in self.ro_paths),
            "systemd.mask=systemd-firstboot.service",
        ]  # fmt: skip
        # The launching shell joins both cgroups first, so the container's cgroups live under
        # ours and are removed with them; `exec` keeps the nspawn PID the one we signal.
        join = "; ".join(f"echo $$ > {cgroup}/cgroup.procs" for cgroup in self._cgroups)
        console = open(self.console_path, "wb")
        try:
            self.nspawn = subprocess.Popen(
                ["sh", "-c", f'{join}; exec "$@"', "sh", *argv],
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            console.close()
        self.leader = self._wait_for_leader(timeout)
        self.run("systemctl", "is-system-running", "--wait", check=False, timeout=timeout)

    def _wait_for_leader(self, timeout: float) -> int:
        """The container's PID 1 as seen from here: the nspawn child called `systemd` in another
        PID namespace (nspawn's short-lived setup child is skipped), once its manager listens."""
        own_ns = os.readlink("/proc/self/ns/pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nspawn.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.nspawn.returncode}\n{self.console_tail()}")
            for pid in self._children(self.nspawn.pid):
                with contextlib.suppress(OSError):
                    if (
                        Path(f"/proc/{pid}/comm").read_text().strip() == "systemd"
                        and os.readlink(f"/proc/{pid}/ns/pid") != own_ns
                        and Path(f"/proc/{pid}/root/run/systemd/private").exists()
                    ):
                        return pid
            time.sleep(0.05)
        raise ContainerError(f"the container's systemd did not come up within {timeout} s\n{self.console_tail()}")

    @staticmethod
    def _children(parent: int) -> list[int]:
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                # The field after the parenthesised comm: "state ppid ...".
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    children.append(int(entry))
        return children

    def poweroff(self, timeout: float = POWEROFF_TIMEOUT) -> None:
        """SIGTERM to nspawn powers the container off cleanly; SIGKILL if it does not stop in
        time. Then the cgroups made for it are removed, deepest first."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)
            try:
                self.nspawn.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.nspawn.pid, signal.SIGKILL)
                self.nspawn.wait(timeout=timeout)
        self.leader = None
        for cgroup in self._cgroups:
            self._remove_cgroup(cgroup)
        with contextlib.suppress(OSError):
            self.console_path.unlink()

    @staticmethod
    def _remove_cgroup(cgroup: Path) -> None:
        if not cgroup.is_dir():
            return
        for sub in sorted((p for p in cgroup.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            cgroup.rmdir()

    def console_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            text = self.console_path.read_text(errors="replace").splitlines()
            return "--- container console (tail) ---\n" + "\n".join(text[-lines:])
        return ""

    # ------------------------------------------------------------------ inside

    def run(
        self, *argv: str, check: bool = True, timeout: float = COMMAND_TIMEOUT, input: str | None = None
    ) -> subprocess.CompletedProcess:
        """Runs `argv` inside every namespace of the container; raises on a non-zero exit when
        `check`."""
        if self.leader is None:
            raise ContainerError("the container is not running")
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *argv],
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise ContainerError(
                f"{' '.join(argv)} exited with {result.returncode}\n"
                f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
            )
        return result

    def path(self, inside: str) -> Path:
        """The host path of `inside` (an absolute path in the container)."""
        return Path(f"/proc/{self.leader}/root") / inside.lstrip("/")

    def write_file(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def remove(self, inside: str) -> None:
        target = self.path(inside)
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()

    def systemctl(self, *args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
        return self.run("systemctl", *args, check=check, timeout=timeout).stdout

    def install_units(
        self,
        unit_dir: Path | str | None = None,
        dropins: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Copies every unit file of `unit_dir` into /run/systemd/system, writes `dropins`
        ({unit: {file.conf: text}}) into UNIT.d/, then reloads the manager."""
        if unit_dir is not None:
            for unit in sorted(Path(unit_dir).iterdir()):
                if unit.is_file():
                    self.write_file(f"/run/systemd/system/{unit.name}", unit.read_text())
        for unit, files in (dropins or {}).items():
            for name, text in files.items():
                self.write_file(f"/run/systemd/system/{unit}.d/{name}", text)
        self.systemctl("daemon-reload")

    def remove_dropin(self, unit: str, name: str) -> None:
        self.remove(f"/run/systemd/system/{unit}.d/{name}")
        self.systemctl("daemon-reload")

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """`systemctl show -p …` as a dict."""
        out = self.systemctl("show", unit, *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_for(self, unit: str, timeout: float = 20.0, **expected: str) -> dict[str, str]:
        """Polls `systemctl show` until every property has its expected value."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, *expected)
            if all(state.get(k) == v for k, v in expected.items()) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert all(state.get(k) == v for k, v in expected.items()), (
            f"{unit}: expected {expected} within {timeout} s, have {state}\n{self.unit_journal(unit)}"
        )
        return state

    def journal(self, *matches: str) -> list[dict]:
        """This boot's journal entries matching `matches` (FIELD=VALUE), parsed from `-o json`."""
        out = self.run("journalctl", "-b", "-o", "json", "--no-pager", *matches).stdout
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def unit_journal(self, unit: str, lines: int = 40) -> str:
        result = self.run("journalctl", "-b", "-u", unit, "-n", str(lines), "--no-pager", check=False)
        return f"--- journal of {unit} (tail) ---\n{result.stdout}{result.stderr}"
