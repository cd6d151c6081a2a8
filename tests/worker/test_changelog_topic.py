"""The changelog topic `topics apply` and the worker create is the one Faust's table writes to."""

from milestream.settings import Settings
from milestream.topics import STATE_TABLE, changelog_topics, load_topics, topics_to_apply
from milestream.worker.app import create_app


def test_the_declared_changelog_is_the_state_tables_own():
    settings = Settings(app_id="shop-a", topic_prefix="shop.")
    table = create_app(settings).tables[STATE_TABLE]
    (spec,) = changelog_topics(settings, load_topics(settings)).values()
    assert spec.name == table.changelog_topic_name == "shop-a-customer-state-changelog"
    assert spec.partitions == table.partitions == load_topics(settings)["transactions"].partitions
    assert spec.config == {"cleanup.policy": "compact"}
    assert spec.name in topics_to_apply(settings)
