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


def test_skaffold_schema_version_and_artifacts() -> None:
    assert SKAFFOLD["kind"] == "Config"
    version = re.fullmatch(r"skaffold/v4beta(\d+)", SKAFFOLD["apiVersion"])
    assert version and int(version[1]) >= 11
    artifacts = SKAFFOLD["build"]["artifacts"]
    assert [a["image"] for a in artifacts] == ["conversation-events"], "one image"
    for artifact in artifacts:
        context = ROOT / artifact.get("context", ".")
        assert context.is_dir()
        assert (context / artifact["docker"]["dockerfile"]).is_file(), artifact


def test_skaffold_release_references_the_chart_and_its_values() -> None:
    release = _release()
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for values_file in release["valuesFiles"]:
        path = ROOT / values_file
        assert path.is_file(), values_file
        for key in _leaf_paths(yaml.safe_load(path.read_text())):
            assert _is_value_path(key), f"{values_file}: {key} is not a chart value"
    for key in [*release["setValueTemplates"], *release.get("setValues", {})]:
        assert _is_value_path(key), f"{key} is not a chart value"


def test_set_value_templates_inject_the_built_image_into_the_chart() -> None:
    [artifact] = SKAFFOLD["build"]["artifacts"]
    name = _sanitized(artifact["image"])
    templates = _release()["setValueTemplates"]
    assert templates == {
        "image.repository": f"{{{{.IMAGE_REPO_{name}}}}}",
        "image.tag": f"{{{{.IMAGE_TAG_{name}}}}}",
    }
    for template in templates.values():
        assert [found for _, found in TEMPLATE_VAR.findall(template)] == [name]


def test_profiles_patch_existing_paths() -> None:
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


def test_skaffold_values_render_and_port_forward_targets_the_api(helm: str) -> None:
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


def test_kind_config_has_an_ingress_ready_node_with_host_ports() -> None:
    assert KIND["kind"] == "Cluster" and KIND["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [node] = KIND["nodes"]
    assert set(node) <= KIND_NODE_FIELDS
    assert node["role"] == "control-plane"
    assert node["labels"] == {"ingress-ready": "true"}
    ports = {(m["containerPort"], m["hostPort"], m["protocol"]) for m in node["extraPortMappings"]}
    assert ports == {(80, 80, "TCP"), (443, 443, "TCP")}


@pytest.mark.parametrize("script", ["kind-up", "install-tools"])
def test_scripts_parse_and_reference_existing_files(script: str) -> None:
    path = ROOT / "scripts" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    for ref in re.findall(r"\bk8s/[\w.-]+", path.read_text()):
        assert (ROOT / ref).is_file(), ref
    assert Path(path).stat().st_mode & 0o111


def _script_default(script: str, variable: str) -> str:
    """The default of `VARIABLE=${VARIABLE:-default}` (or `VARIABLE=value`) in a script."""
    text = (ROOT / "scripts" / script).read_text()
    match = re.search(rf"^{variable}=(?:\$\{{{variable}:-(?P<d>[^}}]+)\}}|(?P<v>\S+))$", text, re.M)
    assert match, f"{script} sets no {variable}"
    return match["d"] or match["v"]


def _minor(version: str) -> tuple[int, int]:
    major, minor = re.search(r"(\d+)\.(\d+)", version).groups()  # type: ignore[union-attr]
    return int(major), int(minor)


# Kubernetes minors each release is tested against, from the projects' compatibility tables
# (KEDA: keda.sh "Cluster" page; ingress-nginx: its README's supported versions table).
KEDA_KUBERNETES = {
    (2, 16): (29, 31), (2, 17): (30, 32), (2, 18): (31, 33), (2, 19): (32, 34), (2, 20): (33, 35),
    (2, 21): (34, 36),
}  # fmt: skip
#: The first KEDA release whose operator closes the rabbitmq scaler's broker connections
#: (kedacore/keda#6266, fixed in 2.20.0).
KEDA_CONNECTION_LEAK_FIXED = (2, 20)
INGRESS_NGINX_KUBERNETES = {(1, 12): (28, 32), (1, 13): (29, 33)}


def test_kind_node_image_is_pinned_to_a_kind_release() -> None:
    [node] = KIND["nodes"]
    image = node["image"]
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image
    # kind builds node images for each of its releases; kind-up refuses an older kind.
    assert _minor(_script_default("kind-up", "KIND_MIN_VERSION")) >= (0, 30)


def test_kind_up_installs_versions_that_support_the_node() -> None:
    node = _minor(KIND["nodes"][0]["image"].split(":v", 1)[1])[1]
    keda = _minor(_script_default("kind-up", "KEDA_CHART_VERSION"))
    low, high = KEDA_KUBERNETES[keda]
    assert low <= node <= high, f"KEDA {keda} is not tested on Kubernetes 1.{node}"
    assert keda >= (2, 17), "the chart renders fallback.behavior, which KEDA 2.17 added"
    assert keda >= KEDA_CONNECTION_LEAK_FIXED, "KEDA before 2.20 leaks broker connections"
    ingress = _minor(_script_default("kind-up", "INGRESS_NGINX_VERSION"))
    low, high = INGRESS_NGINX_KUBERNETES[ingress]
    assert low <= node <= high, f"ingress-nginx {ingress} does not support Kubernetes 1.{node}"


def test_kind_up_waits_on_rollouts_not_on_pods_that_may_not_exist_yet() -> None:
    text = (ROOT / "scripts" / "kind-up").read_text()
    commands = re.sub(r"#.*", "", text)
    # `kubectl wait --selector` right after `apply` can match no pod yet, and fails then.
    assert "--selector" not in commands and "-l " not in commands
    assert "rollout status" in commands and "deployment/ingress-nginx-controller" in commands


def test_skaffold_gives_helm_time_for_a_first_install() -> None:
    flags = SKAFFOLD["deploy"]["helm"]["flags"]
    for command in ("install", "upgrade"):
        [timeout] = [f for f in flags[command] if f.startswith("--timeout=")]
        minutes = re.fullmatch(r"--timeout=(\d+)m", timeout)
        assert minutes, timeout
        # The post-install migration Job alone may run for activeDeadlineSeconds.
        assert int(minutes[1]) * 60 > VALUES["migrations"]["activeDeadlineSeconds"], command
