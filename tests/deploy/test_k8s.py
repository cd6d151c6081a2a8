"""The Kubernetes manifests of deploy/k8s: each overlay renders, every resource is valid against the
Kubernetes API schemas (offline, from the kubernetes-validate package), and what the manifests say
agrees with the code: settings, ports, the data folder, the topics, the secrets deploy/README.md
creates, the metrics and alert rules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from milestream.settings import Settings
from milestream.topics import load_topics
from milestream.worker.web import check_bind
from tests.deploy import kustomize

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
KUSTOMIZATIONS = ["base", *(f"overlays/{name}" for name in OVERLAYS), "monitoring"]
# The oldest Kubernetes these manifests are meant for, and the newest the schemas package knows.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
IMAGE = "milestream-worker"
WORKER, TOPICS_JOB = ("StatefulSet", "milestream-worker"), ("Job", "milestream-topics")
CUSTOM_RESOURCES = {"monitoring.coreos.com/v1"}


def render(path: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {kustomize.identity(r): r for r in kustomize.build(K8S / path)}


def milestream_containers(resources: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[dict, dict]]:
    """(resource, container) for every container that runs the Milestream image."""
    found = []
    for resource in resources.values():
        pod = kustomize.pod_spec(resource)
        for container in (pod or {}).get("containers", []):
            if PurePosixPath(container["image"].partition(":")[0]).name == IMAGE:
                found.append((resource, container))
    return found


def settings_data(resources: dict) -> dict[str, str]:
    return resources[("ConfigMap", "milestream-settings")]["data"]


def readme_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the `kubectl create secret generic` commands of deploy/README.md."""
    text = (ROOT / "deploy" / "README.md").read_text().replace("\\\n", " ")
    secrets: dict[str, set[str]] = {}
    for name, options in re.findall(r"create secret generic ([\w.-]+)([^\n]*)", text):
        keys = secrets.setdefault(name, set())
        keys |= set(re.findall(r"--from-literal=([\w.-]+)=", options))
        for source in re.findall(r"--from-file=(\S+)", options):
            keys.add(source.split("=", 1)[0] if "=" in source else PurePosixPath(source).name)
    return secrets


