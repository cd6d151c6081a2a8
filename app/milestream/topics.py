"""topics.yaml: the declaration of every topic, and applying it to a cluster."""

from __future__ import annotations

import asyncio
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
    # The deployment's own topic (what it writes, and its internal loops): a replay deployment gets
    # its own copy, under MILESTREAM_OUTPUT_TOPIC_PREFIX. The others are shared inputs.
    owned: bool = False


def topics_file(settings: Settings) -> Path:
    return Path(settings.topics_file) if settings.topics_file else PROJECT_ROOT / "topics.yaml"


def load_topics(settings: Settings) -> dict[str, TopicSpec]:
    """Topic specs by logical name ("transactions", "promotions", ...)."""
    raw: dict[str, Any] = yaml.safe_load(topics_file(settings).read_text())
    specs = {}
    for logical, body in raw["topics"].items():
        owned = bool(body.get("owned", False))
        specs[logical] = TopicSpec(
            logical=logical,
            name=(settings.output_prefix if owned else settings.topic_prefix) + logical,
            role=body["role"],
            partitions=int(body["partitions"]),
            replication_factor=int(body["replication_factor"]),
            config={k: str(v) for k, v in (body.get("config") or {}).items()},
            value_types=tuple(body.get("value") or ()),
            owned=owned,
        )
    return specs


def owned_topics(specs: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
    return {key: spec for key, spec in specs.items() if spec.owned}


def written_topics(settings: Settings, specs: dict[str, TopicSpec]) -> set[str]:
    """The topics a worker may write. A replay deployment writes only its own: what the live one
    writes on the shared inputs (the enrolments of a definition's customer list, definitions
    republished after a lifecycle command or a rejected record) is there already, under the same
    event ids, and the replay reads it like any input. Writing it again would hand the live
    deployment old definitions and enrolments as new records."""
    return {spec.name for spec in specs.values() if spec.owned or not settings.replaying}


STATE_TABLE = "customer-state"


def changelog_topics(settings: Settings, specs: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
    """The changelog topic of the worker's partition stores (``<app id>-customer-state-changelog``,
    compacted, one partition per customer partition: runtime/partitions.py).

    Created with the declared topics, so workers starting together in a new consumer
    group never see it half-created."""
    customers = specs["transactions"]
    name = f"{settings.app_id}-{STATE_TABLE}-changelog"
    spec = TopicSpec(
        name,
        name,
        "changelog",
        customers.partitions,
        customers.replication_factor,
        {"cleanup.policy": "compact"},
        owned=True,
    )
    return {name: spec}


def faust_topics(settings: Settings, specs: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
    """The topic Faust's group leader election uses (the Faust app is ``<app id>-definitions``,
    worker/app.py). Faust would create it with one replica; declared here, it gets the
    replication of the declared topics."""
    name = f"{settings.definitions_group}-__assignor-__leader"
    return {name: TopicSpec(name, name, "internal", 1, specs["definitions"].replication_factor, {}, owned=True)}


def worker_topics(settings: Settings, specs: dict[str, TopicSpec]) -> dict[str, TopicSpec]:
    """The topics the worker needs beside those of topics.yaml: its changelog and Faust's own."""
    return {**changelog_topics(settings, specs), **faust_topics(settings, specs)}


def topics_to_apply(settings: Settings) -> dict[str, TopicSpec]:
    """The topics of topics.yaml and the worker's own topics."""
    specs = load_topics(settings)
    return {**specs, **worker_topics(settings, specs)}


async def _wait_for_partitions(admin: Any, specs: list[TopicSpec], timeout_s: float = 30.0) -> None:
    """Wait until the metadata shows every partition of the new topics with a leader: a client
    that sees a topic earlier may find it with fewer (even 0) partitions."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    expected = {s.name: s.partitions for s in specs}
    while True:
        described = await admin.describe_topics(list(expected))
        ready = {
            t["topic"]
            for t in described
            if t["error_code"] == 0
            and len(t["partitions"]) == expected[t["topic"]]
            and all(p["leader"] >= 0 for p in t["partitions"])
        }
        if ready >= set(expected):
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics not ready after {timeout_s:g} s: {sorted(set(expected) - ready)}")
        await asyncio.sleep(0.2)


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
            await _wait_for_partitions(admin, missing)
            report += [f"created {s.name} ({s.partitions} partitions)" for s in missing]
        present = [s for s in specs.values() if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            partitions = {t["topic"]: len(t["partitions"]) for t in described}
            configs = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in present])
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
