"""The batch processor hands the event loop over during a long batch (runtime/processor.py)."""

import asyncio
import time
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from milestream.pipeline.attempts import RetryLater
from milestream.pipeline.topology import Processed, Record, Topology
from milestream.runtime import processor as processor_module
from milestream.runtime.processor import BatchProcessor
from milestream.settings import Settings
from milestream.topics import load_topics

RECORD_MS = 2.0  # each record's processing, as busy CPU time


class RecordingCheckpoint:
    """Stands in for the checkpoint: notes what was processed, commits nothing."""

    instances: list["RecordingCheckpoint"] = []

    def __init__(self, *args, **kwargs):
        self.offsets = {}
        self.processed_offsets = []
        self.records = 0
        self.committed = False
        self.sent_after = []  # records processed when outputs were sent
        RecordingCheckpoint.instances.append(self)

    def over(self, previous):
        self.under = previous
        return self

    def seal(self):
        self.sealed = True

    def overlay(self, partition):
        return None

    def processed(self, tp, offset, records):
        self.processed_offsets.append(offset)
        self.offsets[tp] = offset + 1
        self.records += 1

    async def send_outputs(self):
        self.sent_after.append(len(self.processed_offsets))

    gate: asyncio.Event | None = None  # when set on the class: commits wait for it
    failure: Exception | None = None  # when set on the class: commits raise it

    async def commit(self):
        if RecordingCheckpoint.gate is not None:
            await RecordingCheckpoint.gate.wait()
        if RecordingCheckpoint.failure is not None:
            raise RecordingCheckpoint.failure
        self.committed = True


def processor_with(tmp_path, monkeypatch, slice_ms: float = 10.0, **settings_values) -> BatchProcessor:
    settings = Settings(data_dir=str(tmp_path), processing_slice_ms=slice_ms, **settings_values)
    processor = BatchProcessor(settings, Topology(settings, load_topics(settings)), lambda observed: None)
    processor.producer = processor.transactional = processor.consumer = SimpleNamespace()
    RecordingCheckpoint.instances.clear()
    RecordingCheckpoint.gate = RecordingCheckpoint.failure = None
    processor.stores.stores = {0: None}  # partition 0 is owned: its records are processed

    def busy(record, overlay):
        until = time.perf_counter() + RECORD_MS / 1000
        while time.perf_counter() < until:
            pass
        return Processed("no_output")

    monkeypatch.setattr(processor, "_attempt", busy)
    monkeypatch.setattr(processor_module, "Checkpoint", RecordingCheckpoint)
    monkeypatch.setattr(processor_module, "record_from_aiokafka", lambda message: SimpleNamespace(topic="t"))
    return processor


@pytest.mark.parametrize("slice_ms", [5.0, 1000.0])
def test_a_batch_lets_other_tasks_run_every_slice_and_processes_every_record(tmp_path, monkeypatch, slice_ms):
    processor = processor_with(tmp_path, monkeypatch, slice_ms)
    records = 50  # 100 ms of processing
    batch = {TopicPartition("t", 0): [SimpleNamespace(offset=n) for n in range(records)]}
    ran_during_batch = []

    async def main():
        finished = asyncio.Event()

        async def other_task():  # an HTTP request, a heartbeat
            while not finished.is_set():
                ran_during_batch.append(len(RecordingCheckpoint.instances[-1].processed_offsets))
                await asyncio.sleep(0)

        batch_task = asyncio.ensure_future(processor.process_batch(batch))
        await asyncio.sleep(0)  # the batch starts first
        other = asyncio.ensure_future(other_task())
        await batch_task
        finished.set()
        await other

    asyncio.run(main())
    (checkpoint,) = RecordingCheckpoint.instances
    assert checkpoint.processed_offsets == list(range(records))
    in_between = [n for n in ran_during_batch if 0 < n < records]
    if slice_ms < records * RECORD_MS:
        # at least one turn per slice of processing, none only after the whole batch
        assert len(set(in_between)) >= (records * RECORD_MS) / slice_ms / 2
    else:
        assert in_between == []  # a batch shorter than a slice keeps the loop to the end


