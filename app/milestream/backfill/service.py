"""Backfills a worker runs for its HTTP API (``PUT /milestones/{id}?backfill=true``): the same copier
as ``milestream backfill``, in the background of the worker that took the request."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..schemas.backfill import BackfillStatus
from ..settings import Settings
from . import plan
from .copier import Copier
from .status import read_status

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from ..pipeline.topology import Topology

log = logging.getLogger("milestream.backfill")

REGISTERED_WAIT_S = 60.0  # for the definition just published to reach this worker's registry


class Backfills:
    def __init__(self, settings: Settings, topology: Topology) -> None:
        self.settings = settings
        self.topology = topology
        self.tasks: dict[str, asyncio.Task] = {}
        self.latest: dict[str, BackfillStatus] = {}  # of the runs this worker ran
        self.errors: dict[str, str] = {}  # why a run this worker ran stopped

    def running(self, milestone_id: str) -> bool:
        task = self.tasks.get(milestone_id)
        return task is not None and not task.done()

    def start(self, milestone_id: str, published: object) -> None:
        """Run (or resume) a backfill once ``published`` (the definition just sent) is registered here."""
        if self.running(milestone_id):
            return
        self.errors.pop(milestone_id, None)
        self.tasks[milestone_id] = asyncio.create_task(self._run(milestone_id, published))

    async def _run(self, milestone_id: str, published: object) -> None:
        from .command import open_clients, stop_clients

        try:
            deadline = time.monotonic() + REGISTERED_WAIT_S
            while (compiled := self.topology.registry.milestones.get(milestone_id)) is None or (
                compiled.definition != published
            ):
                if time.monotonic() > deadline:
                    raise UsageError(f"milestone {milestone_id!r} did not reach this worker's definitions")
                await asyncio.sleep(0.2)
            plan.check_backfillable(compiled)
            clients = await open_clients(self.settings)
            try:
                previous = await read_status(
                    clients.consumer,
                    self.topology.topics["backfills"].name,
                    milestone_id,
                    self.settings.command_timeout_s,
                )
                await Copier(self.settings, self.topology, compiled, clients, self._report).run(previous)
            finally:
                await stop_clients(clients)
        except asyncio.CancelledError:
            raise
        except UsageError as exc:
            self.errors[milestone_id] = str(exc)
            log.error("backfill of %s stopped: %s", milestone_id, exc)
        except Exception as exc:  # the broker, most likely: the run resumes when asked again
            self.errors[milestone_id] = f"{type(exc).__name__}: {exc}"
            log.exception("backfill of %s stopped", milestone_id)

    def _report(self, status: BackfillStatus) -> None:
        self.latest[status.milestone_id] = status.model_copy(deep=True)

    def current(self, milestone_id: str) -> BackfillStatus | None:
        """The latest status of a run this worker is running (None: it runs none)."""
        return self.latest.get(milestone_id) if self.running(milestone_id) else None

    async def status(self, milestone_id: str, consumer: AIOKafkaConsumer) -> BackfillStatus | None:
        """The last status on the backfills topic."""
        topic = self.topology.topics["backfills"].name
        return await read_status(consumer, topic, milestone_id, self.settings.command_timeout_s)

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
