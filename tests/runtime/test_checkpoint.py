"""The checkpoint's commit order (runtime/checkpoint.py), step by step, with a recording producer."""

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from milestream.pipeline.topology import OutRecord
from milestream.runtime.checkpoint import Checkpoint
from milestream.runtime.failure import DeliveryFailed
from milestream.runtime.partitions import CHANGELOG_OFFSET, OwnedState, PartitionStores, changelog_offset
from milestream.settings import Settings
from milestream.state.keys import Namespace

CHANGELOG = "app-customer-state-changelog"


class Journal(list):
    pass


class FakeProducer:
    """Acknowledges each send on the event loop's next turn (as a broker's answer arrives after
    the send), or never (``ack=False``); writes every step, acknowledgements included, to the journal."""

    def __init__(self, journal, *, ack=True, refuse_topic=None, batch_room=100):
        self.journal = journal
        self.batch_room = batch_room
        self.ack = ack
        self.refuse_topic = refuse_topic
        self.offsets = {}
        self.batches = []  # (topic, partition, [(key, value)]) of each batch sent

    async def begin_transaction(self):
        self.journal.append(("begin", ""))

    async def commit_transaction(self):
        self.journal.append(("commit_transaction", ""))

    async def send_offsets_to_transaction(self, offsets, group_id):
        self.journal.append(("offsets_to_transaction", dict(offsets)))

    def create_batch(self):
        return FakeBatch(self.batch_room)

    async def partitions_for(self, topic):
        return {0, 1, 2}

    async def send_batch(self, batch, topic, partition):
        if topic == self.refuse_topic:
            raise ValueError("MessageSizeTooLargeError")
        self.journal.append(("send_batch", topic, len(batch.records)))
        self.batches.append((topic, partition, list(batch.records)))
        future = asyncio.get_running_loop().create_future()
        if self.ack:
            offset = self.offsets.get((topic, partition), 0)
            self.offsets[(topic, partition)] = offset + len(batch.records)
            self._acknowledge_soon(future, topic, SimpleNamespace(partition=partition, offset=offset))
        return future

    def _acknowledge_soon(self, future, topic, metadata):
        def acknowledge():
            self.journal.append(("acked", topic))
            future.set_result(metadata)

        asyncio.get_running_loop().call_soon(acknowledge)


class FakeBatch:
    def __init__(self, room=100):
        self.records = []
        self.room = room

    def append(self, key, value, timestamp):
        if len(self.records) == self.room:
            return None
        self.records.append((key, value))
        return object()

    def record_count(self):
        return len(self.records)


class FakeConsumer:
    def __init__(self, journal):
        self.journal = journal

    async def commit(self, offsets):
        self.journal.append(("commit", dict(offsets)))


@pytest.fixture
def stores(tmp_path):
    stores = PartitionStores(Settings(data_dir=str(tmp_path)), CHANGELOG, 8)
    stores.folder.mkdir(parents=True)
    stores.stores[3] = stores._open(3)
    yield stores
    stores.close()


def checkpoint(stores, journal, exactly_once=False, **producer):
    producer = FakeProducer(journal, **producer)
    return Checkpoint(
        stores,
        producer,
        producer,
        FakeConsumer(journal),
        "app",
        exactly_once=exactly_once,
        delivery_timeout_s=0.05,
    )


def batch(point):
    overlay = point.overlay(3)
    overlay.put(Namespace.CUSTOMER.key("c1"), {"n": 1})
    overlay.put(Namespace.CUSTOMER.key("c1"), {"n": 2})  # written twice: one changelog record
    overlay.put(Namespace.CUSTOMER.key("c2"), {"n": 1})
    point.processed(TopicPartition("transactions", 3), 41, [OutRecord("promotions", b"c1", b"{}")])
    point.processed(TopicPartition("transactions", 3), 42, [])


def test_outputs_are_acknowledged_before_the_changelog_and_offsets_are_committed_last(stores):
    journal = Journal()
    point = checkpoint(stores, journal)
    batch(point)
    asyncio.run(point.commit())
    assert steps(journal) == [
        "send_batch:promotions",
        "acked:promotions",
        "begin:",
        f"send_batch:{CHANGELOG}",  # c1 (written twice) and c2: two records in one batch
        f"acked:{CHANGELOG}",
        "commit_transaction:",
        "commit:",
    ]
    assert [step[2] for step in journal if step[0] == "send_batch"] == [1, 2]
    assert journal[-1][1] == {TopicPartition("transactions", 3): 43}
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) == {"n": 2}
    assert changelog_offset(stores[3]) == 2  # both changelog records: the next offset to restore from


