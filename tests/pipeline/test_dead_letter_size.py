"""A dead letter always fits in a Kafka message, however large the record it is about."""

import base64
import hashlib

import orjson

from milestream.pipeline.driver import TopologyTestDriver
from milestream.schemas.outputs import DeadLetter
from milestream.settings import Settings
from tests.factories import at

WHEN = "2024-01-05T10:00:00+05:30"


def test_a_record_near_the_broker_limit_yields_a_small_dead_letter_that_says_it_was_cut():
    driver = TopologyTestDriver()
    value = b'{"type":"transaction","pad":"' + b"x" * 900_000 + b'"}'
    key = b"k" * 900_000
    processed = driver.pipe("transactions", key, value, timestamp=at(WHEN))
    assert processed.outcome == "oversize_payload"
    ((dl_key, raw),) = driver.produced[driver.topic("dead-letters")]
    assert len(raw) < 64 * 1024 and len(dl_key) == 16 * 1024
    letter = DeadLetter.model_validate_json(raw)
    assert letter.truncated is True
    assert letter.value_bytes == len(value) and letter.key_bytes == len(key)
    assert letter.value_sha256 == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(letter.value_b64) == value[: 16 * 1024]
    assert base64.b64decode(letter.key_b64 or "") == key[: 16 * 1024]


def test_the_kept_prefix_is_a_setting_and_a_small_record_is_kept_whole():
    driver = TopologyTestDriver(Settings(dead_letter_original_bytes=10))
    driver.pipe("transactions", "c1", b"not json at all", timestamp=at(WHEN))
    driver.pipe("transactions", None, b"[1]", timestamp=at(WHEN))
    cut, whole = (orjson.loads(raw) for _, raw in driver.produced[driver.topic("dead-letters")])
    assert (base64.b64decode(cut["value_b64"]), cut["value_bytes"], cut["truncated"]) == (b"not json a", 15, True)
    assert (base64.b64decode(whole["value_b64"]), whole["truncated"]) == (b"[1]", False)
    assert whole["key_b64"] is None and whole["key_bytes"] is None
