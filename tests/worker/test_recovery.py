"""The end of a rebalance: input partitions are positioned before anything is fetched from them.

Faust's own order (resume the inputs, seek them, then clear the stream buffers) drops the records
fetched while seeking; see milestream/worker/recovery.py. The crash test shows the effect on a real
broker; this pins the order and the rewind of never-committed partitions.
"""

import asyncio
from types import SimpleNamespace

from faust.types import TP

from milestream.worker.recovery import InputSafeRecovery

INPUT_COMMITTED = TP("transactions", 0)
INPUT_NEW = TP("transactions", 1)
CHANGELOG = TP("customer-state-changelog", 0)


class FakeConsumer:
    def __init__(self, calls: list) -> None:
        self.calls = calls
        self._committed_offset = {INPUT_COMMITTED: 42}

    def assignment(self):
        return {INPUT_COMMITTED, INPUT_NEW, CHANGELOG}

    async def perform_seek(self):
        self.calls.append("seek to committed")

    async def earliest_offsets(self, *tps):
        return {tp: 7 for tp in tps}

    async def seek(self, tp, offset):
        self.calls.append(f"seek {tp.partition} to {offset}")

    def resume_partitions(self, tps):
        self.calls.append(f"resume partitions {sorted(tp.partition for tp in tps)}")

    def resume_flow(self):
        self.calls.append("resume flow")


def recovery(calls: list) -> SimpleNamespace:
    consumer = FakeConsumer(calls)

    async def maybe_start():
        calls.append("start fetcher")

    async def wait(coro, timeout=None):
        await coro

    app = SimpleNamespace(
        consumer=consumer,
        conf=SimpleNamespace(broker_request_timeout=30.0, consumer_auto_offset_reset="earliest"),
        flow_control=SimpleNamespace(resume=lambda: calls.append("clear buffers and resume flow control")),
        _fetcher=SimpleNamespace(maybe_start=maybe_start),
    )
    fake = SimpleNamespace(
        app=app,
        log=SimpleNamespace(info=lambda *a, **k: None),
        completed=SimpleNamespace(set=lambda: calls.append("completed")),
        _is_changelog_tp=lambda tp: tp == CHANGELOG,
        _wait=wait,
    )
    fake._seek_inputs = lambda tps: InputSafeRecovery._seek_inputs(fake, tps)
    return fake


def test_inputs_are_sought_and_buffers_cleared_before_they_are_fetched_from():
    calls: list = []
    asyncio.run(InputSafeRecovery._resume_inputs(recovery(calls)))
    assert calls == [
        "seek to committed",
        "seek 1 to 7",  # no committed offset: back to the first offset, not left where a fetch moved it
        "clear buffers and resume flow control",
        "resume partitions [0, 1]",  # inputs only, and only now
        "completed",
        "resume flow",
        "start fetcher",
    ]
