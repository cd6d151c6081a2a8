"""Hostile customer ids cannot reach another customer's state or the topology's own keys.

The schemas reject control characters in ids; these tests bypass that validation on
purpose, so they show that the state store's key namespaces hold on their own.
"""

from __future__ import annotations

import orjson
import pytest

from milestream.schemas.codec import Decoder
from tests.engine.builders import at, calendar, close, definition, load, target, txn

JAN_5 = "2024-01-05T10:00:00+05:30"
FEB_1 = "2024-02-01T00:00:00+05:30"


class AnyCustomerId:
    """A decoder that lets any customer id through, as if the schema's id rules were bypassed."""

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    def decode_document(self, value: bytes | None):
        data = orjson.loads(value or b"null")
        event = self.decoder.decode(orjson.dumps({**data, "customer_id": "placeholder"}))
        return event.model_copy(update={"customer_id": data["customer_id"]}), data


@pytest.fixture
def unvalidated(driver):
    topic = driver.topic("transactions")
    driver.topology._decoders[topic] = AnyCustomerId(driver.topology._decoders[topic])
    load(driver, definition(cycles=calendar("monthly", "2024-01-01", 3), targets=[target(value="5000")]))
    return driver


def hostile(driver, customer_id: str, n: int) -> None:
    processed = driver.pipe(
        "transactions", customer_id, txn(customer_id, JAN_5, "100", event_id=f"hostile-{n}"), timestamp=at(JAN_5)
    )
    assert processed.outcome in ("applied", "no_output"), processed.outcome


ATTACKS = {
    "outbox-suffix": ["victim\x00outbox"],
    "close-index": [f"\x00close:{p}" for p in range(8)],
    "tick-memory": ["\x00tick:0:0", "\x00tick:0:1"],
    "tag-lookalikes": ["o:victim", "c:victim", "o\x00victim", "victim\x00"],
}


@pytest.mark.parametrize("attackers", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_hostile_customer_id_leaves_the_victims_outbox_and_close_index_intact(unvalidated, attackers):
    driver = unvalidated
    for n, customer_id in enumerate(attackers):  # first on the partition
        hostile(driver, customer_id, n)
    driver.pipe("transactions", "victim", txn("victim", JAN_5, "3000", event_id="victim-1"), timestamp=at(JAN_5))
    # The victim's next purchase is applied and yields its achievement.
    second = txn("victim", JAN_5, "3000", event_id="victim-2")
    first = driver.pipe("transactions", "victim", second, timestamp=at(JAN_5), offset=1000)
    assert [orjson.loads(r.value)["kind"] for r in first.records] == ["achievement"]
    for n, customer_id in enumerate(attackers):  # again, now that the victim has an outbox
        hostile(driver, customer_id, 100 + n)

    # A redelivery of that purchase re-emits the very same outputs from the victim's outbox.
    again = driver.pipe("transactions", "victim", second, timestamp=at(JAN_5), offset=1000)
    assert again.outcome == "duplicate"
    assert [r.value for r in again.records] == [r.value for r in first.records]
    # The partition's closes still run: the victim's January closes once, and so does each hostile id's.
    close(driver, FEB_1)
    # (Read raw: the output schema would refuse the hostile ids these tests smuggle past the input schema.)
    raw_closes = [
        (e["customer_id"], e["cycle"]["index"], e["achieved_value"])
        for e in driver.read("promotions")
        if e["kind"] == "cycle_close"
    ]
    assert sorted(raw_closes) == sorted([("victim", 1, "6000"), *((c, 1, "200") for c in attackers)])
