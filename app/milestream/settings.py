"""Every setting: one typed, documented field with its environment variable.

``Settings()`` (or ``Settings.from_env()``) reads them from the environment;
``milestream settings`` prints the effective values. The README's
configuration table lists the same fields (a test keeps it true). A value that
does not parse raises a ``ValidationError`` naming the environment variable
(see :func:`describe_settings_error`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, InitSettingsSource, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _setting(default: Any, env: str, doc: str, **constraints: Any) -> Any:
    return Field(default=default, description=doc, validation_alias=env, json_schema_extra={"env": env}, **constraints)


def local_broker_bootstrap() -> str | None:
    """The address of the broker ``deploy/local_kafka.py up`` started, if its run folder says one
    (``$MILESTREAM_KAFKA_DIR/run/bootstrap``, else ``.local/kafka/run/bootstrap``; the same folder
    as that script's ``default_run_dir``, which cannot import this package)."""
    base = os.environ.get("MILESTREAM_KAFKA_DIR", "").strip()
    folder = Path(base).expanduser() if base else PROJECT_ROOT / ".local" / "kafka"
    try:
        address = (folder / "run" / "bootstrap").read_text().strip()
    except OSError:
        return None
    return address or None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True, case_sensitive=True)

    # Kafka
    kafka_bootstrap_servers: str = _setting(
        "127.0.0.1:9092",
        "KAFKA_BOOTSTRAP_SERVERS",
        "Kafka bootstrap servers, comma separated. Unset: the local broker's (.local/kafka/run/bootstrap) "
        "if one was started, else this default.",
    )
    app_id: str = _setting(
        "milestream",
        "MILESTREAM_APP_ID",
        "Consumer group of the customer topics and prefix of the state changelog topic "
        "(the Faust app around the worker, publishing definition outcomes, is <app id>-definitions).",
    )
    topic_prefix: str = _setting(
        "milestream.",
        "MILESTREAM_TOPIC_PREFIX",
        "Prefix of the topic names in topics.yaml: the input topics, and the others unless "
        "MILESTREAM_OUTPUT_TOPIC_PREFIX is set.",
    )
    output_topic_prefix: str = _setting(
        "",
        "MILESTREAM_OUTPUT_TOPIC_PREFIX",
        "Prefix of the topics a deployment owns, those marked owned in topics.yaml (promotions, lifetime-points, "
        "late-events, dead-letters, close-ticks, series-commands); default: MILESTREAM_TOPIC_PREFIX. Another "
        "prefix makes a replay deployment, which writes nothing on the shared topics (docs/reprocessing.md).",
    )
    topics_file: str = _setting(
        "", "MILESTREAM_TOPICS_FILE", "Path of topics.yaml (default: the one beside the package's project)."
    )
    processing_guarantee: Literal["at_least_once", "exactly_once"] = _setting(
        "at_least_once",
        "MILESTREAM_PROCESSING_GUARANTEE",
        "at_least_once: outputs may repeat (same event ids) after a crash; exactly_once: each batch's outputs, "
        "state changelog and input offsets are one Kafka transaction. State is applied once per input offset "
        "either way (docs/guarantees.md).",
    )

    # Worker
    data_dir: str = _setting(
        ".local/worker", "MILESTREAM_DATA_DIR", "Where the worker keeps its RocksDB stores, one per owned partition."
    )
    state_flush_interval_s: float = _setting(
        60.0,
        "MILESTREAM_STATE_FLUSH_INTERVAL_S",
        "Longest a write to a partition's RocksDB store waits in memory before it is flushed to disk, whether "
        "the store goes on being written or not. The stores keep no write-ahead log (the changelog is their "
        "log): after a crash a store reopens at its last flush and restores the rest from the changelog, "
        "whose compaction keeps tombstones for the topic's delete.retention.ms (a day by default), so keep "
        "this well below that.",
        gt=0,
    )
    web_port: int = _setting(
        6066, "MILESTREAM_WEB_PORT", "HTTP port of the worker: /metrics, /healthz.", ge=0, le=65535
    )
    web_host: str = _setting("127.0.0.1", "MILESTREAM_WEB_HOST", "Interface the worker's HTTP server binds.")
    advertised_url: str = _setting(
        "",
        "MILESTREAM_ADVERTISED_URL",
        "URL other workers reach this worker's HTTP server at, to forward API requests for its partitions "
        "(default: http://MILESTREAM_WEB_HOST:MILESTREAM_WEB_PORT).",
    )
    max_payload_bytes: int = _setting(
        256 * 1024, "MILESTREAM_MAX_PAYLOAD_BYTES", "Larger input records go to the dead-letter topic."
    )
    dead_letter_original_bytes: int = _setting(
        16 * 1024,
        "MILESTREAM_DEAD_LETTER_ORIGINAL_BYTES",
        "Bytes of a bad record's key and value kept in its dead letter; the rest is cut (length and sha256 are kept).",
        ge=0,
        le=256 * 1024,
    )
    max_processing_attempts: int = _setting(
        5,
        "MILESTREAM_MAX_PROCESSING_ATTEMPTS",
        "Attempts at a record whose processing raises before it is dead-lettered as processing_error.",
        ge=1,
    )
    delivery_timeout_s: float = _setting(
        120.0,
        "MILESTREAM_DELIVERY_TIMEOUT",
        "Seconds an output or state write may await the broker before the worker exits to restart "
        "from its last commit.",
        gt=0,
    )
    outbox_size: int = _setting(
        8,
        "MILESTREAM_OUTBOX_SIZE",
        "Recent input offsets per customer whose outputs are kept for re-emission after a crash, by the "
        "simulator and the in-process driver (the worker's checkpoint acknowledges outputs before their state).",
        ge=1,
    )
    commit_interval_s: float = _setting(
        0.5,
        "MILESTREAM_COMMIT_INTERVAL",
        "Seconds between offset commits of the definitions publisher (the customer topics commit every batch).",
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
        "a worker restarted under the same id and at the same address gets its partitions back at once "
        "(at another address it joins as a new member).",
    )
    restart_on_failure: bool = _setting(
        True,
        "MILESTREAM_RESTART_ON_FAILURE",
        "`milestream worker` starts the worker again (pausing 1 s, 2 s, ... up to 30 s) when it exits to restart "
        "from its last commit after a broker or state failure.",
    )
    shutdown_grace_s: float = _setting(
        8.0, "MILESTREAM_SHUTDOWN_GRACE", "Seconds a worker may take to stop on SIGTERM/SIGINT before it exits anyway."
    )
    producer_linger_ms: float = _setting(
        5.0,
        "MILESTREAM_PRODUCER_LINGER_MS",
        "How long the Faust app's producer (definition outcomes, close ticks) waits to batch records; the batch "
        "runtime sends a checkpoint's records at once, without waiting.",
    )
    producer_max_batch_bytes: int = _setting(262144, "MILESTREAM_PRODUCER_MAX_BATCH_BYTES", "Largest producer batch.")
    max_poll_records: int = _setting(
        2000,
        "MILESTREAM_MAX_POLL_RECORDS",
        "Most input records in one batch (a batch is what has been fetched, up to this; runtime/processor.py).",
        ge=1,
    )
    fetch_min_bytes: int = _setting(
        1,
        "MILESTREAM_FETCH_MIN_BYTES",
        "Input bytes the broker gathers before it answers a fetch of the batch runtime's consumer, waiting up "
        "to MILESTREAM_FETCH_MAX_WAIT_MS (1, Kafka's default: answer as soon as there is anything). Raising it "
        "(e.g. 65536 with a 20 ms wait) makes fewer, fuller fetches at a moderate input rate: less CPU on the "
        "worker, at the cost of up to that wait of latency (BENCHMARKS.md, HTTP API).",
        ge=1,
    )
    fetch_max_wait_ms: int = _setting(
        500,
        "MILESTREAM_FETCH_MAX_WAIT_MS",
        "Longest the broker holds a fetch of the batch runtime's consumer to gather MILESTREAM_FETCH_MIN_BYTES "
        "(Kafka's default).",
        ge=0,
    )
    checkpoint_interval_ms: float = _setting(
        100.0,
        "MILESTREAM_CHECKPOINT_INTERVAL_MS",
        "How often the batch runtime commits what it processed (changelog transaction, RocksDB, input "
        "offsets; runtime/checkpoint.py): a checkpoint spans the batches of this interval, or commits after "
        "MILESTREAM_MAX_POLL_RECORDS records (0: a commit per batch). A commit runs while the next batches "
        "are processed, one at a time. At-least-once, outputs leave as each processing slice of a batch "
        "ends; exactly-once, at the commit.",
        ge=0,
    )
    processing_slice_ms: float = _setting(
        10.0,
        "MILESTREAM_PROCESSING_SLICE_MS",
        "Longest stretch a batch holds the event loop: after this many milliseconds of processing the "
        "worker sends the outputs so far (at-least-once) and lets HTTP requests and heartbeats run before "
        "its next record (runtime/processor.py).",
        gt=0,
    )
    close_tick_interval_s: float = _setting(
        10.0,
        "MILESTREAM_CLOSE_TICK_INTERVAL",
        "Seconds between close ticks: how often a worker closes the cycles due on its partitions.",
    )
    close_batch_size: int = _setting(
        500,
        "MILESTREAM_CLOSE_BATCH_SIZE",
        "Customers closed per close tick before the worker goes back to other input (more follow at once).",
        ge=1,
    )
    log_level: str = _setting("info", "MILESTREAM_LOG_LEVEL", "Worker log level.")

    # Security: the worker's HTTP pages
    api_token: SecretStr = _setting(
        SecretStr(""),
        "MILESTREAM_API_TOKEN",
        "Bearer token every HTTP page but /healthz and /metrics requires; needed to bind a non-loopback address.",
    )
    debug_pages: bool = _setting(False, "MILESTREAM_DEBUG_PAGES", "Serve /debug/tasks (asyncio task stacks).")

    # The HTTP API (docs/api.md)
    api_url: str = _setting(
        "",
        "MILESTREAM_API_URL",
        "Base URL of a worker's API for `milestream progress` and `milestream leaderboard` "
        "(default: http://127.0.0.1:<MILESTREAM_WEB_PORT>).",
    )
    api_max_body_bytes: int = _setting(
        1024 * 1024,
        "MILESTREAM_API_MAX_BODY_BYTES",
        "Largest HTTP request body the API reads; a larger one is refused with 413.",
        ge=1024,
    )
    api_forward_timeout_s: float = _setting(
        5.0,
        "MILESTREAM_API_FORWARD_TIMEOUT",
        "Seconds a worker waits for another worker it forwards a request to (customer reads, leaderboard parts).",
        gt=0,
    )
    history_per_cycle: int = _setting(
        50,
        "MILESTREAM_HISTORY_PER_CYCLE",
        "Contributions kept per customer, milestone and cycle for the history API (newest kept; 0: no history).",
        ge=0,
        le=1000,
    )
    history_cycles: int = _setting(
        3,
        "MILESTREAM_HISTORY_CYCLES",
        "Most recent cycles per customer and milestone whose contributions the history API keeps.",
        ge=1,
        le=100,
    )

    # Security: Kafka connections (every client: worker, topics apply, enrol, demo, bench)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = _setting(
        "PLAINTEXT", "MILESTREAM_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = _setting(
        "PLAIN", "MILESTREAM_KAFKA_SASL_MECHANISM", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."
    )
    kafka_sasl_username: str = _setting("", "MILESTREAM_KAFKA_SASL_USERNAME", "SASL user name.")
    kafka_sasl_password: SecretStr = _setting(
        SecretStr(""), "MILESTREAM_KAFKA_SASL_PASSWORD", "SASL password (never printed)."
    )
    kafka_ssl_cafile: str = _setting(
        "",
        "MILESTREAM_KAFKA_SSL_CAFILE",
        "PEM file of the CAs that sign the brokers' certificates (default: the system's).",
    )
    kafka_ssl_certfile: str = _setting(
        "", "MILESTREAM_KAFKA_SSL_CERTFILE", "PEM client certificate, for brokers that require TLS client auth."
    )
    kafka_ssl_keyfile: str = _setting("", "MILESTREAM_KAFKA_SSL_KEYFILE", "PEM private key of the client certificate.")
    kafka_ssl_key_password: SecretStr = _setting(
        SecretStr(""), "MILESTREAM_KAFKA_SSL_KEY_PASSWORD", "Password of an encrypted client key (never printed)."
    )

    @property
    def definitions_group(self) -> str:
        """The Faust app around the worker, and its consumer group: it publishes what applying a
        definitions record produced (worker/app.py)."""
        return f"{self.app_id}-definitions"

    @property
    def output_prefix(self) -> str:
        """The prefix of the topics this deployment owns."""
        return self.output_topic_prefix or self.topic_prefix

    @property
    def replaying(self) -> bool:
        """A replay deployment (blue/green reprocessing): its owned topics are not the live ones."""
        return self.output_prefix != self.topic_prefix

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @model_validator(mode="after")
    def _kafka_security_is_complete(self) -> Settings:
        """A half-configured connection is refused here, not at the broker (or worse, sent in clear)."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                f"MILESTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "MILESTREAM_KAFKA_SASL_USERNAME and MILESTREAM_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password.get_secret_value()):
            raise ValueError(
                "MILESTREAM_KAFKA_SASL_USERNAME/PASSWORD are set but MILESTREAM_KAFKA_SECURITY_PROTOCOL "
                f"is {self.kafka_security_protocol}: use SASL_PLAINTEXT or SASL_SSL"
            )
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile or self.kafka_ssl_keyfile):
            raise ValueError(
                "MILESTREAM_KAFKA_SSL_* files are set but MILESTREAM_KAFKA_SECURITY_PROTOCOL "
                f"is {self.kafka_security_protocol}: use SSL or SASL_SSL"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("MILESTREAM_KAFKA_SSL_CERTFILE and MILESTREAM_KAFKA_SSL_KEYFILE go together")
        return self

    # Command line
    command_timeout_s: float = _setting(
        10.0,
        "MILESTREAM_COMMAND_TIMEOUT",
        "Seconds a command (topics apply, enrol, reading definitions) waits for the broker before it gives up.",
        gt=0,
    )
    backfill_worker_wait_s: float = _setting(
        300.0,
        "MILESTREAM_BACKFILL_WORKER_WAIT",
        "Seconds `milestream backfill` waits for the workers to take up a run's start markers before it stops "
        "(the run resumes when started again).",
        gt=0,
    )
    backfill_batch_records: int = _setting(
        20000,
        "MILESTREAM_BACKFILL_BATCH_RECORDS",
        "Records `milestream backfill` copies between two checkpoints of its progress.",
        ge=1,
    )

    @model_validator(mode="before")
    @classmethod
    def _local_broker_when_unset(cls, values: Any) -> Any:
        if isinstance(values, dict) and not {"kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS"} & values.keys():
            local = local_broker_bootstrap()
            if local:
                values = {**values, "KAFKA_BOOTSTRAP_SERVERS": local}
        return values

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings from the process environment, or from ``environ`` alone."""
        if environ is None:
            return cls()
        given = {env: environ[env] for env in cls.environment_variables().values() if env in environ}
        # pydantic-settings' own keyword for "these sources only"
        return cls(_build_sources=((InitSettingsSource(cls, init_kwargs=given),), given))  # type: ignore[call-arg]

    @classmethod
    def environment_variables(cls) -> dict[str, str]:
        """Field name -> environment variable."""
        return {name: str((info.json_schema_extra or {})["env"]) for name, info in cls.model_fields.items()}  # type: ignore[index]

    def environment(self) -> dict[str, str]:
        """These settings as the environment variables a ``milestream`` process reads (secrets revealed)."""
        env = {}
        for name, variable in self.environment_variables().items():
            value = getattr(self, name)
            env[variable] = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        return env

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, description) for every setting."""
        return [
            (variable, str(cls.model_fields[name].default), cls.model_fields[name].description or "")
            for name, variable in cls.environment_variables().items()
        ]

    def effective(self) -> list[tuple[str, str, str]]:
        """(environment variable, value in effect, description) for every setting."""
        return [
            (env, str(getattr(self, name)), self.model_fields[name].description or "")
            for name, env in self.environment_variables().items()
        ]


def describe_settings_error(error: ValidationError) -> str:
    """One line for a bad setting, naming its environment variable and the value given."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        given = item.get("input")
        shown = f" (got {given!r})" if isinstance(given, (str, int, float)) else ""
        parts.append(f"{where}: {item['msg']}{shown}")
    return "; ".join(parts)
