"""Pytest plugin: a real Kafka broker for the test session.

Loaded with ``-p tests.support.kafka_broker`` (see ``addopts`` in pyproject.toml).
Tests that need Kafka take the session-scoped ``kafka_bootstrap`` fixture, a
``host:port`` bootstrap string. Where the broker comes from, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` is set: that (already running) cluster is used.
2. ``MILESTREAM_TEST_DOCKER=1`` and ``testcontainers`` is installed: a Kafka
   container is started (image from ``MILESTREAM_TEST_KAFKA_IMAGE`` if set).
3. Otherwise a local broker is started from the jars fetched by
   ``deploy/local_kafka.py`` (Java 17+ and Maven needed), on free ports, with
   fresh storage in a temporary folder, and stopped at the end of the session.

No broker is started unless a test asks for ``kafka_bootstrap``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from types import ModuleType

import pytest


def load_local_kafka() -> ModuleType:
    """``deploy/local_kafka.py``, which starts and stops the local broker."""
    from deploy import local_kafka

    return local_kafka


def _docker_requested() -> bool:
    if os.environ.get("MILESTREAM_TEST_DOCKER") != "1":
        return False
    return importlib.util.find_spec("testcontainers") is not None


def _docker_broker() -> Iterator[str]:
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers < 4.14
        from testcontainers.kafka import KafkaContainer

    image = os.environ.get("MILESTREAM_TEST_KAFKA_IMAGE")
    container = KafkaContainer(image) if image else KafkaContainer()
    container = container.with_kraft()
    with container:
        yield container.get_bootstrap_server()


def _local_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    local_kafka = load_local_kafka()
    run_dir = tmp_path_factory.mktemp("kafka")
    broker = None
    error = ""
    try:
        local_kafka.fetch()
        broker = local_kafka.start(run_dir, fresh=True)
    except local_kafka.KafkaError as exc:
        error = str(exc)
    if broker is None:
        # Outside the except block, so the report is not doubled by exception chaining.
        pytest.fail(f"local Kafka broker did not start: {error}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address (``host:port``) of a Kafka broker for this test session."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
    elif _docker_requested():
        yield from _docker_broker()
    else:
        yield from _local_broker(tmp_path_factory)
