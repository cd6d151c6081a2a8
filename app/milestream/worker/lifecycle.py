"""How a worker joins its consumer group after a restart, and how long it may take to stop.

* **Static group membership.** A worker that restarts under a new member id joins a group that
  still lists its dead predecessor, and the coordinator holds the whole group's rebalance until
  that member's session times out: after a SIGKILL no partition made progress for ~28 s with the
  30 s session timeout. With a stable ``group.instance.id`` the restarted worker takes the dead
  member's place at once and gets its partitions back without waiting.
* **Bounded shutdown.** On SIGTERM Faust waits for in-flight records to be acked, flushes the
  producer and commits; with the broker unreachable those waits never end. A watchdog thread
  ends the process after a grace period (nothing is lost: whatever was not committed is
  redelivered and recognised, docs/guarantees.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path

import faust

from ..settings import Settings

log = logging.getLogger("milestream.worker")

# Exit status of a shutdown the watchdog had to cut short (the last commit may be missing).
FORCED_EXIT_STATUS = 1


def group_instance_id(settings: Settings) -> str:
    """The worker's static member id: the configured one, else one per host and data folder.

    The data folder holds the worker's RocksDB tables and can be opened by one process only, so
    (host, folder) names one worker across its restarts and never two running at once.
    """
    if settings.worker_id:
        return settings.worker_id
    folder = str(Path(settings.data_dir).resolve())
    return f"{settings.app_id}-{socket.gethostname()}-{hashlib.sha256(folder.encode()).hexdigest()[:12]}"


def group_member_id(settings: Settings) -> str:
    """The worker's static member id in its consumer groups: its instance id and a digest of the URLs
    it advertises in their metadata.

    A broker hands a static member that rejoins the assignment it had, without a rebalance, so a
    worker restarted under the same id with another URL would get its old URL back: Faust's
    assignor refuses the assignment (the worker never starts) and the API's ownership table would
    send requests to the old address. With the digest such a worker joins as a new member (the old
    one leaves after the session timeout); restarted with the same URLs it takes its place at once.
    """
    urls = f"{settings.advertised_url}|{settings.web_host}:{settings.web_port}"
    return f"{group_instance_id(settings)}-{hashlib.sha256(urls.encode()).hexdigest()[:8]}"


def shutdown_bounded_worker(grace_s: float) -> type[faust.Worker]:
    """A Faust worker class whose shutdown on a signal ends within ``grace_s`` seconds."""

    class ShutdownBoundedWorker(faust.Worker):
        _watchdog: threading.Timer | None = None

        def _schedule_shutdown(self, signal_received: signal.Signals) -> None:
            if self._watchdog is None:
                self._watchdog = threading.Timer(grace_s, _force_exit, args=(signal_received, grace_s))
                self._watchdog.daemon = True
                self._watchdog.start()
            super()._schedule_shutdown(signal_received)

    return ShutdownBoundedWorker


def _force_exit(signal_received: signal.Signals, grace_s: float) -> None:
    log.error(
        "shutdown on %s did not finish within %.1f s (MILESTREAM_SHUTDOWN_GRACE), exiting now; "
        "records not yet committed will be read again by the next owner of their partitions",
        signal_received.name,
        grace_s,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(FORCED_EXIT_STATUS)  # the event loop may be stuck: do not wait for it