def container_environment(resources: dict, container: dict, pod_name: str) -> dict[str, str]:
    """The environment variables a container starts with (a made-up value for each secret)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(resources[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        elif "fieldRef" in item["valueFrom"]:
            assert item["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            env[item["name"]] = pod_name
        else:
            env[item["name"]] = f"secret-{item['valueFrom']['secretKeyRef']['key']}"
    return env


def mounted_file(resources: dict, resource: dict, container: dict, path: str) -> tuple[str, dict, str] | None:
    """(volume kind, volume, key) of the volume that provides the file at ``path``, if any."""
    volumes = {v["name"]: v for v in kustomize.pod_spec(resource).get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        folder = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(folder) and mount["name"] in volumes:
            volume = volumes[mount["name"]]
            kind = "secret" if "secret" in volume else "configMap" if "configMap" in volume else "other"
            return kind, volume, path[len(folder) :]
    return None


@pytest.fixture(scope="module", params=KUSTOMIZATIONS)
def rendered(request):
    return request.param, render(request.param)


def test_every_resource_of_every_kustomization_is_valid_kubernetes(rendered):
    path, resources = rendered
    assert resources
    for version in KUBERNETES_VERSIONS:
        for (kind, name), resource in resources.items():
            if resource["apiVersion"] in CUSTOM_RESOURCES:
                continue  # no schema in the package; tested below
            try:
                kubernetes_validate.validate(resource, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path)
                pytest.fail(f"{path}: {kind}/{name} is invalid on Kubernetes {version} at {where}: {exc.message}")


def test_the_schema_check_catches_a_misspelt_field():
    worker = render("base")[WORKER]
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kubectl_kustomize_renders_what_the_tests_check(path):
    output = subprocess.run(
        ["kubectl", "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    by_kubectl = {kustomize.identity(r): r for r in yaml.safe_load_all(output) if r}
    assert by_kubectl == render(path)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workers_run_unsupervised_with_a_volume_for_the_data_folder_and_a_stable_member_id(overlay):
    resources = render(f"overlays/{overlay}")
    worker = resources[WORKER]
    spec = worker["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["milestream", "worker", "--unsupervised"]
    assert pod.get("restartPolicy", "Always") == "Always"
    env = container_environment(resources, container, "milestream-worker-0")
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    data_mounts = [m for m in container["volumeMounts"] if m["mountPath"] == env["MILESTREAM_DATA_DIR"]]
    assert [m["name"] for m in data_mounts] == ["data"] and "data" in claims
    assert not data_mounts[0].get("readOnly")
    assert env["MILESTREAM_WORKER_ID"] == "milestream-worker-0"
    assert env.get("MILESTREAM_STORE", "rocksdb://") == "rocksdb://"
    # The pod's group can write the volume: the image's user (deploy/Dockerfile).
    uid = re.search(r"useradd[^\n]*--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text())
    assert uid and pod["securityContext"]["runAsUser"] == pod["securityContext"]["fsGroup"] == int(uid.group(1))
    assert pod["terminationGracePeriodSeconds"] > Settings.from_env(env).shutdown_grace_s
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_services_and_scraping_use_the_port_the_worker_serves(overlay):
    resources = render(f"overlays/{overlay}")
    worker = resources[WORKER]
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    settings = Settings.from_env(container_environment(resources, container, "milestream-worker-0"))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.web_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.web_port)
    assert annotations["prometheus.io/path"] == "/metrics"
    governing = resources[("Service", worker["spec"]["serviceName"])]
    assert governing["spec"]["clusterIP"] == "None"
    api = resources[("Service", "milestream-api")]
    for service in (governing, api):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= set(ports)
    assert worker["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    budget = resources[("PodDisruptionBudget", "milestream-worker")]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_the_manifests_set_is_a_setting_and_the_settings_are_accepted(overlay):
    resources = render(f"overlays/{overlay}")
    known = set(Settings.environment_variables().values())
    assert set(settings_data(resources)) <= known
    for resource, container in milestream_containers(resources):
        env = container_environment(resources, container, "milestream-worker-0")
        assert set(env) <= known, f"{resource['kind']}/{resource['metadata']['name']}: not settings"
        settings = Settings.from_env(env)  # raises on a value that does not parse or a half-set connection
        assert settings.kafka_bootstrap_servers == env["KAFKA_BOOTSTRAP_SERVERS"]
    worker = resources[WORKER]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    settings = Settings.from_env(container_environment(resources, container, "milestream-worker-0"))
    check_bind(settings)  # serving every interface needs the API token, which comes from a Secret
    token = next(e for e in container["env"] if e["name"] == "MILESTREAM_API_TOKEN")
    assert "secretKeyRef" in token["valueFrom"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secrets_are_referenced_never_shipped_and_deploy_readme_creates_each_one(overlay):
    resources = render(f"overlays/{overlay}")
    assert not [r for r in resources.values() if r["kind"] == "Secret"]
    documented = readme_secrets()
    secret_values = {"MILESTREAM_API_TOKEN", "MILESTREAM_KAFKA_SASL_PASSWORD", "MILESTREAM_KAFKA_SSL_KEY_PASSWORD"}
    assert not secret_values & set(settings_data(resources))
    for resource, container in milestream_containers(resources):
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in documented.get(ref["name"], set()), f"deploy/README.md creates no {ref}"
            elif item["name"] in secret_values:
                pytest.fail(f"{item['name']} is not read from a Secret")
        for volume in kustomize.pod_spec(resource).get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in documented


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_files_named_in_the_settings_are_mounted(overlay):
    resources = render(f"overlays/{overlay}")
    documented = readme_secrets()
    for resource, container in milestream_containers(resources):
        env = container_environment(resources, container, "milestream-worker-0")
        for variable in ("MILESTREAM_TOPICS_FILE", "MILESTREAM_KAFKA_SSL_CAFILE", "MILESTREAM_KAFKA_SSL_CERTFILE"):
            path = env.get(variable)
            if not path:
                continue
            provided = mounted_file(resources, resource, container, path)
            assert provided, f"{resource['metadata']['name']}: {variable}={path} is on no volume"
            kind, volume, key = provided
            if kind == "secret":
                assert key in documented[volume["secret"]["secretName"]]
            else:
                assert kind == "configMap" and key in resources[("ConfigMap", volume["configMap"]["name"])]["data"]


def topics_seen_by(resources: dict, resource: dict, container: dict) -> dict:
    """The topics of the topics.yaml a container reads: a mounted ConfigMap, else the image's."""
    env = container_environment(resources, container, "milestream-worker-0")
    path = env.get("MILESTREAM_TOPICS_FILE")
    if not path:
        dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
        assert re.search(r"^COPY topics\.yaml \./$", dockerfile, re.M) and "WORKDIR /app" in dockerfile
        assert "MILESTREAM_TOPICS_FILE=/app/topics.yaml" in dockerfile
        return load_topics(Settings.from_env({}))
    kind, volume, key = mounted_file(resources, resource, container, path)
    text = resources[("ConfigMap", volume["configMap"]["name"])]["data"][key]
    return load_topics_text(text, Settings.from_env(env).topic_prefix)


