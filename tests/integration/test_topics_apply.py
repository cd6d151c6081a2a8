"""`milestream topics apply` against the real broker: idempotent, reports drift, never deletes."""

import asyncio
from dataclasses import replace

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from milestream.topics import apply_topics, load_topics, topics_to_apply
from tests.support.worker import isolated_settings

pytestmark = pytest.mark.kafka


def test_apply_creates_then_reports_ok_then_drift(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    specs = load_topics(settings)
    first = asyncio.run(apply_topics(settings, specs))
    assert all(line.startswith("created") for line in first) and len(first) == len(specs)
    second = asyncio.run(apply_topics(settings, specs))
    assert all(line.startswith("ok") for line in second), second

    async def list_topic_names():
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            names = await admin.list_topics()
        finally:
            await admin.close()
        return names

    names = asyncio.run(list_topic_names())
    assert {s.name for s in specs.values()} <= set(names)

    # Declare more partitions and another retention: apply reports drift and changes nothing.
    grown = dict(specs)
    grown["returns"] = replace(specs["returns"], partitions=specs["returns"].partitions + 4)
    grown["promotions"] = replace(specs["promotions"], config={**specs["promotions"].config, "retention.ms": "1000"})
    third = asyncio.run(apply_topics(settings, grown))
    drift = [line for line in third if line.startswith("drift")]
    assert len(drift) == 2, third
    assert any("partitions 8 (declared 12)" in line for line in drift)
    assert any("retention.ms=2592000000 (declared 1000)" in line for line in drift)


def test_topics_apply_creates_the_state_changelog_as_faust_names_it(kafka_bootstrap, tmp_path):
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    report = asyncio.run(apply_topics(settings, topics_to_apply(settings)))
    changelog = f"{settings.app_id}-customer-state-changelog"
    assert f"created {changelog} (8 partitions)" in report
    again = asyncio.run(apply_topics(settings, topics_to_apply(settings)))
    assert f"ok {changelog}" in again
