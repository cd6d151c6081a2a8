"""The changelog topic `topics apply` and the worker create is the one the batch runtime writes to."""

from milestream.pipeline.topology import Topology
from milestream.runtime.processor import BatchProcessor
from milestream.settings import Settings
from milestream.topics import changelog_topics, load_topics, topics_to_apply


def test_the_declared_changelog_is_the_state_stores_own():
    settings = Settings(app_id="shop-a", topic_prefix="shop.")
    topics = load_topics(settings)
    processor = BatchProcessor(settings, Topology(settings, topics), lambda observed: None)
    (spec,) = changelog_topics(settings, topics).values()
    assert spec.name == processor.stores.changelog_topic == "shop-a-customer-state-changelog"
    assert spec.partitions == topics["transactions"].partitions == topics["close-ticks"].partitions
    assert spec.config == {"cleanup.policy": "compact"}
    assert spec.name in topics_to_apply(settings)
