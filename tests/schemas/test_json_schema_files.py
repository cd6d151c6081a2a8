"""The committed JSON Schema files are exactly what the models generate."""

from pathlib import Path

from milestream.schemas.export import json_schemas

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_generated_schema_files_match_the_models():
    expected = json_schemas()
    committed = {p.name: p.read_text() for p in SCHEMAS.glob("*.schema.json")}
    stale = sorted(name for name in expected if committed.get(name) != expected[name])
    extra = sorted(set(committed) - set(expected))
    assert not stale and not extra, (
        f"schemas/ is out of date (stale: {stale}, not generated: {extra}); run `make schemas`"
    )


def test_every_schema_is_versioned():
    for name, text in json_schemas().items():
        assert '"schema_version"' in text, name
