"""Deterministic output ids.

An output's id is a UUID derived from its cause, so processing the same input
again (a redelivery after a crash, a replay of the topic, the simulator) yields
the same id and a downstream consumer can drop the duplicate.
"""

from __future__ import annotations

import hashlib

from ..schemas.base import DEFAULT_ORG


def event_id(*parts: object) -> str:
    digest = bytearray(hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()[:16])
    # What uuid.UUID(bytes=..., version=5) makes of the digest, without building the object.
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def milestone_event_id(
    milestone_id: str, target_id: str, customer_id: str, cycle: int, trigger: str, org_id: str = DEFAULT_ORG
) -> str:
    """Id of an achievement / sub-target / cycle-close event: at most one per cause.
    Another organisation's customer of the same id gets other ids (the default organisation's stay as they were)."""
    tenant = () if org_id == DEFAULT_ORG else (org_id,)
    return event_id("milestone-event", milestone_id, target_id, customer_id, cycle, trigger, *tenant)
