"""Every id is visible text: control, bidi and invisible characters are a schema violation naming the character.

An id with such a character can pose as another id (``victim\\x00outbox``), hide what it is
(``admin\\u202e``) or look equal to another while differing (a zero-width space).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from milestream.schemas.codec import ALL_INPUT_MODELS, Decoder, Rejected, dumps
from tests.engine.builders import documents
from tests.engine.series_builders import ledger, membership, redemption, series
from tests.factories import at, monthly_gross_definition, transaction

WHEN = "2024-01-05T10:00:00+05:30"

HIDDEN = [
    ("\x00", "U+0000 (control character)"),
    ("\x1f", "U+001F (control character)"),
    ("\x7f", "U+007F (control character)"),
    ("\x85", "U+0085 (control character)"),
    ("\t", "U+0009 (control character)"),
    ("\u202e", "U+202E (bidirectional control character)"),
    ("\u2066", "U+2066 (bidirectional control character)"),
    ("\u200f", "U+200F (bidirectional control character)"),
    ("\u200b", "U+200B (invisible format character)"),
    ("\u200d", "U+200D (invisible format character)"),
    ("\ufeff", "U+FEFF (invisible format character)"),
    ("\u00ad", "U+00AD (invisible format character)"),
    ("\u2028", "U+2028 (line separator)"),
    ("\u2029", "U+2029 (paragraph separator)"),
    ("\ufe0f", "U+FE0F (invisible character)"),
    ("\u3164", "U+3164 (invisible character)"),
    ("\U000e0041", "U+E0041 (invisible format character)"),
]


def _definition() -> dict[str, Any]:
    definition = monthly_gross_definition("m1", enrolment={"method": "specific", "customers": ["c1"]}, till_code="t1")
    definition["group"]["targets"][0]["scope"] = {"stores": ["s1"], "zones": ["z1"], "concepts": ["k1"]}
    definition["group"]["targets"].append(
        {
            "target_id": "streak",
            "name": "Streak",
            "activity": "milestone_achieved",
            "kpi": "count",
            "value": "2",
            "source_milestone_id": "m0",
        }
    )
    return definition


_RETURN = {
    "type": "return",
    "event_id": "r1",
    "customer_id": "c1",
    "event_time": WHEN,
    "return_id": "r1",
    "bill_id": "b1",
    "scope": "line_items",
    "line_items": [{"line_id": "l1", "amount": "1"}],
}
_TRANSACTION = transaction(
    "c1",
    "10",
    WHEN,
    1,
    store_id="s1",
    zone_id="z1",
    concept_id="k1",
    till_id="t1",
    line_items=[{"line_id": "l1", "sku": "sku1", "category": "cat1", "gross_amount": "10"}],
)
_ENROLMENT = {
    "type": "enrolment",
    "event_id": "e1",
    "customer_id": "c1",
    "event_time": WHEN,
    "milestone_id": "m1",
    "targets": [{"target_id": "spend", "value": "100"}],
}
_SERIES = series("s1", programs=["p1"], promote_to_program_id="p2")

# (document, path to an id in it): every kind of id of every input model.
ID_FIELDS = [
    (_TRANSACTION, ("customer_id",)),
    (_TRANSACTION, ("event_id",)),
    (_TRANSACTION, ("bill_id",)),
    (_TRANSACTION, ("store_id",)),
    (_TRANSACTION, ("zone_id",)),
    (_TRANSACTION, ("concept_id",)),
    (_TRANSACTION, ("till_id",)),
    (_TRANSACTION, ("line_items", 0, "line_id")),
    (_TRANSACTION, ("line_items", 0, "sku")),
    (_TRANSACTION, ("line_items", 0, "category")),
    (_RETURN, ("return_id",)),
    (_RETURN, ("bill_id",)),
    (_RETURN, ("line_items", 0, "line_id")),
    (
        {"type": "behavioural_event", "event_id": "b1", "customer_id": "c1", "event_time": WHEN, "name": "visit"},
        ("customer_id",),
    ),
    (
        {
            "type": "customer_activity",
            "event_id": "a1",
            "customer_id": "c1",
            "event_time": WHEN,
            "activity": "referral",
        },
        ("event_id",),
    ),
    (ledger("c1", "5", WHEN, source="adjustment"), ("entry_id",)),
    (ledger("c1", "5", WHEN, source="adjustment"), ("actor",)),
    (_ENROLMENT, ("milestone_id",)),
    (_ENROLMENT, ("targets", 0, "target_id")),
    (membership("c1", "p1", WHEN), ("program_id",)),
    (redemption("c1", "bronze", "reward-bronze", WHEN), ("series_id",)),
    (redemption("c1", "bronze", "reward-bronze", WHEN), ("tier_id",)),
    (redemption("c1", "bronze", "reward-bronze", WHEN), ("reward_id",)),
    (_definition(), ("milestone_id",)),
    (_definition(), ("org_id",)),
    (_definition(), ("till_code",)),
    (_definition(), ("group", "targets", 0, "target_id")),
    (_definition(), ("group", "targets", 1, "source_milestone_id")),
    (_definition(), ("enrolment", "customers", 0)),
    (_definition(), ("group", "targets", 0, "scope", "stores", 0)),
    (_definition(), ("group", "targets", 0, "scope", "zones", 0)),
    (_definition(), ("group", "targets", 0, "scope", "concepts", 0)),
    ({"type": "organisation_settings", "org_id": "o1"}, ("org_id",)),
    ({"type": "milestone_status", "milestone_id": "m1", "active": False}, ("milestone_id",)),
    (
        {
            "type": "milestone_clone",
            "milestone_id": "m2",
            "source_milestone_id": "m1",
            "name": "Copy",
            "enrolment": {"method": "specific", "customers": ["c1"]},
        },
        ("source_milestone_id",),
    ),
    (
        {
            "type": "milestone_clone",
            "milestone_id": "m2",
            "source_milestone_id": "m1",
            "name": "Copy",
            "enrolment": {"method": "specific", "customers": ["c1"]},
        },
        ("enrolment", "customers", 0),
    ),
    (_SERIES, ("series_id",)),
    (_SERIES, ("org_id",)),
    (_SERIES, ("program_ids", 0)),
    (_SERIES, ("promote_to_program_id",)),
    (_SERIES, ("tiers", 0, "tier_id")),
    (_SERIES, ("tiers", 0, "reward", "reward_id")),
    (_SERIES, ("tiers", 0, "reward", "kind")),
]

DECODER = Decoder(ALL_INPUT_MODELS, 1_000_000)


def _with(document: dict[str, Any], path: tuple, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    node: Any = changed
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return changed


def _name(path: tuple) -> str:
    return ".".join(str(step) for step in path)


@pytest.mark.parametrize("document, path", ID_FIELDS, ids=[f"{d['type']}.{_name(p)}" for d, p in ID_FIELDS])
def test_every_id_field_holds_valid_ids(document, path):
    DECODER.decode(dumps(document))  # the unchanged document is valid: the rejections below are the id's


@pytest.mark.parametrize("document, path", ID_FIELDS, ids=[f"{d['type']}.{_name(p)}" for d, p in ID_FIELDS])
@pytest.mark.parametrize("char, named", HIDDEN, ids=[named.split()[0] for _, named in HIDDEN])
def test_hidden_characters_in_any_id_are_a_schema_violation_naming_the_code_point(document, path, char, named):
    with pytest.raises(Rejected) as rejected:
        DECODER.decode(dumps(_with(document, path, f"victim{char}outbox")))
    assert rejected.value.reason == "schema_violation"
    assert f"{_name(path)}: contains {named}" in rejected.value.detail


@pytest.mark.parametrize("char, named", HIDDEN[:3], ids=["NUL", "US", "DEL"])
def test_an_id_made_only_of_a_hidden_character_names_it(char, named):
    with pytest.raises(Rejected) as rejected:
        DECODER.decode(dumps(_with(_TRANSACTION, ("customer_id",), char)))
    assert rejected.value.detail == f"transaction: customer_id: contains {named}"


@pytest.mark.parametrize("visible", ["José", "客户-42", "ग्राहक", "store 7", "c1🎉", "Ω-1", "a\u00a0b"])
def test_ids_in_any_script_and_with_inner_spaces_stay_valid(visible):
    event = DECODER.decode(dumps(_with(_TRANSACTION, ("customer_id",), visible)))
    assert event.customer_id == visible  # type: ignore[attr-defined]


def test_a_customer_id_with_a_nul_is_dead_lettered_without_touching_any_state(driver):
    """``victim\\x00outbox`` was the key of victim's outbox in the state store."""
    driver.pipe("definitions", "m-monthly", monthly_gross_definition(), timestamp=at(WHEN))
    victim = transaction("victim", "6000", WHEN, 1)
    assert driver.pipe("transactions", "victim", victim, timestamp=at(WHEN)).outcome == "applied"
    state_before = documents(driver.store)

    hostile = transaction("victim\x00outbox", "100", WHEN, 2)
    processed = driver.pipe("transactions", "victim\x00outbox", hostile, timestamp=at(WHEN))

    assert processed.outcome == "schema_violation"
    (letter,) = driver.read("dead-letters")
    assert letter["reason"] == "schema_violation"
    assert "customer_id: contains U+0000 (control character)" in letter["detail"]
    assert documents(driver.store) == state_before
