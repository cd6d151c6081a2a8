"""Every setting: one typed, documented field with its environment variable.

``Settings.from_env()`` reads them; ``milestream settings`` prints them. The
README's configuration table lists the same fields (a test keeps it true).
"""

from __future__ import annotations

import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field


def _setting(default: Any, env: str, doc: str) -> Any:
    return Field(default=default, description=doc, json_schema_extra={"env": env})


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap_servers: str = _setting("127.0.0.1:9092", "KAFKA_BOOTSTRAP_SERVERS", "Kafka bootstrap servers, comma separated.")
    app_id: str = _setting("milestream", "MILESTREAM_APP_ID", "Faust app id: consumer group and prefix of changelog topics.")
    topic_prefix: str = _setting("milestream.", "MILESTREAM_TOPIC_PREFIX", "Prefix of every topic name in topics.yaml.")
    topics_file: str = _setting("", "MILESTREAM_TOPICS_FILE", "Path of topics.yaml (default: the one beside the package's project).")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = _setting(
        "at_least_once",
        "MILESTREAM_PROCESSING_GUARANTEE",
        "Faust processing guarantee. State is applied once per input offset either way (see docs/guarantees.md).",
    )

    # Worker
    data_dir: str = _setting(".local/worker", "MILESTREAM_DATA_DIR", "Where the worker keeps its RocksDB tables.")
    store: str = _setting("rocksdb://", "MILESTREAM_STORE", "Table store URL: rocksdb:// (rocksdict driver) or memory://.")
    web_port: int = _setting(6066, "MILESTREAM_WEB_PORT", "HTTP port of the worker: /metrics, /healthz.")
    web_host: str = _setting("127.0.0.1", "MILESTREAM_WEB_HOST", "Interface the worker's HTTP server binds.")
    max_payload_bytes: int = _setting(256 * 1024, "MILESTREAM_MAX_PAYLOAD_BYTES", "Larger input records go to the dead-letter topic.")
    outbox_size: int = Field(
        default=8,
        ge=1,
        description="Recent input offsets per customer whose outputs are kept for re-emission after a crash.",
        json_schema_extra={"env": "MILESTREAM_OUTBOX_SIZE"},
    )
    commit_interval_s: float = _setting(
        0.5, "MILESTREAM_COMMIT_INTERVAL", "Seconds between offset commits; after a crash, inputs since the last commit are redelivered (and recognised)."
    )
    session_timeout_s: float = _setting(
        10.0,
        "MILESTREAM_SESSION_TIMEOUT",
        "Consumer-group session timeout: how soon the partitions of a worker that died and does not come back move.",
    )
    worker_id: str = _setting(
        "",
        "MILESTREAM_WORKER_ID",
        "Static group member id of this worker (default: derived from app id, host name and data folder); "
        "a worker restarted under the same id gets its partitions back at once.",
    )
    shutdown_grace_s: float = _setting(
        8.0, "MILESTREAM_SHUTDOWN_GRACE", "Seconds a worker may take to stop on SIGTERM/SIGINT before it exits anyway."
    )
    producer_linger_ms: float = _setting(
        5.0, "MILESTREAM_PRODUCER_LINGER_MS", "How long the producer waits to batch changelog writes and outputs."
    )
    producer_max_batch_bytes: int = _setting(262144, "MILESTREAM_PRODUCER_MAX_BATCH_BYTES", "Largest producer batch.")
    max_poll_records: int = _setting(2000, "MILESTREAM_MAX_POLL_RECORDS", "Records fetched per poll.")
    stream_buffer_maxsize: int = _setting(8192, "MILESTREAM_STREAM_BUFFER_MAXSIZE", "Faust per-partition buffer of records awaiting the agent.")
    standby_replicas: int = _setting(0, "MILESTREAM_STANDBY_REPLICAS", "Faust table standby replicas (0 on a single worker).")
    close_tick_interval_s: float = _setting(
        10.0, "MILESTREAM_CLOSE_TICK_INTERVAL", "Seconds between close ticks: how often a worker closes the cycles due on its partitions."
    )
    close_batch_size: int = Field(
        default=500,
        ge=1,
        description="Customers closed per close tick before the worker goes back to other input (more follow at once).",
        json_schema_extra={"env": "MILESTREAM_CLOSE_BATCH_SIZE"},
    )
    log_level: str = _setting("info", "MILESTREAM_LOG_LEVEL", "Worker log level.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        environ = os.environ if environ is None else environ
        values = {}
        for name, info in cls.model_fields.items():
            env = info.json_schema_extra["env"]  # type: ignore[index]
            if env in environ:
                values[name] = environ[env]
        return cls(**values)

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, description) for every setting."""
        return [
            (info.json_schema_extra["env"], str(info.default), info.description or "")  # type: ignore[index]
            for info in cls.model_fields.values()
        ]
