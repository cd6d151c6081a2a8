"""Kafka messages become records with the time Kafka gives them, whichever client read them."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers.aiokafka import Consumer as FaustAiokafkaConsumer
from faust.types.tuples import TP

from milestream.worker.records import record_from_aiokafka, record_from_faust, record_time

RECORDED = datetime(2026, 11, 20, 12, 35, 0, 250_000, tzinfo=timezone.utc)
CREATE_TIME, LOG_APPEND_TIME = 0, 1


def consumer_record(timestamp_ms: int | None, timestamp_type: int = CREATE_TIME) -> ConsumerRecord:
    return ConsumerRecord(
        "milestream.transactions", 3, 1234, timestamp_ms, timestamp_type, b"cust-42", b"{}", None, 7, 2, []
    )


def as_faust_message(record: ConsumerRecord):
    """What Faust's aiokafka driver makes of the record: the message the worker's agent sees."""
    driver = SimpleNamespace(app=SimpleNamespace(consumer_generation_id=1))
    return FaustAiokafkaConsumer._to_message(driver, TP(record.topic, record.partition), record)


@pytest.mark.parametrize("timestamp_type", [CREATE_TIME, LOG_APPEND_TIME])
def test_both_clients_give_the_same_time_for_the_same_kafka_record(timestamp_type):
    kafka_record = consumer_record(int(RECORDED.timestamp() * 1000), timestamp_type)
    from_aiokafka = record_from_aiokafka(kafka_record)
    from_faust = record_from_faust(as_faust_message(kafka_record))
    assert from_aiokafka.timestamp == from_faust.timestamp == RECORDED
    assert from_faust.source == from_aiokafka.source == "milestream.transactions/3/1234"
    assert (from_faust.key, from_faust.value) == (b"cust-42", b"{}")


def test_faust_gives_seconds_and_aiokafka_milliseconds():
    """The fact the conversions rest on, checked against the installed Faust."""
    kafka_record = consumer_record(1_700_000_000_123)
    assert as_faust_message(kafka_record).timestamp == pytest.approx(1_700_000_000.123)


@pytest.mark.parametrize("seconds", [None, -0.001, float("nan"), 1e12, 7258118400.0])
def test_a_record_without_a_usable_timestamp_counts_as_recorded_when_read(seconds):
    read_at = datetime(2026, 12, 2, 13, 0, tzinfo=timezone.utc)
    assert record_time(seconds, read_at) == read_at


def test_a_missing_or_absurd_kafka_timestamp_never_raises():
    for millis in (None, -1, 2**62):
        record = record_from_aiokafka(consumer_record(millis))
        assert abs(record.timestamp - datetime.now(timezone.utc)).total_seconds() < 60