def test_leaderboard_entries_are_written_to_the_store_and_not_sent_to_the_changelog(stores):
    journal = Journal()
    producer = FakeProducer(journal)
    point = Checkpoint(
        stores, producer, producer, FakeConsumer(journal), "app", exactly_once=False, delivery_timeout_s=1
    )
    overlay = point.overlay(3)
    overlay.put(Namespace.CUSTOMER.key("c1"), {"n": 1})
    overlay.put_empty(Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00c1"))
    point.processed(TopicPartition("transactions", 3), 7, [])
    asyncio.run(point.commit())
    assert [(topic, [key for key, _ in records]) for topic, _, records in producer.batches] == [
        (CHANGELOG, [Namespace.CUSTOMER.key("c1").raw])
    ]
    assert stores[3].has(Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00c1"))
    assert changelog_offset(stores[3]) == 1
    # A checkpoint whose changes are all local (no state record) still writes them, at the same offset.
    point = Checkpoint(
        stores, producer, producer, FakeConsumer(journal), "app", exactly_once=False, delivery_timeout_s=1
    )
    point.overlay(3).delete(Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00c1"))
    point.processed(TopicPartition("transactions", 3), 8, [])
    asyncio.run(point.commit())
    assert not stores[3].has(Namespace.LEADERBOARD.key("m\x00t\x00001\x00digits\x00c1"))
    assert changelog_offset(stores[3]) == 1


def steps(journal):
    return [step[0] + ":" + (step[1] if isinstance(step[1], str) else "") for step in journal]


def test_exactly_once_puts_outputs_changelog_and_offsets_in_one_transaction(stores):
    journal = Journal()
    point = checkpoint(stores, journal, exactly_once=True)
    batch(point)
    asyncio.run(point.commit())
    assert steps(journal) == [
        "begin:",
        "send_batch:promotions",
        "acked:promotions",
        f"send_batch:{CHANGELOG}",
        f"acked:{CHANGELOG}",
        "offsets_to_transaction:",
        "commit_transaction:",
    ]
    assert journal[-2][1] == {TopicPartition("transactions", 3): 43}
    assert stores[3].get(Namespace.CUSTOMER.key("c2")) == {"n": 1}


def test_a_changelog_larger_than_a_producer_batch_goes_in_several_and_the_offset_counts_them_all(stores):
    journal = Journal()
    point = checkpoint(stores, journal, batch_room=1)
    batch(point)
    asyncio.run(point.commit())
    assert [step[2] for step in journal if step[:2] == ("send_batch", CHANGELOG)] == [1, 1]
    assert changelog_offset(stores[3]) == 2


def test_a_refused_output_commits_nothing_and_writes_no_state(stores):
    journal = Journal()
    point = checkpoint(stores, journal, refuse_topic="promotions")
    batch(point)
    with pytest.raises(DeliveryFailed, match="promotions"):
        asyncio.run(point.commit())
    assert not any(step[0] == "commit" for step in journal)
    assert not any(step[1] == CHANGELOG for step in journal if step[0] == "send_batch")
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) is None and stores[3].meta(CHANGELOG_OFFSET) is None


def test_an_unacknowledged_send_fails_after_the_delivery_timeout(stores):
    journal = Journal()
    point = checkpoint(stores, journal, ack=False)
    batch(point)
    with pytest.raises(DeliveryFailed, match="no acknowledgement from the broker in 0.05 s"):
        asyncio.run(point.commit())
    assert not any(step[0] == "commit" for step in journal)
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) is None


def test_outputs_sent_as_batches_end_are_each_sent_once_and_acknowledged_before_the_changelog(stores):
    journal = Journal()
    point = checkpoint(stores, journal, ack=False)  # the broker has not answered yet

    async def two_batches_then_commit():
        batch(point)
        await point.send_outputs()  # the first batch's output leaves at once
        assert steps(journal) == ["send_batch:promotions"]
        point.processed(TopicPartition("transactions", 3), 43, [OutRecord("late", b"c2", b"{}")])
        await point.send_outputs()
        await point.send_outputs()  # nothing new: nothing sent
        assert steps(journal) == ["send_batch:promotions", "send_batch:late"]
        await point.commit()

    with pytest.raises(DeliveryFailed):  # never acknowledged: nothing of the checkpoint is committed
        asyncio.run(two_batches_then_commit())
    assert steps(journal) == ["send_batch:promotions", "send_batch:late"]
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) is None

    journal = Journal()
    point = checkpoint(stores, journal)

    async def acknowledged():
        batch(point)
        await point.send_outputs()
        await point.commit()

    asyncio.run(acknowledged())
    assert steps(journal)[:3] == ["send_batch:promotions", "acked:promotions", "begin:"]
    assert steps(journal).count("send_batch:promotions") == 1


def test_exactly_once_sends_no_output_before_the_transaction(stores):
    journal = Journal()
    point = checkpoint(stores, journal, exactly_once=True)
    batch(point)
    asyncio.run(point.send_outputs())
    assert journal == []


