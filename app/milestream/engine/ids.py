"""Deterministic output ids.

An output's id is a UUID derived from its cause, so processing the same input
again (a redelivery after a crash, a replay of the topic, the simulator) yields
the same id and a downstream consumer can drop the duplicate.
"""

from __future__ import annotations

import hashlib
import uuid

from ..schemas.base import DEFAULT_ORG


def event_id(*parts: object) -> str:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=5))


def milestone_event_id(
    milestone_id: str, target_id: str, customer_id: str, cycle: int, trigger: str, org_id: str = DEFAULT_ORG
) -> str:
    """Id of an achievement / sub-target / cycle-close event: at most one per cause.
    Another organisation's customer of the same id gets other ids (the default organisation's stay as they were)."""
    tenant = () if org_id == DEFAULT_ORG else (org_id,)
    return event_id("milestone-event", milestone_id, target_id, customer_id, cycle, trigger, *tenant)
