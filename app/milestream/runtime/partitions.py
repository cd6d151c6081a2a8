"""One RocksDB store per assigned partition, restored from the changelog topic.

Every customer-keyed input topic has the same number of partitions and a
customer's records land on the same partition number in each (co-partitioned),
so a partition number names one slice of customers and one store:
``<data dir>/partitions/<n>``. Its changelog is partition ``n`` of the
changelog topic, one record per key a checkpoint changed.

Beside the state, each store keeps the changelog offset it reflects (written in
the same RocksDB write batch as the state, runtime/checkpoint.py). When a
partition is assigned, only the changelog's tail after that offset is read: a
worker that kept its disk restores in a moment; a new one reads the whole
(compacted) changelog. A store ahead of its changelog (the topic was recreated)
is discarded and rebuilt. The stores skip RocksDB's write-ahead log (state/rocksdb.py): after
a crash a store reopens at the offset of its last flushed write, and the restore reads the
changelog from there. Leaderboard entries are never in the changelog: each
state record restored brings the entries it implies (pipeline/read_index.py).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from .. import metrics
from ..kafka_client import client_options
from ..pipeline.read_index import derived_board_entries, on_a_board, restored_board_changes
from ..settings import Settings
from ..state.base import Listener, StateStore
from ..state.keys import in_changelog
from ..state.rocksdb import RocksDBStore
from .clients import started

log = logging.getLogger("milestream.runtime")

CHANGELOG_OFFSET = "changelog-offset"  # the store's meta entry: the next changelog offset to read
RESTORE_BATCH = 10_000


def changelog_offset(store: RocksDBStore) -> int:
    raw = store.meta(CHANGELOG_OFFSET)
    return int(raw) if raw is not None else 0


class PartitionsMismatch(Exception):
    """The changelog topic has another number of partitions than the input topics: state could not
    be kept per partition. The topic must be recreated (or the input topics' partitions restored)."""


class PartitionStores:
    """The stores of the partitions this worker owns, by partition number."""

    def __init__(self, settings: Settings, changelog_topic: str, partitions: int) -> None:
        self.settings = settings
        self.changelog_topic = changelog_topic
        self.partitions = partitions  # of the input topics, and so of the changelog
        self.folder = Path(settings.data_dir) / "partitions"
        self.stores: dict[int, RocksDBStore] = {}

    def __contains__(self, partition: int) -> bool:
        return partition in self.stores

    def __getitem__(self, partition: int) -> RocksDBStore:
        return self.stores[partition]

    def owned(self) -> list[int]:
        return sorted(self.stores)

    def _open(self, partition: int) -> RocksDBStore:
        return RocksDBStore(
            self.folder / str(partition), changelog_flush_interval_s=self.settings.state_flush_interval_s
        )

    async def assign(self, partitions: Iterable[int]) -> None:
        """Open and restore the stores of newly assigned partitions."""
        new = sorted(set(partitions) - set(self.stores))
        if not new:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        opened = {partition: self._open(partition) for partition in new}
        await self._restore(opened)
        self.stores.update(opened)
        metrics.OWNED_PARTITIONS.set(len(self.stores))

    def revoke(self, partitions: Iterable[int]) -> None:
        """Close the stores of revoked partitions (their files stay, for a later return)."""
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
        metrics.OWNED_PARTITIONS.set(len(self.stores))

    def close(self) -> None:
        self.revoke(list(self.stores))

    def flush_due(self) -> None:
        """Flush the stores whose oldest write not on disk has waited long enough (state/rocksdb.py)."""
        for store in self.stores.values():
            store.flush_if_due()

    def _emptied(self, store: RocksDBStore, partition: int) -> RocksDBStore:
        store.close()
        shutil.rmtree(store.path, ignore_errors=True)
        return self._open(partition)

    async def _restore(self, stores: dict[int, RocksDBStore]) -> None:
        began = time.monotonic()
        # The changelog is always read committed: a batch's state changes are one transaction (checkpoint.py).
        consumer = await started(
            lambda: AIOKafkaConsumer(
                **client_options(self.settings),
                enable_auto_commit=False,
                isolation_level="read_committed",
                client_id=f"{self.settings.app_id}-restore",
                max_partition_fetch_bytes=8 * 1024 * 1024,
            ),
            self.settings,
            "restoring state",
        )
        try:
            await self._check_partitions(consumer)
            tps = {TopicPartition(self.changelog_topic, p): p for p in stores}
            consumer.assign(list(tps))
            ends = await consumer.end_offsets(list(tps))
            starts = await consumer.beginning_offsets(list(tps))
            pending: dict[TopicPartition, int] = {}
            from_scratch: set[int] = set()  # stores restored from empty: entries derived at the end
            boards: set[int] = set()  # of those, the ones whose state may imply leaderboard entries
            for tp, partition in tps.items():
                local = changelog_offset(stores[partition])
                if local > ends[tp]:
                    log.warning(
                        "partition %d: the local store is ahead of its changelog (%d > %d): rebuilding it",
                        partition,
                        local,
                        ends[tp],
                    )
                    stores[partition] = self._emptied(stores[partition], partition)
                    local = 0
                elif local == 0 and not stores[partition].empty():
                    # A restore from scratch writes its offset only once it has derived the
                    # leaderboard entries, at its end: this one was interrupted. Start it again.
                    log.warning("partition %d: the restore of its store did not finish: rebuilding it", partition)
                    stores[partition] = self._emptied(stores[partition], partition)
                if local == 0:
                    from_scratch.add(partition)
                start = max(local, starts[tp])
                if start < ends[tp]:
                    consumer.seek(tp, start)
                    pending[tp] = ends[tp]
                else:
                    consumer.pause(tp)
            metrics.RESTORING_PARTITIONS.set(len(pending))
            restored = 0
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=1000, max_records=RESTORE_BATCH)
                for tp, messages in batches.items():
                    if not messages:
                        continue
                    partition = tps[tp]
                    store = stores[partition]
                    # Leaderboard entries are derived from the state records (a changelog written
                    # before they were kept local may hold some: those are skipped).
                    changes = {m.key: m.value for m in messages if m.key is not None and in_changelog(m.key)}
                    if partition in from_scratch:
                        if partition not in boards and on_a_board(changes):
                            boards.add(partition)
                        store.write(changes)
                    else:
                        changes.update(restored_board_changes(changes, store))
                        store.write(changes, {CHANGELOG_OFFSET: str(messages[-1].offset + 1).encode()})
                    restored += len(messages)
                    metrics.RESTORED_RECORDS.inc(len(messages))
                for tp in list(pending):
                    position = await consumer.position(tp)
                    if position >= pending[tp]:
                        store = stores[tps[tp]]
                        if tps[tp] in boards:
                            for entries in derived_board_entries(store, RESTORE_BATCH):
                                store.write(entries)
                        # Transaction markers take offsets too: record where the changelog really ends.
                        store.write({}, {CHANGELOG_OFFSET: str(position).encode()})
                        del pending[tp]
                        consumer.pause(tp)
                metrics.RESTORING_PARTITIONS.set(len(pending))
            if restored:
                log.info(
                    "restored partitions %s: %d changelog records in %.1f s",
                    sorted(stores),
                    restored,
                    time.monotonic() - began,
                )
        finally:
            await consumer.stop()

    async def _check_partitions(self, consumer: AIOKafkaConsumer) -> None:
        cluster = await consumer._client.fetch_all_metadata()  # not only the assigned topics'
        found = cluster.partitions_for_topic(self.changelog_topic)
        if found is None:
            raise PartitionsMismatch(
                f"the changelog topic {self.changelog_topic} does not exist (run `milestream topics apply`)"
            )
        if len(found) != self.partitions:
            raise PartitionsMismatch(
                f"the changelog topic {self.changelog_topic} has {len(found)} partitions, the input topics "
                f"{self.partitions}: state is kept per partition, so they must match (recreate the changelog "
                "topic with `milestream topics apply` after deleting it; workers rebuild it from their stores)"
            )


class OwnedState(StateStore):
    """Every store this worker owns, read as one (the HTTP pages): a key is looked up in each."""

    def __init__(self, stores: PartitionStores) -> None:
        self._stores = stores

    def _each(self) -> list[RocksDBStore]:
        return [self._stores[p] for p in self._stores.owned()]

    def listen(self, listener: Listener, prefix: bytes = b"") -> None:
        raise TypeError("the owned-state view is never written to: listen to each partition's store")

    def _get(self, raw_key: bytes) -> bytes | None:
        for store in self._each():
            value = store._get(raw_key)
            if value is not None:
                return value
        return None

    def _put(self, raw_key: bytes, raw_value: bytes) -> None:
        raise TypeError("the owned-state view is read-only: state is written by the batch runtime")

    def _delete(self, raw_key: bytes) -> None:
        raise TypeError("the owned-state view is read-only: state is written by the batch runtime")

    def _scan(self, prefix: bytes) -> Iterator[bytes]:
        keys: set[bytes] = set()
        for store in self._each():
            keys.update(store._scan(prefix))
        return iter(sorted(keys))
