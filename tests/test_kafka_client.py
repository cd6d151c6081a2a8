"""Kafka connection security: the settings, and the options every client is built with."""

from __future__ import annotations

import ssl
import subprocess
import sys

import faust
import pytest
from pydantic import ValidationError

from milestream.kafka_client import KafkaConnectionSettingsError, client_options, faust_credentials, security_values
from milestream.settings import Settings

SASL = {"kafka_sasl_username": "alice", "kafka_sasl_password": "pa55word"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    """A self-signed certificate and its key, as PEM files (openssl)."""
    folder = tmp_path_factory.mktemp("pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kafka",
            "-keyout",
            folder / "key.pem",
            "-out",
            folder / "cert.pem",
        ],
        check=True,
        capture_output=True,
    )
    return folder


def test_plaintext_needs_nothing():
    assert client_options(Settings(kafka_bootstrap_servers="k:9092")) == {
        "bootstrap_servers": "k:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert faust_credentials(Settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext(mechanism):
    settings = Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism, **SASL)
    options = client_options(settings)
    assert (options["security_protocol"], options["sasl_mechanism"]) == ("SASL_PLAINTEXT", mechanism)
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("alice", "pa55word")
    assert "ssl_context" not in options
    credentials = faust_credentials(settings)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.protocol.value, credentials.mechanism.value) == ("SASL_PLAINTEXT", mechanism)
    assert credentials.password == "pa55word"


def test_sasl_ssl_verifies_the_broker_with_the_ca_and_presents_the_client_certificate(pem):
    settings = Settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        **SASL,
        kafka_ssl_cafile=str(pem / "cert.pem"),
        kafka_ssl_certfile=str(pem / "cert.pem"),
        kafka_ssl_keyfile=str(pem / "key.pem"),
    )
    context = client_options(settings)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any(ca["subject"] == ((("commonName", "kafka"),),) for ca in context.get_ca_certs())
    credentials = faust_credentials(settings)
    assert credentials.protocol.value == "SASL_SSL" and credentials.ssl_context is not None


def test_ssl_alone(pem):
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(pem / "cert.pem"))
    assert client_options(settings)["security_protocol"] == "SSL"
    assert isinstance(faust_credentials(settings), faust.SSLCredentials)


def test_an_unreadable_tls_file_is_a_clear_error(tmp_path):
    settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=str(tmp_path / "missing.pem"))
    with pytest.raises(KafkaConnectionSettingsError, match="missing.pem"):
        client_options(settings)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs MILESTREAM_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "alice"},
            "MILESTREAM_KAFKA_SASL_PASSWORD",
        ),
        (SASL, "use SASL_PLAINTEXT or SASL_SSL"),
        ({"kafka_ssl_cafile": "ca.pem"}, "use SSL or SASL_SSL"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_certfile": "c.pem"}, "go together"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_half_configured_security_is_refused(values, message):
    with pytest.raises(ValidationError, match=message):
        Settings(**values)


def test_secrets_are_never_printed():
    settings = Settings.from_env(
        {
            "MILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "MILESTREAM_KAFKA_SASL_USERNAME": "a",
            "MILESTREAM_KAFKA_SASL_PASSWORD": "pa55word",
            "MILESTREAM_API_TOKEN": "tok3n",
            "MILESTREAM_KAFKA_SSL_KEY_PASSWORD": "k3y",
        }
    )
    for shown in (repr(settings), str(settings), settings.model_dump_json(), str(settings.model_dump())):
        assert not {"pa55word", "tok3n", "k3y"} & set(shown.replace("'", " ").replace('"', " ").split())
        assert "pa55word" not in shown and "tok3n" not in shown and "k3y" not in shown
    env = settings.environment()  # what a child process is given
    assert (env["MILESTREAM_KAFKA_SASL_PASSWORD"], env["MILESTREAM_API_TOKEN"]) == ("pa55word", "tok3n")
    assert security_values(settings)["kafka_sasl_password"].get_secret_value() == "pa55word"


def test_the_settings_command_does_not_print_secrets():
    env = {
        "MILESTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "MILESTREAM_KAFKA_SASL_USERNAME": "a",
        "MILESTREAM_KAFKA_SASL_PASSWORD": "pa55word",
        "MILESTREAM_API_TOKEN": "tok3n",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "milestream.cli", "settings"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert "MILESTREAM_KAFKA_SASL_PASSWORD" in out and "pa55word" not in out and "tok3n" not in out
