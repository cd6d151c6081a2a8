"""How the worker stops when something other than its input fails.

An infrastructure error while processing, or a send the broker fails (or does
not acknowledge within ``MILESTREAM_DELIVERY_TIMEOUT``): the worker logs why and
exits with :data:`WORKER_FAILED_EXIT_CODE` without committing. The offsets past
the failed batch are not committed, so the restarted worker (``milestream
worker`` supervises it, worker/supervisor.py; or systemd, Kubernetes) reads it
again from the last commit and recognises what the state already holds.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

from .. import metrics

log = logging.getLogger("milestream.worker")

# EX_TEMPFAIL: a temporary failure; running the worker again is the remedy.
WORKER_FAILED_EXIT_CODE = 75


class DeliveryFailed(Exception):
    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"sending to {topic} failed: {reason}")
        self.topic = topic


def exit_worker(exc: BaseException) -> NoReturn:
    """Stop at once, without committing: the next start reads again from the last commit."""
    if isinstance(exc, DeliveryFailed):
        metrics.OUTPUT_SEND_FAILURES.labels(exc.topic).inc()
    log.critical(
        "%s; exiting (status %d) to restart from the last committed offsets",
        exc,
        WORKER_FAILED_EXIT_CODE,
        exc_info=exc.__cause__ or exc,
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(WORKER_FAILED_EXIT_CODE)
