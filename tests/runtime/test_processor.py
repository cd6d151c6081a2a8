"""The batch processor hands the event loop over during a long batch (runtime/processor.py)."""

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from milestream.pipeline.topology import Processed, Topology
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
        RecordingCheckpoint.instances.append(self)

    def overlay(self, partition):
        return None

    def processed(self, tp, offset, records):
        self.processed_offsets.append(offset)

    async def commit(self):
        pass


def processor_with(tmp_path, monkeypatch, slice_ms: float) -> BatchProcessor:
    settings = Settings(data_dir=str(tmp_path), processing_slice_ms=slice_ms)
    processor = BatchProcessor(settings, Topology(settings, load_topics(settings)), lambda processed, topic: None)
    processor.producer = processor.transactional = processor.consumer = SimpleNamespace()
    processor.stores.stores = {0: None}  # partition 0 is owned: its records are processed

    async def busy(record, overlay):
        until = time.perf_counter() + RECORD_MS / 1000
        while time.perf_counter() < until:
            pass
        return Processed("no_output")

    monkeypatch.setattr(processor, "_process", busy)
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

        RecordingCheckpoint.instances.clear()
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
