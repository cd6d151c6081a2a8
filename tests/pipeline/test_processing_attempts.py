"""An exception while processing is never taken for bad input (pipeline/attempts.py)."""

from typing import Any

import orjson
import pytest

from milestream.pipeline.attempts import InfrastructureFailure, ProcessingAttempts, RetryLater
from milestream.pipeline.driver import TopologyTestDriver
from milestream.pipeline.topology import Record
from milestream.state.keys import Namespace, StateKey
from milestream.state.memory import MemoryStore
from tests.factories import at, monthly_gross_definition, transaction

WHEN = "2024-01-05T10:00:00+05:30"


class BrokenDiskStore(MemoryStore):
    def put(self, key: StateKey, state: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")


class PoisonedStore(MemoryStore):
    """Fails, as a bug would, on every write of one customer."""

    def put(self, key: StateKey, state: dict[str, Any]) -> None:
        if key.id.startswith("poison"):
            raise RuntimeError("state of poison cannot be written")
        super().put(key, state)


def loaded(store: MemoryStore) -> TopologyTestDriver:
    driver = TopologyTestDriver(store=store)
    driver.pipe("definitions", "m-monthly", monthly_gross_definition())
    return driver


def record(driver: TopologyTestDriver, customer: str, offset: int, amount: str = "6000") -> Record:
    value = orjson.dumps(transaction(customer, amount, WHEN, offset))
    return Record(driver.topic("transactions"), 0, offset, customer.encode(), value, at(WHEN))


def test_a_store_failure_propagates_and_is_never_dead_lettered():
    driver = loaded(BrokenDiskStore())
    with pytest.raises(OSError):
        driver.topology.process(record(driver, "c1", 0), driver.store)
    attempts = ProcessingAttempts(max_attempts=3)
    for _ in range(10):  # however often it fails: the worker restarts, the record stays
        with pytest.raises(InfrastructureFailure, match="No space left"):
            attempts.process(driver.topology, record(driver, "c1", 0), driver.store)


def test_a_poison_record_is_dead_lettered_after_the_last_attempt_and_the_next_records_flow():
    driver = loaded(PoisonedStore())
    attempts = ProcessingAttempts(max_attempts=5)
    poison = record(driver, "poison", 0)
    for attempt in range(1, 5):
        with pytest.raises(RetryLater) as failed:
            attempts.process(driver.topology, poison, driver.store)
        assert failed.value.attempt == attempt
    processed = attempts.process(driver.topology, poison, driver.store)
    assert (processed.outcome, processed.poison) == ("processing_error", True)
    letter = orjson.loads(processed.records[0].value)
    assert letter["reason"] == "processing_error" and "failed 5 times" in letter["detail"]
    assert attempts.failures == {}

    after = attempts.process(driver.topology, record(driver, "c2", 1), driver.store)
    assert after.outcome == "applied" and not after.poison
    assert [orjson.loads(r.value)["kind"] for r in after.records] == ["achievement"]


def test_a_record_that_succeeds_on_retry_is_applied_once_and_forgotten():
    class FlakyStore(MemoryStore):
        failures = 1

        def put(self, key: StateKey, state: dict[str, Any]) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("transient")
            super().put(key, state)

    driver = loaded(FlakyStore())
    attempts = ProcessingAttempts(max_attempts=5)
    with pytest.raises(RetryLater):
        attempts.process(driver.topology, record(driver, "c1", 0), driver.store)
    processed = attempts.process(driver.topology, record(driver, "c1", 0), driver.store)
    assert processed.outcome == "applied" and attempts.failures == {}
    assert driver.store.get(Namespace.CUSTOMER.key("c1"))["o"] == {f"{driver.topic('transactions')}/0": 0}
