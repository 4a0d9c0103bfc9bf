"""One app image for every component, each choosing its process by command; the reference is
built from `image.registry` (or `global.imageRegistry`), `image.repository`, and the digest when
set, else the tag."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.chart.rendering import CHART, COMBINATIONS, FULLNAME, Render, pod_specs, run_helm

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
DIGEST = "sha256:" + "ab" * 32
#: The console script each app workload runs (the Job and the helm test Pod included).
COMMANDS = {
    f"{FULLNAME}-api": "conversation-events-api",
    f"{FULLNAME}-worker": "conversation-events-worker",
    f"{FULLNAME}-scaler": "conversation-events-scaler",
    f"{FULLNAME}-deletion-cost": "conversation-events-scaler",
    f"{FULLNAME}-migrations": "conversation-events-migrate",
    f"{FULLNAME}-purge": "conversation-events-admin",
}
DATA = (f"{FULLNAME}-postgresql", f"{FULLNAME}-rabbitmq")


def _app_images(docs: list[dict[str, Any]]) -> dict[str, set[str]]:
    images: dict[str, set[str]] = {}
    for owner, pod in pod_specs(docs):
        if owner["metadata"]["name"] not in DATA:
            images[owner["metadata"]["name"]] = {c["image"] for c in pod["containers"]}
    return images


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_every_app_workload_runs_the_one_image_with_its_own_command(
    render: Render, combination: str
) -> None:
    docs = render(combination)
    images = _app_images(docs)
    assert f"{FULLNAME}-api" in images and f"{FULLNAME}-worker" in images
    # One reference for all; the combinations that move the image elsewhere are checked below.
    [reference] = set().union(*images.values())
    if not combination.startswith("image-registries"):
        assert reference == f"conversation-events:{APP_VERSION}"
    for owner, pod in pod_specs(docs):
        name = owner["metadata"]["name"]
        if name in COMMANDS:
            [container] = pod["containers"]
            assert container["command"][0] == COMMANDS[name], name


@pytest.mark.parametrize(
    ("args", "reference"),
    [
        (["--set=image.tag=1.2.3"], "conversation-events:1.2.3"),
        (
            ["--set=image.registry=r.example.com"],
            f"r.example.com/conversation-events:{APP_VERSION}",
        ),
        (
            ["--set=global.imageRegistry=g.example.com"],
            f"g.example.com/conversation-events:{APP_VERSION}",
        ),
        (
            ["--set=image.registry=r.example.com", "--set=global.imageRegistry=g.example.com"],
            f"r.example.com/conversation-events:{APP_VERSION}",
        ),
        (
            [
                "--set=image.repository=team/ce",
                "--set=image.tag=1.2.3",
                f"--set=image.digest={DIGEST}",
            ],
            f"team/ce@{DIGEST}",
        ),
    ],
    ids=["tag", "registry", "global-registry", "own-registry-wins", "digest-wins"],
)
def test_the_image_reference(render: Render, args: list[str], reference: str) -> None:
    images = _app_images(render(None, *args))
    assert set().union(*images.values()) == {reference}


@pytest.mark.parametrize("digest", ["ab" * 32, "sha256:ABC", "latest"])
def test_a_malformed_digest_is_refused(helm: str, digest: str) -> None:
    result = run_helm(helm, "template", "ce", str(CHART), f"--set=image.digest={digest}")
    assert result.returncode != 0 and "/image/digest" in result.stderr
