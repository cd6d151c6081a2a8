"""What to do when processing a record raises instead of returning.

Bad input never raises: the topology turns it into a dead letter (a
``Rejected`` reason). An exception is therefore either a failure of the
infrastructure (state store, changelog, broker, disk) or a bug, and the
record itself is most likely fine: it must not be dead-lettered and committed
past. :class:`ProcessingAttempts` decides:

* an infrastructure failure raises :class:`InfrastructureFailure`: the worker
  stops without acknowledging the record and restarts from its last commit;
* any other exception raises :class:`RetryLater`: the same record is processed
  again (nothing after it on any partition is processed or acknowledged
  meanwhile);
* a record that has failed ``max_processing_attempts`` times is a poison
  record: it is dead-lettered as ``processing_error`` (``Processed.poison``)
  so the records behind it can flow.
"""

from __future__ import annotations

from ..state.base import StateStore
from .topology import Processed, Record, Topology

# Exceptions from these packages come from the broker, Faust's tables or the local store.
INFRASTRUCTURE_PACKAGES = ("aiokafka", "kafka", "faust", "mode", "rocksdict")


class RetryLater(Exception):
    def __init__(self, record: Record, attempt: int, cause: BaseException) -> None:
        super().__init__(f"processing {record.source} failed (attempt {attempt}): {describe(cause)}")
        self.attempt = attempt


class InfrastructureFailure(Exception):
    def __init__(self, record: Record, cause: BaseException) -> None:
        super().__init__(f"processing {record.source} failed: {describe(cause)}")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def is_infrastructure(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, MemoryError)):  # OSError includes TimeoutError
        return True
    return any(type(exc).__module__.split(".")[0] == package for package in INFRASTRUCTURE_PACKAGES)


class ProcessingAttempts:
    """Failed attempts per record (``topic/partition/offset``), kept for the life of the process."""

    def __init__(self, max_attempts: int) -> None:
        self.max_attempts = max_attempts
        self.failures: dict[str, int] = {}

    def process(self, topology: Topology, record: Record, store: StateStore) -> Processed:
        """``topology.process``, or raise :class:`RetryLater` / :class:`InfrastructureFailure`."""
        try:
            processed = topology.process(record, store)
        except Exception as exc:
            if is_infrastructure(exc):
                raise InfrastructureFailure(record, exc) from exc
            attempt = self.failures.get(record.source, 0) + 1
            if attempt < self.max_attempts:
                self.failures[record.source] = attempt
                raise RetryLater(record, attempt, exc) from exc
            self.failures.pop(record.source, None)
            processed = topology.dead_letter(
                record, "processing_error", f"failed {attempt} times, last with {describe(exc)}"
            )
            processed.poison = True
            return processed
        if self.failures:  # a record that failed before, and not this time
            self.failures.pop(record.source, None)
        return processed
