"""The compiled partitioner agrees with the Kafka client's: an output goes where a send would put it."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as client_murmur2

from milestream.pipeline.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("data", "java"),
    [  # the Java client's own vectors (UtilsTest.testMurmur2), signed as Java returns them
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_known_hashes(data: bytes, java: int) -> None:
    assert murmur2(data) == client_murmur2(data) == java & 0xFFFFFFFF


def test_agrees_with_the_client_on_random_keys() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        key = rng.randbytes(rng.randrange(0, 64))
        assert murmur2(key) == client_murmur2(key)


def test_partition_for_is_the_default_partitioners() -> None:
    rng = random.Random(11)
    for count in (1, 3, 8, 12, 50):
        partitions = list(range(count))
        for _ in range(500):
            key = f"cust-{rng.randrange(10**7):07d}".encode()
            assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
