"""skaffold.yaml and the kind config parse and reference only files and values that exist."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart import values_doc
from tests.chart.rendering import CHART, ROOT, run_helm

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
KIND = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())
PARAMETERS = {p.path for p in values_doc.parse()[0]}
TEMPLATE_VAR = re.compile(
    r"\{\{\s*\.IMAGE_(REPO|TAG|DIGEST|FULLY_QUALIFIED)_([A-Za-z0-9_]+)\s*\}\}"
)
# Fields of kind's v1alpha4 Node (sigs.k8s.io/kind/pkg/apis/config/v1alpha4).
KIND_NODE_FIELDS = {
    "role", "image", "labels", "extraMounts", "extraPortMappings", "gpus",
    "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902",
}  # fmt: skip


def _is_value_path(path: str) -> bool:
    """A documented parameter, or a key inside one whose default is a map (free-form)."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in PARAMETERS:
            return i == len(parts) or isinstance(_lookup(prefix), dict)
    return False


def _lookup(path: str) -> Any:
    value: Any = VALUES
    for part in path.split("."):
        value = value[part]
    return value


def _leaf_paths(values: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in PARAMETERS:
            out += _leaf_paths(value, f"{path}.")
        else:
            out.append(path)
    return out


def _release() -> dict[str, Any]:
    [release] = SKAFFOLD["deploy"]["helm"]["releases"]
    return release


def _sanitized(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", image)


def test_skaffold_schema_version_and_artifacts():
    assert SKAFFOLD["kind"] == "Config"
    version = re.fullmatch(r"skaffold/v4beta(\d+)", SKAFFOLD["apiVersion"])
    assert version and int(version[1]) >= 11
    services = sorted(p.parent.name for p in ROOT.glob("services/*/Dockerfile"))
    artifacts = SKAFFOLD["build"]["artifacts"]
    assert sorted(a["image"] for a in artifacts) == [f"conversation-events-{s}" for s in services]
    for artifact in artifacts:
        context = ROOT / artifact.get("context", ".")
        assert context.is_dir()
        assert (context / artifact["docker"]["dockerfile"]).is_file(), artifact


def test_skaffold_release_references_the_chart_and_its_values():
    release = _release()
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for values_file in release["valuesFiles"]:
        path = ROOT / values_file
        assert path.is_file(), values_file
        for key in _leaf_paths(yaml.safe_load(path.read_text())):
            assert _is_value_path(key), f"{values_file}: {key} is not a chart value"
    for key in [*release["setValueTemplates"], *release.get("setValues", {})]:
        assert _is_value_path(key), f"{key} is not a chart value"


def test_set_value_templates_inject_each_built_image_into_its_component():
    images = {_sanitized(a["image"]): a["image"] for a in SKAFFOLD["build"]["artifacts"]}
    templates = _release()["setValueTemplates"]
    used = set()
    for key, template in templates.items():
        for kind, name in TEMPLATE_VAR.findall(template):
            assert name in images, f"{key} uses an unknown artifact {name}"
            used.add(name)
            component = key.split(".image.")[0].split(".")[-1]
            assert images[name] == f"conversation-events-{component}", key
            field = {"REPO": "repository", "TAG": "tag"}[kind]
            assert key.endswith(f".image.{field}"), key
    assert used == set(images), "an image is built but never deployed"


def test_profiles_patch_existing_paths():
    for profile in SKAFFOLD["profiles"]:
        config = copy.deepcopy(SKAFFOLD)
        for patch in profile["patches"]:
            assert patch["op"] in ("add", "replace", "remove")
            *parents, last = patch["path"].strip("/").split("/")
            target: Any = config
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            if patch["op"] == "add" and last == "-":
                target.append(patch["value"])
            else:
                assert (int(last) if isinstance(target, list) else last) in (
                    range(len(target)) if isinstance(target, list) else target
                ), patch
        for values_file in config["deploy"]["helm"]["releases"][0]["valuesFiles"]:
            assert (ROOT / values_file).is_file()


def test_skaffold_values_render_and_port_forward_targets_the_api(helm):
    release = _release()
    args = [f"--values={ROOT / f}" for f in release["valuesFiles"]]
    args += ["--values", str(ROOT / "k8s" / "values-dev.yaml")]
    fake = {"repository": "registry.example/conversation-events", "tag": "0123abcd"}
    args += [f"--set={k}={fake[k.rsplit('.', 1)[1]]}" for k in release["setValueTemplates"]]
    args += [f"--set={k}={v}" for k, v in release.get("setValues", {}).items()]
    result = run_helm(
        helm, "template", release["name"], str(CHART), f"--namespace={release['namespace']}", *args
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    [forward] = SKAFFOLD["portForward"]
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == release["namespace"]
    service = services[forward["resourceName"]]
    assert forward["port"] in {p["port"] for p in service["spec"]["ports"]}
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "api"


def test_kind_config_has_an_ingress_ready_node_with_host_ports():
    assert KIND["kind"] == "Cluster" and KIND["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [node] = KIND["nodes"]
    assert set(node) <= KIND_NODE_FIELDS
    assert node["role"] == "control-plane"
    assert node["labels"] == {"ingress-ready": "true"}
    ports = {(m["containerPort"], m["hostPort"], m["protocol"]) for m in node["extraPortMappings"]}
    assert ports == {(80, 80, "TCP"), (443, 443, "TCP")}


@pytest.mark.parametrize("script", ["kind-up", "install-tools"])
def test_scripts_parse_and_reference_existing_files(script):
    path = ROOT / "scripts" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    for ref in re.findall(r"\bk8s/[\w.-]+", path.read_text()):
        assert (ROOT / ref).is_file(), ref
    assert Path(path).stat().st_mode & 0o111
