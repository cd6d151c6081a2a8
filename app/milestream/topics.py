"""topics.yaml: the declaration of every topic, and applying it to a cluster."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class TopicSpec:
    logical: str
    name: str
    role: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)
    value_types: tuple[str, ...] = ()


def topics_file(settings: Settings) -> Path:
    return Path(settings.topics_file) if settings.topics_file else PROJECT_ROOT / "topics.yaml"


def load_topics(settings: Settings) -> dict[str, TopicSpec]:
    """Topic specs by logical name ("transactions", "promotions", ...)."""
    raw: dict[str, Any] = yaml.safe_load(topics_file(settings).read_text())
    specs = {}
    for logical, body in raw["topics"].items():
        specs[logical] = TopicSpec(
            logical=logical,
            name=settings.topic_prefix + logical,
            role=body["role"],
            partitions=int(body["partitions"]),
            replication_factor=int(body["replication_factor"]),
            config={k: str(v) for k, v in (body.get("config") or {}).items()},
            value_types=tuple(body.get("value") or ()),
        )
    return specs


async def apply_topics(settings: Settings, specs: dict[str, TopicSpec]) -> list[str]:
    """Create missing topics; report (never fix) drift of existing ones.

    Returns human-readable lines: "created X", "ok X", "drift X: ...".
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from .kafka_client import client_options, start_client

    admin = AIOKafkaAdminClient(**client_options(settings), client_id="milestream-topics")
    await start_client(admin, settings)
    report = []
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs.values() if s.name not in existing]
        if missing:
            await admin.create_topics(
                [NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=s.config) for s in missing]
            )
            report += [f"created {s.name} ({s.partitions} partitions)" for s in missing]
        present = [s for s in specs.values() if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            configs = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present]
            )
            actual_configs: dict[str, dict[str, str]] = {}
            for response in configs:
                for resource in response.resources:
                    _, _, _, name, entries = resource[:5]
                    actual_configs[name] = {entry[0]: entry[1] for entry in entries}
            for spec in present:
                drift = []
                if partitions.get(spec.name) != spec.partitions:
                    drift.append(f"partitions {partitions.get(spec.name)} (declared {spec.partitions})")
                for key, value in spec.config.items():
                    actual = actual_configs.get(spec.name, {}).get(key)
                    if actual != value:
                        drift.append(f"{key}={actual} (declared {value})")
                report.append(f"drift {spec.name}: {'; '.join(drift)}" if drift else f"ok {spec.name}")
    finally:
        await admin.close()
    return report