@pytest.mark.parametrize("slice_ms", [5.0, 1000.0])
def test_outputs_leave_at_the_end_of_each_slice_not_only_at_the_end_of_the_batch(tmp_path, monkeypatch, slice_ms):
    processor = processor_with(tmp_path, monkeypatch, slice_ms)
    batch = {TopicPartition("t", 0): [SimpleNamespace(offset=n) for n in range(50)]}  # 100 ms of processing
    asyncio.run(processor.process_batch(batch))
    (checkpoint,) = RecordingCheckpoint.instances
    assert checkpoint.sent_after[-1] == 50  # and whatever is left at the batch's end
    if slice_ms < 50 * RECORD_MS:
        early = [n for n in checkpoint.sent_after if 0 < n < 50]
        assert len(early) >= 50 * RECORD_MS / slice_ms / 2 and early == sorted(early)
    else:
        assert checkpoint.sent_after == [50]


@pytest.mark.parametrize("slice_ms", [5.0, 1000.0])
def test_the_metrics_are_told_every_record_once_a_slice(tmp_path, monkeypatch, slice_ms):
    processor = processor_with(tmp_path, monkeypatch, slice_ms)
    told = []
    processor.observe = told.append
    batch = {TopicPartition("t", 0): [SimpleNamespace(offset=n) for n in range(50)]}  # 100 ms of processing
    asyncio.run(processor.process_batch(batch))
    assert sum(len(slice_) for slice_ in told) == 50
    assert all(topic == "t" and processed.outcome == "no_output" for slice_ in told for processed, topic in slice_)
    if slice_ms < 50 * RECORD_MS:
        assert 2 <= len(told) < 50  # several records a call
    else:
        assert len(told) == 1


def test_a_record_whose_processing_fails_is_retried_in_place_after_a_pause(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch)
    monkeypatch.undo()  # the real attempt, around a processing that fails twice
    monkeypatch.setattr(processor_module, "Checkpoint", RecordingCheckpoint)
    monkeypatch.setattr(
        processor_module,
        "record_from_aiokafka",
        lambda message: Record("t", 0, message.offset, b"k", b"{}", datetime.now(timezone.utc)),
    )
    overlay = SimpleNamespace(begun=0, rolled_back=0)
    overlay.begin = lambda: setattr(overlay, "begun", overlay.begun + 1)
    overlay.rollback = lambda: setattr(overlay, "rolled_back", overlay.rolled_back + 1)
    monkeypatch.setattr(RecordingCheckpoint, "overlay", lambda self, partition: overlay)
    calls = []

    def process(topology, record, store):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RetryLater(record, len(calls), ValueError("boom"))
        return Processed("applied")

    processor.attempts = SimpleNamespace(process=process, max_attempts=5)  # the compiled class cannot be patched
    told = []
    processor.observe = told.append
    asyncio.run(processor.process_batch({TopicPartition("t", 0): [SimpleNamespace(offset=0)]}))
    assert len(calls) == 3 and overlay.begun == 3 and overlay.rolled_back == 2
    assert calls[1] - calls[0] >= 0.09 and calls[2] - calls[1] >= 0.19  # 0.1 s, then 0.2 s
    (checkpoint,) = RecordingCheckpoint.instances
    assert checkpoint.processed_offsets == [0]
    assert [[processed.outcome for processed, _ in slice_] for slice_ in told] == [["applied"]]


def records(partition, offsets):
    return {TopicPartition("t", partition): [SimpleNamespace(offset=n) for n in offsets]}


def test_batches_within_the_checkpoint_interval_share_one_checkpoint_committed_when_it_is_due(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)

    async def main():
        await processor.process_batch(records(0, [0, 1]))
        await processor.process_batch(records(0, [2]))
        assert not processor._commit_due()  # neither the interval nor MILESTREAM_MAX_POLL_RECORDS reached
        assert 0 < processor._poll_timeout_ms() <= 200
        (checkpoint,) = RecordingCheckpoint.instances
        assert checkpoint.processed_offsets == [0, 1, 2] and not checkpoint.committed
        processor._checkpoint_due = 0.0  # the interval is over
        assert processor._commit_due() and processor._poll_timeout_ms() == 0
        await processor.commit_pending()
        assert checkpoint.committed and processor._next_offsets == {TopicPartition("t", 0): 3}
        await processor.process_batch(records(0, [3]))  # the next batch opens the next checkpoint
        assert len(RecordingCheckpoint.instances) == 2

    asyncio.run(main())


