"""Bytes on the wire <-> schema models, with a precise reason for every rejection."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from .commands import BackfillMarker, CloseTick, MilestoneClone, MilestoneStatusChange
from .definitions import MilestoneDefinition, OrganisationSettings
from .inputs import CUSTOMER_EVENT_MODELS
from .series import SERIES_DEFINITION_MODELS, SERIES_INPUT_MODELS

DEFINITION_MODELS: dict[str, type[BaseModel]] = {
    "milestone_definition": MilestoneDefinition,
    "organisation_settings": OrganisationSettings,
    "milestone_status": MilestoneStatusChange,
    "milestone_clone": MilestoneClone,
    **SERIES_DEFINITION_MODELS,
}

INTERNAL_MODELS: dict[str, type[BaseModel]] = {"close_tick": CloseTick, "backfill_marker": BackfillMarker}

ALL_INPUT_MODELS: dict[str, type[BaseModel]] = {
    **CUSTOMER_EVENT_MODELS,
    **SERIES_INPUT_MODELS,
    **DEFINITION_MODELS,
    **INTERNAL_MODELS,
}


class Rejected(Exception):
    """An input record that cannot be used; ``reason`` is a dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "(event)"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


@dataclass(frozen=True)
class Decoder:
    """Decodes one topic's records into the models that topic accepts.

    The JSON is parsed by orjson and validated once, in Python mode: pydantic's own JSON
    mode reads numbers differently (a JSON ``1`` in an attributes map, for one), so it
    would change what producers' records mean."""

    accepted: Mapping[str, type[BaseModel]]
    max_bytes: int
    # Each accepted type's core validator, looked up once (what ``model_validate`` calls).
    _validate: Mapping[str, Callable[[Any], BaseModel]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validators = {kind: model.__pydantic_validator__.validate_python for kind, model in self.accepted.items()}
        object.__setattr__(self, "_validate", validators)

    def decode(self, value: bytes | None) -> BaseModel:
        return self.decode_document(value)[0]

    def decode_document(self, value: bytes | None) -> tuple[BaseModel, dict[str, Any]]:
        """The model, and the JSON object it was validated from (read, never changed)."""
        if value is None:
            raise Rejected("schema_violation", "record has no value")
        if len(value) > self.max_bytes:
            raise Rejected("oversize_payload", f"{len(value)} bytes exceeds the limit of {self.max_bytes}")
        try:
            data: Any = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise Rejected("malformed_json", str(exc)) from None
        if not isinstance(data, dict):
            raise Rejected("schema_violation", f"expected a JSON object, got {type(data).__name__}")
        kind = data.get("type")
        validate = self._validate.get(kind) if isinstance(kind, str) else None
        if validate is None:
            accepted = ", ".join(sorted(self.accepted))
            raise Rejected("unknown_event_type", f"type {kind!r} is not accepted on this topic (accepted: {accepted})")
        try:
            return validate(data), data
        except ValidationError as exc:
            raise Rejected("schema_violation", f"{kind}: {describe_validation_error(exc)}") from None


def decoder_for(value_types: tuple[str, ...], max_bytes: int) -> Decoder:
    return Decoder({t: ALL_INPUT_MODELS[t] for t in value_types if t in ALL_INPUT_MODELS}, max_bytes)


def dumps(data: Any) -> bytes:
    """Canonical JSON bytes (sorted keys) so equal outputs are byte-identical."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
