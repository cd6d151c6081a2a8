"""The README and topics.yaml stay true to the code."""

import re
from pathlib import Path

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


def test_topics_yaml_names_only_known_types_and_co_partitions_customer_topics():
    topics = load_topics(Settings())
    known = set(ALL_INPUT_MODELS) | set(OUTPUT_MODELS)
    for spec in topics.values():
        assert spec.value_types and set(spec.value_types) <= known, spec
    customer = [s for s in topics.values() if s.logical not in ("definitions", "dead-letters")]
    assert len({s.partitions for s in customer}) == 1
    assert topics["definitions"].config["cleanup.policy"] == "compact"


def test_every_event_type_has_a_topic():
    topics = load_topics(Settings())
    carried = {t for spec in topics.values() for t in spec.value_types}
    assert set(ALL_INPUT_MODELS) | set(OUTPUT_MODELS) <= carried


def _readme_python_block() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_producer_example_yields_the_documented_events(driver):
    """Run the README's definition and transaction through the topology; compare with the README."""
    from datetime import datetime

    import orjson

    code = _readme_python_block()
    namespace: dict = {}
    exec(code.split("async def main")[0], namespace)  # the data, not the network calls
    definition, transaction = namespace["definition"], namespace["transaction"]
    assert "asyncio.run(main())" in code and 'send_and_wait("milestream.transactions"' in code

    driver.pipe("definitions", definition["milestone_id"], definition)
    driver.pipe("transactions", transaction["customer_id"], transaction,
                timestamp=datetime.fromisoformat(transaction["event_time"]))
    events = driver.read("promotions")
    assert [e["kind"] for e in events] == ["sub_target", "achievement"]

    readme = (ROOT / "README.md").read_text()
    shown = readme.split("```json\n", 1)[1].split("```", 1)[0]
    shown = shown.replace('"targets": [...], ', "").replace("0b9c…", "x")
    documented = orjson.loads(shown)
    achievement = events[1]
    for field in ("kind", "customer_id", "milestone_id", "milestone_name", "target_id", "target_name", "cycle",
                  "achieved_value", "defined_value", "gap", "achieved", "is_target_achieved_event",
                  "milestone_value_defined", "trigger_names", "occurred_at"):
        assert achievement[field] == documented[field], field
    assert documented["cause"].startswith("milestream.transactions/")