def test_a_checkpoint_of_max_poll_records_commits_before_its_interval(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0, max_poll_records=3)

    async def main():
        await processor.process_batch(records(0, [0, 1]))
        assert not processor._commit_due()
        await processor.process_batch(records(0, [2]))
        assert processor._commit_due()

    asyncio.run(main())


def test_a_revocation_commits_what_the_worker_processed_before_the_partitions_move(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)

    async def main():
        await processor.process_batch(records(0, [7]))
        await processor_module._Rebalance(processor).on_partitions_revoked([TopicPartition("t", 0)])

    asyncio.run(main())
    (checkpoint,) = RecordingCheckpoint.instances
    assert checkpoint.committed and processor._checkpoint is None
    assert processor._next_offsets == {TopicPartition("t", 0): 8}


def test_an_interval_of_zero_commits_every_batch(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=0.0)

    async def main():
        await processor.process_batch(records(0, [0]))
        assert processor._commit_due()

    asyncio.run(main())


async def commit_held_by_the_broker(processor, offsets):
    """A batch processed and its checkpoint committing in the background, the commit held until
    ``RecordingCheckpoint.gate`` is set."""
    RecordingCheckpoint.gate = asyncio.Event()
    await processor.process_batch(records(0, offsets))
    await processor.commit_in_background()


async def still_waiting(awaitable):
    """``awaitable`` started, and not done a moment later."""
    future = asyncio.ensure_future(awaitable)
    await asyncio.sleep(0.01)
    assert not future.done()
    return future


def test_the_next_batches_are_processed_while_a_checkpoint_commits_one_commit_at_a_time(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)

    async def main():
        await commit_held_by_the_broker(processor, [0, 1])
        first = RecordingCheckpoint.instances[0]
        assert first.sealed and not first.committed and processor._checkpoint is None
        await processor.process_batch(records(0, [2]))  # not held back by the commit
        second = RecordingCheckpoint.instances[1]
        assert second.processed_offsets == [2] and second.under is first  # reads see the first's changes
        assert processor._next_offsets == {}  # nothing committed yet

        waiting = await still_waiting(processor.commit_in_background())  # the second waits for the first
        assert not hasattr(second, "sealed")
        RecordingCheckpoint.gate.set()
        await waiting
        assert first.committed and second.sealed
        await processor.commit_pending()  # waits for the one committing
        assert second.committed and processor._next_offsets == {TopicPartition("t", 0): 3}
        assert processor._committing is None

    asyncio.run(main())


def test_a_revocation_waits_for_the_checkpoint_committing_in_the_background(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)

    async def main():
        await commit_held_by_the_broker(processor, [0])
        rebalance = processor_module._Rebalance(processor)
        # the partition cannot move before its checkpoint is committed
        revoked = await still_waiting(rebalance.on_partitions_revoked([TopicPartition("t", 0)]))
        RecordingCheckpoint.gate.set()
        await revoked
        assert RecordingCheckpoint.instances[0].committed
        assert processor._next_offsets == {TopicPartition("t", 0): 1}

    asyncio.run(main())


def test_a_checkpoint_that_fails_in_the_background_stops_the_worker(tmp_path, monkeypatch):
    failures = []

    def on_failure(exc):
        failures.append(exc)
        raise exc

    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)
    processor.on_failure = on_failure

    async def main():
        RecordingCheckpoint.failure = RuntimeError("the broker refused the transaction")
        await processor.process_batch(records(0, [0]))
        await processor.commit_in_background()
        await asyncio.sleep(0.01)
        assert [str(e) for e in failures] == ["the broker refused the transaction"]  # at once, not at the next commit
        with pytest.raises(RuntimeError):
            await processor.commit_pending()
        assert processor._next_offsets == {}  # nothing of it counts as committed

    asyncio.run(main())


def test_a_cancelled_wait_does_not_cancel_the_commit_it_waits_for(tmp_path, monkeypatch):
    processor = processor_with(tmp_path, monkeypatch, checkpoint_interval_ms=60_000.0)

    async def main():
        await commit_held_by_the_broker(processor, [0])
        await processor.process_batch(records(0, [1]))
        waiting = await still_waiting(processor.commit_pending())
        waiting.cancel()  # the worker is stopping
        await asyncio.gather(waiting, return_exceptions=True)
        RecordingCheckpoint.gate.set()
        await processor._committed()
        assert RecordingCheckpoint.instances[0].committed

    asyncio.run(main())
