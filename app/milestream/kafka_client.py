"""How every Kafka client of the project connects: bootstrap servers, TLS and SASL.

``client_options(settings)`` gives the keyword arguments of an aiokafka
producer, consumer or admin client; ``faust_credentials(settings)`` the same
security for the Faust app. Nothing else in the project builds a connection,
so a setting (``MILESTREAM_KAFKA_*``) reaches the worker, ``topics apply``,
``enrol``, the demo and the benchmarks alike.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

from .settings import Settings

# The settings that say how to connect (copied onto settings built in code, e.g. by the benchmarks).
SECURITY_FIELDS = (
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_sasl_username",
    "kafka_sasl_password",
    "kafka_ssl_cafile",
    "kafka_ssl_certfile",
    "kafka_ssl_keyfile",
    "kafka_ssl_key_password",
)


class KafkaConnectionSettingsError(ValueError):
    """The TLS files named in the settings cannot be used."""


def security_values(settings: Settings) -> dict[str, Any]:
    """The connection-security settings, to build other settings with."""
    return {name: getattr(settings, name) for name in SECURITY_FIELDS}


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (server certificates and host names verified), else None."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        return create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
            password=settings.kafka_ssl_key_password.get_secret_value() or None,
        )
    except (OSError, ssl.SSLError) as exc:  # a missing file, a wrong key password, not PEM
        files = [f for f in (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) if f]
        raise KafkaConnectionSettingsError(f"cannot use the Kafka TLS files {', '.join(files)}: {exc}") from None


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``, ``AIOKafkaConsumer`` and ``AIOKafkaAdminClient``."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return options


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for ``faust.App``: None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    # SASLCredentials picks SASL_SSL when given a TLS context, SASL_PLAINTEXT otherwise.
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=settings.kafka_sasl_password.get_secret_value(),
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=ssl_context(settings),
    )


class KafkaUnreachable(RuntimeError):
    """No bootstrap server accepted a connection; the message says why, in one line."""


class KafkaRefused(KafkaUnreachable):
    """A broker answered but refused these settings: its credentials check or the TLS verification failed."""


def _host_port(server: str) -> tuple[str, int]:
    host, _, port = server.strip().rpartition(":")
    return host.strip("[]"), int(port)


async def connection_problem(settings: Settings) -> KafkaUnreachable:
    """Why the bootstrap servers refuse these settings (aiokafka's own error only says it could not bootstrap)."""
    from aiokafka.conn import create_conn
    from aiokafka.errors import AuthenticationFailedError, SaslAuthenticationFailed

    options = client_options(settings)
    servers = [server.strip() for server in options.pop("bootstrap_servers").split(",")]
    reasons = []
    for server in servers:
        try:
            host, port = _host_port(server)
            connection = await create_conn(host, port, request_timeout_ms=10_000, **options)
        except (SaslAuthenticationFailed, AuthenticationFailedError) as exc:
            return KafkaRefused(
                f"Kafka at {server} refused the credentials of {settings.kafka_sasl_username!r} "
                f"({settings.kafka_sasl_mechanism} over {settings.kafka_security_protocol}): {exc}; "
                "check MILESTREAM_KAFKA_SASL_USERNAME and MILESTREAM_KAFKA_SASL_PASSWORD"
            )
        except ssl.SSLCertVerificationError as exc:
            return KafkaRefused(
                f"the TLS certificate of Kafka at {server} is not trusted: {exc.verify_message}; "
                "check MILESTREAM_KAFKA_SSL_CAFILE"
            )
        except Exception as exc:  # refused, time-out, TLS handshake: report it, try the next server
            reasons.append(f"{server}: {exc or type(exc).__name__}")
        else:
            connection.close()
            reasons.append(f"{server}: connects, but gave no cluster metadata")
    return KafkaUnreachable(
        f"cannot connect to the Kafka broker at {settings.kafka_bootstrap_servers} "
        f"({settings.kafka_security_protocol}): {'; '.join(reasons)}"
    )


def _not_a_failed_bootstrap(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Unable connect to")


async def start_client(client: Any, settings: Settings) -> None:
    """``await client.start()``, raising ``KafkaUnreachable`` (or ``KafkaRefused``) with the reason in one line.

    aiokafka logs each failed bootstrap attempt; the exception says it once, so those lines are dropped.
    """
    from aiokafka.errors import KafkaConnectionError

    client_log = logging.getLogger("aiokafka")
    client_log.addFilter(_not_a_failed_bootstrap)
    try:
        await client.start()
    except KafkaConnectionError:
        raise await connection_problem(settings) from None
    finally:
        client_log.removeFilter(_not_a_failed_bootstrap)


async def refused_settings(settings: Settings) -> str | None:
    """Why the brokers refuse these settings (credentials, TLS), in one line; None if they accept them or
    cannot be reached at all (a broker that is down may come back: not a settings problem)."""
    from aiokafka.admin import AIOKafkaAdminClient

    try:
        admin = AIOKafkaAdminClient(**client_options(settings), client_id="milestream-preflight")
    except KafkaConnectionSettingsError as exc:
        return str(exc)
    try:
        await start_client(admin, settings)
    except KafkaRefused as exc:
        return str(exc)
    except KafkaUnreachable:
        return None
    finally:
        await admin.close()
    return None
