"""Security on a real broker and a real worker: SASL/SCRAM to Kafka, a bearer token on the HTTP pages.

The broker here is our own (deploy/local_kafka.py with a SASL_PLAINTEXT listener),
not the session's: the session broker has no SASL listener.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest

from milestream.kafka_client import refused_settings
from tests.factories import live_window, monthly_gross_definition, transaction
from tests.support.kafka_broker import load_local_kafka
from tests.support.worker import WorkerProcess, consume, isolated_settings, produce, settings_env

pytestmark = pytest.mark.kafka

USER, PASSWORD = "milestream-app", "s3cret-Pa55"
TOKEN = "t0ken-for-the-pages"
NOW = datetime.now(timezone.utc)
THIS_YEAR = live_window(NOW)


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    local_kafka = load_local_kafka()
    local_kafka.fetch()
    broker = local_kafka.start(tmp_path_factory.mktemp("sasl-kafka"), fresh=True, sasl={USER: PASSWORD})
    yield broker
    broker.stop()


def scram_settings(broker, folder, mechanism="SCRAM-SHA-512", password=PASSWORD, **overrides):
    return isolated_settings(
        broker.sasl_bootstrap,
        folder / "data",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=USER,
        kafka_sasl_password=password,
        **overrides,
    )


def milestream(settings, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "milestream.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def get(worker, path, token=None):
    """(status, headers, body) of a GET on the worker, with ``token`` as the bearer token if given."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"http://127.0.0.1:{worker.settings.web_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


@pytest.fixture(scope="module")
def scram_worker(sasl_broker, tmp_path_factory):
    """``topics apply`` and a worker, both over SCRAM-SHA-512, the pages behind a token."""
    folder = tmp_path_factory.mktemp("scram-worker")
    settings = scram_settings(sasl_broker, folder, api_token=TOKEN)
    applied = milestream(settings, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    assert "created" in applied.stdout
    worker = WorkerProcess(settings, folder / "worker.log")
    worker.start()
    yield worker
    worker.stop()


def test_the_worker_processes_events_over_scram(scram_worker):
    settings = scram_worker.settings
    produce(settings, [("definitions", "m-sasl", monthly_gross_definition("m-sasl", **THIS_YEAR))])
    scram_worker.wait_for_definition("m-sasl")  # /definitions, with the token
    when = (NOW - timedelta(minutes=5)).isoformat()
    produce(
        settings,
        [
            ("transactions", "ana", transaction("ana", "6000", when, 1)),
            ("transactions", "bo", transaction("bo", "10", when, 1)),
        ],
    )
    events = consume(settings, "promotions", lambda seen: any(e["kind"] == "achievement" for e in seen))
    assert [(e["kind"], e["customer_id"]) for e in events] == [("achievement", "ana")], scram_worker.log_tail()


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
def test_the_other_mechanisms_are_accepted(sasl_broker, tmp_path, mechanism):
    assert asyncio.run(refused_settings(scram_settings(sasl_broker, tmp_path, mechanism))) is None


def test_a_wrong_password_is_one_clear_line_from_topics_apply(sasl_broker, tmp_path):
    result = milestream(scram_settings(sasl_broker, tmp_path, password="not-it"), "topics", "apply")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("milestream: topics apply: Kafka at ") and f"refused the credentials of {USER!r}" in line
    assert "not-it" not in line


def test_a_worker_with_a_wrong_password_says_so_and_exits(sasl_broker, tmp_path):
    result = milestream(scram_settings(sasl_broker, tmp_path, password="not-it"), "worker", timeout=60)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("milestream: worker: Kafka at ") and "SaslAuthenticationFailed" in line


def test_pages_need_the_token_but_health_and_metrics_do_not(scram_worker):
    status, headers, body = get(scram_worker, "/definitions")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer ")
    assert "missing bearer token" in body
    status, headers, body = get(scram_worker, "/definitions", token="guess")
    assert status == 401 and 'error="invalid_token"' in headers["WWW-Authenticate"] and "wrong" in body
    assert get(scram_worker, "/lifetime-points?top=5")[0] == 401
    assert get(scram_worker, "/table/customer-state/")[0] == 401

    assert get(scram_worker, "/definitions", token=TOKEN)[0] == 200
    status, _, body = get(scram_worker, "/lifetime-points?top=5", token=TOKEN)
    assert status == 200 and '"as_of"' in body
    assert get(scram_worker, "/healthz")[0] == 200
    status, _, body = get(scram_worker, "/metrics")
    assert status == 200 and "milestream_definitions_loaded" in body
    # Off unless MILESTREAM_DEBUG_PAGES; Faust's raw table pages are always off.
    assert get(scram_worker, "/debug/tasks", token=TOKEN)[0] == 404
    assert get(scram_worker, "/table/customer-state/", token=TOKEN)[0] == 404


def test_the_worker_refuses_a_public_address_without_a_token(sasl_broker, tmp_path):
    result = milestream(scram_settings(sasl_broker, tmp_path, web_host="0.0.0.0"), "worker", timeout=30)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert "refusing to serve HTTP on 0.0.0.0" in line and "MILESTREAM_API_TOKEN" in line
