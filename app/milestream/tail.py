"""``milestream tail [TOPIC]``: print a topic's records as they arrive, decoded, to see what Milestream emits.

``TOPIC`` is a logical name from topics.yaml (default ``promotions``; ``late-events``,
``dead-letters``, ``lifetime-points``, the input topics ...), named as every other topic
(topics.load_topics: a replay's own topics with its output prefix). New records only, unless
``--from-beginning``. ``--customer`` keeps one customer's records (the record key),
``--kind`` those whose ``kind``, ``type`` or ``reason`` (dead letters) is that value.
Each record is printed as indented JSON under a ``# topic[partition]@offset key=...``
line, or with ``--json`` as one JSON object a line (for ``jq``). ``--max N`` stops
after N records, ``--timeout S`` after S seconds; a ``--max`` not reached within
the timeout exits 1. Ctrl-C ends it (exit 0); no consumer group is joined and no
offset is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import orjson

from .errors import UsageError
from .settings import Settings


@dataclass(frozen=True)
class TailOptions:
    topic: str  # logical name
    customer: str | None = None
    kind: str | None = None
    from_beginning: bool = False
    max_records: int | None = None
    timeout_s: float | None = None
    as_json_lines: bool = False


def decoded(value: bytes | None) -> Any:
    """A record's value as JSON, else its text (a tombstone is None)."""
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace")


def matches(options: TailOptions, key: bytes | None, value: Any) -> bool:
    if options.customer is not None:
        customer = value.get("customer_id") if isinstance(value, dict) else None
        if customer != options.customer and key != options.customer.encode():
            return False
    if options.kind is not None:
        if not isinstance(value, dict) or options.kind not in (
            value.get("kind"),
            value.get("type"),
            value.get("reason"),
        ):
            return False
    return True


def render(options: TailOptions, topic: str, partition: int, offset: int, key: bytes | None, value: Any) -> str:
    if options.as_json_lines:
        return orjson.dumps(value).decode()
    shown_key = key.decode("utf-8", "replace") if key is not None else "(none)"
    body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if not isinstance(value, str) else value
    return f"# {topic}[{partition}]@{offset} key={shown_key}\n{body}"


async def tail(settings: Settings, options: TailOptions, out: TextIO = sys.stdout) -> int:
    """Print the topic's matching records until ``--max`` or ``--timeout``; the exit status."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from .cli import command_client_options, started
    from .topics import load_topics

    specs = load_topics(settings)
    spec = specs.get(options.topic)
    if spec is None:
        raise UsageError(f"no topic {options.topic!r} in topics.yaml (topics: {', '.join(sorted(specs))})")
    consumer = await started(AIOKafkaConsumer(enable_auto_commit=False, **command_client_options(settings)), settings)
    interrupted = _end_on_ctrl_c()
    try:
        if spec.name not in await asyncio.wait_for(consumer.topics(), settings.command_timeout_s):
            raise UsageError(
                f"topic {spec.name} does not exist on {settings.kafka_bootstrap_servers} "
                "(run `milestream topics apply`)"
            )
        partitions = [TopicPartition(spec.name, p) for p in range(spec.partitions)]  # as declared (and applied)
        consumer.assign(partitions)
        if options.from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
        for partition in partitions:  # fix the starting point now: records sent from here on are shown
            await asyncio.wait_for(consumer.position(partition), settings.command_timeout_s)
        loop = asyncio.get_running_loop()
        deadline = None if options.timeout_s is None else loop.time() + options.timeout_s
        shown = 0
        while options.max_records is None or shown < options.max_records:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            wait_ms = 500 if left is None else max(1, min(500, int(left * 1000)))
            for messages in (await consumer.getmany(timeout_ms=wait_ms)).values():
                for message in messages:
                    value = decoded(message.value)
                    if not matches(options, message.key, value):
                        continue
                    print(
                        render(options, message.topic, message.partition, message.offset, message.key, value),
                        file=out,
                        flush=True,
                    )
                    shown += 1
                    if options.max_records is not None and shown >= options.max_records:
                        return 0
        return 1 if options.max_records is not None else 0
    except asyncio.CancelledError:
        if not interrupted.is_set():
            raise
        return 0  # Ctrl-C is how a user ends it
    finally:
        await consumer.stop()


def _end_on_ctrl_c() -> asyncio.Event:
    """Make Ctrl-C (SIGINT) cancel this task, whatever SIGINT's disposition was when the process
    started (a process started with SIGINT ignored, as some parents leave it, would otherwise not
    stop); the event says it happened."""
    interrupted = asyncio.Event()
    task = asyncio.current_task()

    def interrupt() -> None:
        interrupted.set()
        if task is not None:
            task.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, not Unix
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupt)
    return interrupted
