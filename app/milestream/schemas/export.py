"""JSON Schema files generated from the models, for producers in other languages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from .backfill import BackfillStatus
from .codec import ALL_INPUT_MODELS
from .outputs import DeadLetter, LateEventRecord, MilestoneEvent, UnmatchedReturnRecord
from .series import SERIES_OUTPUT_MODELS

OUTPUT_MODELS: dict[str, type[BaseModel]] = {
    "milestone_event": MilestoneEvent,
    "late_event": LateEventRecord,
    "unmatched_return": UnmatchedReturnRecord,
    "dead_letter": DeadLetter,
    "backfill_status": BackfillStatus,
    **SERIES_OUTPUT_MODELS,
}


def json_schemas() -> dict[str, str]:
    """File name -> JSON text for every input and output event type."""
    files = {}
    modes: tuple[tuple[str, dict[str, type[BaseModel]], Literal["validation", "serialization"]], ...] = (
        ("input", ALL_INPUT_MODELS, "validation"),
        ("output", OUTPUT_MODELS, "serialization"),
    )
    for kind, models, mode in modes:
        for type_name, model in sorted(models.items()):
            schema = model.model_json_schema(mode=mode)
            schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            schema["$id"] = f"https://milestream.dev/schemas/{type_name}.schema.json"
            schema["x-milestream-direction"] = kind
            files[f"{type_name}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    return files


def write_json_schemas(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in json_schemas().items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written
