"""Renders the kustomizations of deploy/k8s without the kustomize binary.

Only what those kustomizations use is implemented, and anything else is refused rather than ignored:
``resources`` (files and folders holding a kustomization), ``namespace``, ``images`` (``newName``,
``newTag``) and ``patches`` given by ``path`` as strategic merge patches. The merge follows
Kubernetes' strategic merge patch for the fields the patches touch: maps merge key by key, lists of
containers, env vars, volumes and volume mounts merge by their key (items new to the list first, as
kustomize puts them), every other list is replaced. When ``kubectl`` is installed,
tests/deploy/test_k8s.py checks that ``kubectl kustomize`` renders the same.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}

# Strategic merge keys (patchMergeKey of the Kubernetes API) of the lists the patches in deploy/k8s touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}

# Resources the namespace transformer leaves alone (cluster-scoped kinds).
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


class UnsupportedKustomization(ValueError):
    """The kustomization uses something this renderer does not implement."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def identity(resource: dict[str, Any]) -> tuple[str, str]:
    return resource["kind"], resource["metadata"]["name"]


def build(folder: Path) -> list[dict[str, Any]]:
    """The resources ``kustomize build folder`` outputs (in the order of their first appearance)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise UnsupportedKustomization(f"{folder}: {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        resources += build(path) if path.is_dir() else load_documents(path)
    seen = [identity(r) for r in resources]
    if len(seen) != len(set(seen)):
        raise UnsupportedKustomization(f"{folder}: a resource appears twice")
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise UnsupportedKustomization(f"{folder}: patch {patch}")
        for document in load_documents(folder / patch["path"]):
            target = [r for r in resources if identity(r) == identity(document)]
            if not target:
                raise UnsupportedKustomization(f"{folder}: patch {patch['path']} matches no resource")
            index = resources.index(target[0])
            resources[index] = merge(resources[index], document)
    for image in kustomization.get("images", []):
        if not set(image) <= {"name", "newName", "newTag"}:
            raise UnsupportedKustomization(f"{folder}: image {image}")
        for container in containers(resources):
            name, _, _ = container["image"].partition(":")
            if name == image["name"]:
                tag = container["image"][len(name) + 1 :] if ":" in container["image"] else ""
                new_tag = image.get("newTag", tag)
                container["image"] = image.get("newName", name) + (f":{new_tag}" if new_tag else "")
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def containers(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every container of every pod template."""
    found = []
    for resource in resources:
        pod = pod_spec(resource)
        if pod is not None:
            found += pod.get("initContainers", []) + pod.get("containers", [])
    return found


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    template = resource.get("spec", {}).get("template")
    return template.get("spec") if isinstance(template, dict) else None


def merge(original: Any, patch: Any, field: str = "") -> Any:
    """``patch`` applied to ``original`` as a strategic merge patch (a new object; neither is changed)."""
    if isinstance(patch, dict) and isinstance(original, dict):
        if any(key.startswith("$") for key in patch):
            raise UnsupportedKustomization(f"directive in {field}: {sorted(patch)}")
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = merge(original.get(key), value, key) if key in original else copy.deepcopy(value)
        return merged
    if isinstance(patch, list) and isinstance(original, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        by_key = {item[key]: item for item in original}
        new = [copy.deepcopy(item) for item in patch if item[key] not in by_key]
        patched = {item[key]: item for item in patch if item[key] in by_key}
        return new + [merge(item, patched[item[key]], field) if item[key] in patched else item for item in original]
    return copy.deepcopy(patch)
