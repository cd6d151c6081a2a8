"""Child processes of a benchmark run: started in their own process group,
logged to a file, polled over HTTP, and always stopped at the end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from milestream.settings import Settings


class BenchError(RuntimeError):
    """A benchmark phase failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: Settings, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a ``milestream`` process reads ``settings`` from."""
    return {**(os.environ if base is None else base), **settings.environment()}


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Service:
    """One child process with an HTTP port (a Faust worker)."""

    _running: list[Service] = []

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], log_path: Path, port: int) -> None:
        self.name = name
        self.command = list(command)
        self.env = env
        self.log_path = log_path
        self.port = port
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals all of it
            )
        self.started_at = time.time()
        Service._running.append(self)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the process group, then SIGKILL it after ``timeout`` s."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait(10)
        else:
            self._signal(signal.SIGKILL)  # stray children of a dead leader
        if self in Service._running:
            Service._running.remove(self)

    def _signal(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    @classmethod
    def stop_all(cls) -> None:
        for service in list(cls._running):
            try:
                service.stop(timeout=15)
            except Exception as exc:  # keep stopping the others
                print(f"could not stop {service.name}: {exc}")

    # ------------------------------------------------------------------ HTTP
    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """(status, body) of a GET on the service's port; None if it does not answer."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return None

    def get_json(self, path: str) -> Any:
        answer = self.get(path)
        if answer is None or answer[0] != 200:
            return None
        return json.loads(answer[1])

    def wait_healthy(self, path: str, timeout: float) -> float:
        """Poll ``path`` until it answers 200; returns the wall-clock time it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            answer = self.get(path, timeout=1.0)
            if answer is not None and answer[0] == 200:
                return time.time()
            time.sleep(0.1)
        raise self.failure(f"{self.name} did not answer 200 on {path} within {timeout:.0f} s")

    def check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise self.failure(f"{self.name} exited with code {self.process.returncode}")

    def failure(self, message: str) -> BenchError:
        return BenchError(f"{message}\n--- {self.name} log tail ({self.log_path}) ---\n{tail(self.log_path)}")


# ----------------------------------------------------------------------- CPU use

_TICKS = os.sysconf("SC_CLK_TCK")


def worker_service(name: str, settings: Settings, log_path: Path, python_options: Sequence[str] = ()) -> Service:
    """A ``milestream worker`` of ``settings``: the worker itself, not its supervisor (its CPU is what is
    measured, and a failure must end the run). ``python_options``: e.g. ``-m cProfile -o FILE``."""
    command = [sys.executable, *python_options, "-m", "milestream.cli", "worker", "--unsupervised"]
    return Service(name, command, settings_env(settings), log_path, settings.web_port)


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 if it is gone."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent busy (not idle or waiting for I/O) since boot."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICKS


class CpuMeter:
    """CPU seconds used by named processes, by the whole machine, and by everything else."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.start = self._snapshot()

    def restart(self) -> None:
        self.start = self._snapshot()

    def _snapshot(self) -> dict[str, float]:
        snap = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        snap["machine"] = machine_busy_seconds()
        snap["wall"] = time.time()
        return snap

    def read(self) -> dict[str, float]:
        """CPU seconds since the meter started; ``others`` is the machine minus the named processes."""
        end = self._snapshot()
        used = {name: end[name] - self.start[name] for name in end}
        used["others"] = max(0.0, used["machine"] - sum(used[name] for name in self.pids))
        return used
