"""`milestream replay` without a broker: green's names, comparing promotions, the command's refusals."""

import orjson
import pytest

from milestream.cli import main
from milestream.errors import UsageError
from milestream.replay import (
    check_green,
    compare_events,
    differing_fields,
    events_by_id,
    green_settings,
    report,
)
from milestream.settings import Settings

LIVE = Settings.from_env({"MILESTREAM_APP_ID": "blue", "MILESTREAM_TOPIC_PREFIX": "shop."})


def event(event_id: str, **fields) -> dict:
    return {
        "type": "milestone_event",
        "event_id": event_id,
        "kind": "achievement",
        "customer_id": "alice",
        "milestone_id": "m",
        "cycle": {"index": 2, "name": "m #2"},
        "defined_value": "5000",
        "occurred_at": "2026-01-02T00:00:00.000000Z",
        "cause": "shop.transactions/3/17",
        **fields,
    }


def test_green_gets_its_own_app_id_and_output_prefix():
    green = green_settings(LIVE, "green", "shop.green.")
    check_green(LIVE, green)
    assert (green.app_id, green.topic_prefix, green.output_prefix, green.replaying) == (
        "green",
        "shop.",
        "shop.green.",
        True,
    )


@pytest.mark.parametrize(
    ("app_id", "prefix", "says"),
    [
        ("blue", "shop.green.", "is the live deployment's (MILESTREAM_APP_ID)"),
        ("green", "shop.", "--output-prefix 'shop.' is the live deployment's"),
        ("green", "", "--output-prefix 'shop.' is the live deployment's"),  # empty: the topic prefix
        ("green", "shop green.", "is no valid topic name"),
        (" ", "shop.green.", "--app-id must not be empty"),
    ],
)
def test_a_green_sharing_anything_with_blue_is_refused(app_id, prefix, says):
    with pytest.raises(UsageError) as refused:
        check_green(LIVE, green_settings(LIVE, app_id, prefix))
    assert says in str(refused.value)


def test_a_green_whose_topic_names_are_blues_is_refused(tmp_path):
    """However the prefixes and the logical names of a topics file combine, green writes no topic of blue's."""
    topics = tmp_path / "topics.yaml"
    topics.write_text(
        "topics:\n"
        "  transactions: {role: input, partitions: 1, replication_factor: 1, value: [transaction]}\n"
        "  definitions: {role: input, partitions: 1, replication_factor: 1, value: [milestone_definition]}\n"
        "  actions: {role: output, owned: true, partitions: 1, replication_factor: 1, value: [milestone_event]}\n"
    )
    live = Settings.from_env({"MILESTREAM_TOPICS_FILE": str(topics), "MILESTREAM_TOPIC_PREFIX": "shop."})
    check_green(live, green_settings(live, "green", "shop.green."))
    with pytest.raises(UsageError, match="green would write on blue's topic shop.transactions"):
        check_green(live, green_settings(live, "green", "shop.trans"))


def test_equal_events_compare_equal_whatever_their_cause():
    blue = {"a": event("a"), "b": event("b", kind="sub_target")}
    green = {"a": event("a", cause="shop.transactions/3/18"), "b": event("b", kind="sub_target")}
    comparison = compare_events(blue, green)
    assert comparison.equal and comparison.counts() == "0 missing in green, 0 extra in green, 0 different"


def test_the_moment_of_what_the_clock_caused_is_not_compared():
    close = event("c", kind="cycle_close", cause="cycle-end")
    assert differing_fields(close, {**close, "occurred_at": "2026-02-01T00:00:10.000000Z"}) == []
    # ... but an input's moment is
    assert differing_fields(event("a"), event("a", occurred_at="2026-02-01T00:00:00.000000Z")) == ["occurred_at"]
    # and so is any other field of a close
    assert differing_fields(close, {**close, "defined_value": "6000"}) == ["defined_value"]


def test_missing_extra_and_different_events_are_reported_with_examples():
    blue = {"a": event("a"), "b": event("b", customer_id="carol"), "c": event("c")}
    green = {"a": event("a", defined_value="6000", targets=[1]), "c": event("c"), "d": event("d", kind="sub_target")}
    comparison = compare_events(blue, green)
    assert (comparison.missing, comparison.extra, comparison.different) == (
        ["b"],
        ["d"],
        {"a": ["defined_value", "targets"]},
    )
    assert report(comparison) == [
        "missing in green: 1",
        "  b (achievement carol m #2)",
        "extra in green: 1",
        "  d (sub_target alice m #2)",
        "different: 1",
        "  a (achievement alice m #2): defined_value '5000' -> '6000'; targets",
    ]


def test_events_are_taken_once_by_id_and_records_without_one_counted():
    first, repeat = orjson.dumps(event("a")), orjson.dumps(event("a", cause="shop.transactions/3/99"))
    events, records, unreadable = events_by_id([first, repeat, b"not json", None, b'{"no": "id"}'])
    assert list(events) == ["a"] and events["a"]["cause"] == "shop.transactions/3/17"
    assert (records, unreadable) == (5, 3)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["replay", "start", "--app-id", "milestream", "--output-prefix", "g."], "is the live deployment's"),
        (["replay", "start", "--app-id", "g", "--output-prefix", "milestream."], "--output-prefix 'milestream.'"),
        (["replay", "status", "--app-id", "milestream"], "is the live deployment's"),
        (["replay", "compare", "--output-prefix", "milestream."], "--output-prefix 'milestream.'"),
        (["replay", "switch", "--app-id", "g", "--output-prefix", ""], "--output-prefix 'milestream.'"),
    ],
)
def test_bad_input_is_one_line_before_any_broker_is_asked(argv, says, capsys, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    for variable in ("MILESTREAM_APP_ID", "MILESTREAM_TOPIC_PREFIX", "MILESTREAM_OUTPUT_TOPIC_PREFIX"):
        monkeypatch.delenv(variable, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err and err.startswith("milestream: ")


def test_an_unreachable_broker_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("MILESTREAM_COMMAND_TIMEOUT", "2")
    assert main(["replay", "status", "--app-id", "green"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("milestream: replay status: cannot connect to the Kafka broker")
