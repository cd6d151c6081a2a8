"""Topic names: the shared inputs under MILESTREAM_TOPIC_PREFIX, a deployment's own topics under
MILESTREAM_OUTPUT_TOPIC_PREFIX."""

from milestream.settings import Settings
from milestream.topics import load_topics, owned_topics, topics_to_apply, written_topics

OWNED = {"promotions", "lifetime-points", "late-events", "dead-letters", "close-ticks", "series-commands"}


def test_by_default_every_topic_has_the_topic_prefix():
    settings = Settings.from_env({})
    assert settings.output_prefix == "milestream." and not settings.replaying
    specs = load_topics(settings)
    assert {spec.name for spec in specs.values()} == {f"milestream.{logical}" for logical in specs}
    assert written_topics(settings, specs) == {spec.name for spec in specs.values()}


def test_the_output_prefix_names_the_owned_topics_only():
    settings = Settings.from_env({"MILESTREAM_TOPIC_PREFIX": "shop.", "MILESTREAM_OUTPUT_TOPIC_PREFIX": "green."})
    assert settings.replaying
    specs = load_topics(settings)
    assert set(owned_topics(specs)) == OWNED
    for logical, spec in specs.items():
        assert spec.name == ("green." if logical in OWNED else "shop.") + logical


def test_every_output_is_owned():
    specs = load_topics(Settings.from_env({}))
    assert {spec.logical for spec in specs.values() if spec.role in ("output", "dead-letter")} <= OWNED


def test_a_replay_writes_only_what_it_owns():
    """The enrolments of a definition's customer list and republished definitions are the live
    deployment's to write: a replay reads them from the shared topics."""
    settings = Settings.from_env({"MILESTREAM_OUTPUT_TOPIC_PREFIX": "green."})
    specs = load_topics(settings)
    assert written_topics(settings, specs) == {f"green.{logical}" for logical in OWNED}
    assert "milestream.enrolments" not in written_topics(settings, specs)


def test_the_changelog_and_leader_topics_are_owned_and_named_by_the_app_id():
    settings = Settings.from_env({"MILESTREAM_APP_ID": "green", "MILESTREAM_OUTPUT_TOPIC_PREFIX": "green."})
    owned = owned_topics(topics_to_apply(settings))
    assert {"green-customer-state-changelog", "green-definitions-__assignor-__leader"} <= set(owned)
    assert {spec.name for spec in owned.values()} == {
        *(f"green.{logical}" for logical in OWNED),
        "green-customer-state-changelog",
        "green-definitions-__assignor-__leader",
    }