def test_the_owned_state_view_cannot_be_listened_to(stores):
    """Nothing is written through it: a listener would hear nothing (listen to each partition's store)."""
    with pytest.raises(TypeError):
        OwnedState(stores).listen(lambda changes, existed: None)


def test_outputs_go_in_order_in_one_batch_per_topic_partition_where_the_producer_would_send_their_keys(stores):
    from aiokafka.partitioner import DefaultPartitioner

    journal = Journal()
    point = checkpoint(stores, journal, batch_room=2)
    keys = [f"customer-{n}".encode() for n in range(12)]
    outputs = [OutRecord("promotions", key, str(n).encode()) for n, key in enumerate(keys)]
    outputs.append(OutRecord("close-ticks", None, b"tick", partition=2))  # a chosen partition stays chosen
    point.processed(TopicPartition("transactions", 3), 41, outputs)
    asyncio.run(point.commit())
    producer = point._producer
    sent = [(topic, partition, key, value) for topic, partition, records in producer.batches for key, value in records]
    expected_partition = {key: DefaultPartitioner()(key, [0, 1, 2], [0, 1, 2]) for key in keys}
    assert len(set(expected_partition.values())) > 1  # the keys spread over partitions
    promotions = [(partition, key, value) for topic, partition, key, value in sent if topic == "promotions"]
    assert sorted(value for _, _, value in promotions) == sorted(out.value for out in outputs[:-1])  # each once
    assert all(partition == expected_partition[key] for partition, key, _ in promotions)
    for partition in (0, 1, 2):  # a partition's outputs in the order they were produced
        values = [int(value) for p, _, value in promotions if p == partition]
        assert values == sorted(values)
    assert all(len(records) <= 2 for _, _, records in producer.batches)  # several batches where one is full
    assert ("close-ticks", 2, None, b"tick") in sent


def test_a_checkpoint_over_a_sealed_one_reads_its_changes_before_they_are_in_the_store(stores):
    journal = Journal()
    first = checkpoint(stores, journal)
    batch(first)  # c1 = {"n": 2}, c2 = {"n": 1}
    first.overlay(3).put(Namespace.CUSTOMER.key("c3"), {"n": 5})
    first.seal()
    second = checkpoint(stores, journal).over(first)
    overlay = second.overlay(3)
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) is None  # not committed yet
    assert overlay.get(Namespace.CUSTOMER.key("c1")) == {"n": 2}
    assert sorted(overlay.keys(Namespace.CUSTOMER)) == ["c1", "c2", "c3"]
    overlay.put(Namespace.CUSTOMER.key("c1"), {"n": 3})  # the second checkpoint's own write
    overlay.delete(Namespace.CUSTOMER.key("c3"))
    second.processed(TopicPartition("transactions", 3), 43, [])

    asyncio.run(first.commit())  # the first commits while the second holds its changes
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) == {"n": 2}
    assert overlay.get(Namespace.CUSTOMER.key("c1")) == {"n": 3}
    assert sorted(overlay.keys(Namespace.CUSTOMER)) == ["c1", "c2"]

    asyncio.run(second.commit())
    assert stores[3].get(Namespace.CUSTOMER.key("c1")) == {"n": 3}
    assert not stores[3].has(Namespace.CUSTOMER.key("c3"))
    assert journal[-1] == ("commit", {TopicPartition("transactions", 3): 44})


def test_a_sealed_checkpoint_takes_no_more_changes_and_lets_go_of_the_one_under_it(stores):
    journal = Journal()
    first = checkpoint(stores, journal)
    batch(first)
    first.seal()
    second = checkpoint(stores, journal).over(first)
    second.overlay(3).put(Namespace.CUSTOMER.key("c9"), {"n": 1})
    second.processed(TopicPartition("transactions", 3), 50, [])
    asyncio.run(first.commit())
    second.seal()
    assert second._under is None and second.overlays == {}  # nothing older stays reachable
    third = checkpoint(stores, journal).over(second)
    assert third.overlay(3).get(Namespace.CUSTOMER.key("c9")) == {"n": 1}
    assert third.overlay(3).get(Namespace.CUSTOMER.key("c1")) == {"n": 2}  # from the store


def test_the_partition_stores_are_changelog_backed_and_flushed_when_due(stores):
    """The worker's loop asks its stores to flush what has waited long enough, written or idle."""
    import time

    from milestream.state.rocksdb import RocksDBStore
    from tests.support.stores import flushed, in_memory_only

    assert stores[3]._flush_interval_s is not None  # no write-ahead log: the changelog is its log
    stores.stores[4] = RocksDBStore(stores.folder / "4", changelog_flush_interval_s=0.3)
    stores[4].write({b"c:a": b"{}"}, {CHANGELOG_OFFSET: b"1"})
    stores.flush_due()
    assert in_memory_only(stores[4]) == 2  # not due yet
    time.sleep(0.4)
    stores.flush_due()  # no write since
    assert flushed(stores[4])
