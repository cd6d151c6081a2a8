"""Kafka messages -> topology records, one constructor per client.

The two clients the worker reads with report a record's timestamp in different units:
Faust's ``ConsumerMessage.timestamp`` is in seconds (a float; faust's aiokafka driver divides
by 1000), aiokafka's ``ConsumerRecord.timestamp`` in milliseconds (an int). Each constructor
names its unit, and both end in :func:`record_time`.

The timestamp is the producer's CreateTime or the broker's LogAppendTime, as the topic is
configured (``timestamp_type`` 0 or 1); both mean "when the record was recorded", which is
what late-data detection falls back to when an event has no ``recorded_at``. A record
without a usable timestamp (none, Kafka's -1, or outside the range the schemas accept) is
taken as recorded when the worker read it.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from ..pipeline.topology import Record
from ..schemas.base import EARLIEST, END_OF_RANGE

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FIRST_SECOND = (EARLIEST - _EPOCH).total_seconds()
_END_SECOND = (END_OF_RANGE - _EPOCH).total_seconds()


def record_time(seconds: float | None, read_at: datetime | None = None) -> datetime:
    """The record's timestamp (seconds since the epoch) as a UTC datetime, or ``read_at`` (default:
    now) if it has none."""
    if seconds is None or not _FIRST_SECOND <= seconds < _END_SECOND:
        return read_at or datetime.now(timezone.utc)
    return _EPOCH + timedelta(seconds=seconds)


def _record(message: Any, seconds: float | None, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        record_time(seconds),
        headers,
    )


def record_from_faust(message: Any) -> Record:
    """A record from a Faust ``ConsumerMessage`` (timestamp in seconds)."""
    return _record(message, message.timestamp)


def record_from_aiokafka(message: Any) -> Record:
    """A record from an aiokafka ``ConsumerRecord`` (timestamp in milliseconds)."""
    seconds = None if message.timestamp is None else message.timestamp / 1000
    return _record(message, seconds, tuple(message.headers or ()))
