"""``milestream worker``: runs the Faust worker in a child process and starts it again when it
stops to recover.

A worker that meets a failure that is not the input's fault (the broker refuses or never
acknowledges a send, the state store or changelog fails) exits with
:data:`~milestream.runtime.failure.WORKER_FAILED_EXIT_CODE` without committing past the
record it was on (runtime/failure.py): the remedy is a fresh process that reads again from
the last commit. Kubernetes or systemd would do that, but ``make run`` and a plain shell would not,
so the command supervises itself: it restarts the worker after such an exit, with a growing pause
while the failure lasts, and passes any other exit status through. SIGTERM and SIGINT are passed to
the worker, and the supervisor then exits with the worker's status.

The worker runs in its own process group, so a signal sent to the terminal's foreground group
reaches it once (through the supervisor); on Linux it is also told to die with the supervisor, so
a SIGKILL of the supervisor never leaves a worker behind.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType

from ..runtime.failure import WORKER_FAILED_EXIT_CODE
from ..settings import Settings

log = logging.getLogger("milestream.supervisor")

FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 30.0
# A worker that ran this long before failing had recovered: the next failure starts the pauses again.
HEALTHY_RUN_S = 60.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL this process when the supervisor dies (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a SIGKILLed supervisor may leave the worker running
        pass


def worker_command() -> list[str]:
    return [sys.executable, "-m", "milestream.cli", "worker", "--unsupervised"]


def supervise(
    settings: Settings, command: list[str] | None = None, sleep: Callable[[float], bool] | None = None
) -> int:
    """Run the worker until it exits for another reason than recovery; return its exit status."""
    command = command or worker_command()
    stopping = threading.Event()
    child: subprocess.Popen | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    pause = FIRST_PAUSE_S
    wait = sleep or (lambda seconds: stopping.wait(seconds))
    try:
        while True:
            started = time.monotonic()
            child = subprocess.Popen(command, start_new_session=True, preexec_fn=_die_with_parent)
            status = _wait(child)
            if status < 0:  # ended by a signal: report it the way a shell does
                status = 128 - status
            if stopping.is_set() or status != WORKER_FAILED_EXIT_CODE or not settings.restart_on_failure:
                return status
            if time.monotonic() - started >= HEALTHY_RUN_S:
                pause = FIRST_PAUSE_S
            log.warning(
                "worker exited with status %d to restart from its last committed offsets; starting it again in %g s",
                status,
                pause,
            )
            if wait(pause):
                return 0  # asked to stop while no worker runs

            pause = min(pause * 2, MAX_PAUSE_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(child: subprocess.Popen) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - wait() retries on EINTR itself since 3.5
            continue