def load_topics_text(text: str, prefix: str) -> dict:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(text)
        file.flush()
        return load_topics(Settings.from_env({"MILESTREAM_TOPICS_FILE": file.name, "MILESTREAM_TOPIC_PREFIX": prefix}))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_topics_job_applies_the_topics_of_topics_yaml_that_the_workers_read(overlay):
    resources = render(f"overlays/{overlay}")
    job = resources[TOPICS_JOB]
    (job_container,) = job["spec"]["template"]["spec"]["containers"]
    (worker_container,) = resources[WORKER]["spec"]["template"]["spec"]["containers"]
    assert job_container["command"] == ["milestream", "topics", "apply"]
    assert job_container["image"] == worker_container["image"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    job_topics = topics_seen_by(resources, job, job_container)
    assert job_topics == topics_seen_by(resources, resources[WORKER], worker_container)
    declared = load_topics(Settings.from_env({}))
    assert job_topics.keys() == declared.keys()
    for name, spec in job_topics.items():
        ours = declared[name]
        assert (spec.name, spec.role, spec.partitions, spec.value_types, spec.owned) == (
            ours.name,
            ours.role,
            ours.partitions,
            ours.value_types,
            ours.owned,
        )
        added = {k: v for k, v in spec.config.items() if k not in ours.config}
        assert {k: spec.config[k] for k in ours.config} == ours.config and set(added) <= {"min.insync.replicas"}
        if "min.insync.replicas" in added:  # writes go on with a replica down
            assert int(added["min.insync.replicas"]) < spec.replication_factor
    # The Job and the workers connect alike.
    job_env = container_environment(resources, job_container, "job")
    worker_env = container_environment(resources, worker_container, "job")
    security = [v for v in Settings.environment_variables().values() if v.startswith(("KAFKA_", "MILESTREAM_KAFKA_"))]
    assert {v: job_env.get(v) for v in security} == {v: worker_env.get(v) for v in security}


def test_production_topics_are_replicated():
    resources = render("overlays/production")
    job = resources[TOPICS_JOB]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    topics = topics_seen_by(resources, job, container)
    assert {spec.replication_factor for spec in topics.values()} == {3}
    assert {spec.config.get("min.insync.replicas") for spec in topics.values()} == {"2"}


def test_production_runs_no_more_workers_than_partitions():
    resources = render("overlays/production")
    partitions = load_topics(Settings.from_env({}))["transactions"].partitions
    assert 1 < resources[WORKER]["spec"]["replicas"] <= partitions


def test_the_service_monitor_scrapes_the_workers_as_the_job_the_alert_rules_name():
    monitoring, base = render("monitoring"), render("base")
    (monitor,) = [r for r in monitoring.values() if r["kind"] == "ServiceMonitor"]
    selected = [
        service
        for service in base.values()
        if service["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == ["milestream-worker"]
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= {p["name"] for p in selected[0]["spec"]["ports"]}
    assert {e["path"] for e in monitor["spec"]["endpoints"]} == {"/metrics"}
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    jobs = {job for expr in expressions for job in re.findall(r'job="([^"]+)"', expr)}
    assert jobs == {"milestream-worker"}  # the ServiceMonitor's Service name, Prometheus' job label


def test_the_prometheus_rule_holds_the_alert_rules_of_deploy_alerts_yml():
    (rule,) = [r for r in render("monitoring").values() if r["kind"] == "PrometheusRule"]
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())

    def spaced(groups: list[dict]) -> list[dict]:  # PromQL does not mind line breaks and indentation
        return [{**g, "rules": [{**r, "expr": " ".join(r["expr"].split())} for r in g["rules"]]} for g in groups]

    assert rule["spec"].keys() == {"groups"} and spaced(rule["spec"]["groups"]) == spaced(alerts["groups"])


def test_deploy_readme_applies_only_kustomizations_that_exist():
    text = (ROOT / "deploy" / "README.md").read_text()
    applied = set(re.findall(r"(?:apply -k|kustomize) (deploy/k8s/[\w/.-]+)", text))
    assert {f"deploy/k8s/overlays/{name}" for name in OVERLAYS} | {"deploy/k8s/monitoring"} <= applied
    for path in applied:
        assert (ROOT / path / "kustomization.yaml").exists(), path
    assert "deploy/README.md" in (ROOT / "README.md").read_text()
