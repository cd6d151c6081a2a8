"""The README and topics.yaml stay true to the code."""

import re
from pathlib import Path

import pytest

from milestream.schemas.codec import ALL_INPUT_MODELS
from milestream.schemas.export import OUTPUT_MODELS
from milestream.settings import Settings
from milestream.topics import load_topics

ROOT = Path(__file__).resolve().parents[1]


def test_readme_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- settings:start -->")[1].split("<!-- settings:end -->")[0]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| `([^`]*)` \|", block, re.M))
    expected = {env: default for env, default, _ in Settings.documentation()}
    assert rows == expected


@pytest.mark.parametrize(
    "doc",
    ["README.md", "docs/guarantees.md", "docs/series.md", "docs/reprocessing.md", "deploy/README.md", "BENCHMARKS.md"],
)
def test_docs_hold_no_merge_conflict_markers(doc):
    text = (ROOT / doc).read_text()
    assert not re.search(r"^(<{7} |>{7} |={7}$)", text, re.M)


def test_topics_yaml_names_only_known_types_and_co_partitions_customer_topics():
    topics = load_topics(Settings())
    known = set(ALL_INPUT_MODELS) | set(OUTPUT_MODELS)
    for spec in topics.values():
        assert spec.value_types and set(spec.value_types) <= known, spec
    customer = [s for s in topics.values() if s.logical not in ("definitions", "dead-letters", "backfills")]
    assert len({s.partitions for s in customer}) == 1
    assert topics["definitions"].config["cleanup.policy"] == "compact"


def test_every_event_type_has_a_topic():
    topics = load_topics(Settings())
    carried = {t for spec in topics.values() for t in spec.value_types}
    assert set(ALL_INPUT_MODELS) | set(OUTPUT_MODELS) <= carried


def _readme_python_block() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("```python\n", 1)[1].split("```", 1)[0]


def _readme_example(now: str | None = None) -> tuple[dict, dict]:
    """The README's definition and transaction (the data, not the network calls), run at ``now``."""
    code = _readme_python_block()
    assert "asyncio.run(main())" in code and 'send_and_wait("milestream.transactions"' in code
    data = code.split("async def main")[0]
    if now is not None:
        clock = 'datetime.now(ZoneInfo("Asia/Kolkata"))'
        assert clock in data
        data = data.replace(clock, now)
    namespace: dict = {}
    exec(data, namespace)
    return namespace["definition"], namespace["transaction"]


def _run_readme_example(driver, now: str | None = None) -> list[dict]:
    from datetime import datetime

    definition, transaction = _readme_example(now)
    driver.pipe("definitions", definition["milestone_id"], definition)
    # Kafka stamps the record when the producer sends it: at the transaction's own time.
    driver.pipe(
        "transactions",
        transaction["customer_id"],
        transaction,
        timestamp=datetime.fromisoformat(transaction["event_time"]),
    )
    return driver.read("promotions")


def test_readme_producer_example_yields_the_documented_events(driver):
    """Run the README's definition and transaction at the documented moment; compare with the README."""
    import orjson

    events = _run_readme_example(driver, 'datetime(2026, 11, 20, 18, 5, tzinfo=ZoneInfo("Asia/Kolkata"))')
    assert [e["kind"] for e in events] == ["sub_target", "achievement"]

    readme = (ROOT / "README.md").read_text()
    shown = readme.split("```json\n", 1)[1].split("```", 1)[0]
    shown = shown.replace('"targets": [...], ', "").replace("0b9c…", "x")
    documented = orjson.loads(shown)
    achievement = events[1]
    for field in (
        "kind",
        "customer_id",
        "milestone_id",
        "milestone_name",
        "target_id",
        "target_name",
        "cycle",
        "achieved_value",
        "defined_value",
        "gap",
        "achieved",
        "is_target_achieved_event",
        "milestone_value_defined",
        "trigger_names",
        "occurred_at",
    ):
        assert achievement[field] == documented[field], field
    assert documented["cause"].startswith("milestream.transactions/")


@pytest.mark.parametrize(
    "now",
    [
        None,
        'datetime(2027, 1, 31, 23, 59, 59, tzinfo=ZoneInfo("Asia/Kolkata"))',
        'datetime(2028, 2, 29, 0, 0, tzinfo=ZoneInfo("Asia/Kolkata"))',
    ],
)
def test_readme_producer_example_yields_the_same_events_on_any_date(driver, now):
    events = _run_readme_example(driver, now)
    assert [(e["kind"], e["cycle"]["index"], e["achieved_value"]) for e in events] == [
        ("sub_target", 1, "5200.00"),
        ("achievement", 1, "5200.00"),
    ]
