"""The deployment files keep their security promises."""

from pathlib import Path

import yaml

from deploy import local_kafka

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_publishes_ports_on_loopback_only_and_the_worker_needs_a_token():
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published)
    assert "MILESTREAM_API_TOKEN" in compose["services"]["worker"]["environment"]


def test_the_sasl_listener_keeps_plaintext_for_the_controller_and_brokers(tmp_path):
    props = local_kafka.server_properties(9092, 9093, tmp_path, 9094, {"alice": "pw"})
    lines = dict(line.split("=", 1) for line in props.splitlines() if "=" in line and not line.startswith("#"))
    assert lines["listeners"].endswith(",SASL_PLAINTEXT://127.0.0.1:9094")
    assert lines["inter.broker.listener.name"] == "PLAINTEXT" and lines["controller.listener.names"] == "CONTROLLER"
    assert lines["sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN"
    assert 'user_alice="pw"' in lines["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    assert local_kafka.scram_arguments({"alice": "pw"}) == [
        "--add-scram",
        "SCRAM-SHA-256=[name=alice,password=pw]",
        "--add-scram",
        "SCRAM-SHA-512=[name=alice,password=pw]",
    ]
