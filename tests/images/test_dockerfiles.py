"""The Dockerfiles are hadolint-clean and keep the image contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart.rendering import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(ROOT.glob("services/*/Dockerfile"))
ENTRY = {
    "api": "conversation_events_api",
    "worker": "conversation_events_worker",
    "scaler": "conversation_events_scaler",
}


def _hadolint() -> str | None:
    local = ROOT / ".venv" / "bin" / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_every_service_has_a_dockerfile():
    assert [p.parent.name for p in DOCKERFILES] == sorted(ENTRY)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    hadolint = require_tool(_hadolint(), "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_contract(dockerfile):
    text = dockerfile.read_text()
    service = dockerfile.parent.name
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.MULTILINE)
    assert stages == [("${BASE_IMAGE}", "builder"), ("${BASE_IMAGE}", "")]
    final = text.split("\nFROM ${BASE_IMAGE}\n", 1)[1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert f"COPY services/{service} /app/service" in final
    assert "COPY src /app/src" in final
    assert "PYTHONPATH=/app/src:/app/service" in final
    assert "pip install" not in final, "the final stage installs nothing"
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    [entrypoint] = re.findall(r"^ENTRYPOINT (.+)$", final, re.MULTILINE)
    assert json.loads(entrypoint) == ["/opt/venv/bin/python", "-m", ENTRY[service]]


def test_dockerignore_keeps_the_context_to_what_the_images_need():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!requirements.txt", "!src/", "!services/", "**/tests"} <= set(lines)
