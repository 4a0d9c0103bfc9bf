"""The one Dockerfile is hadolint-clean and keeps the image contract."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

from tests.chart.rendering import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _hadolint() -> str | None:
    local = ROOT / ".venv" / "bin" / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def test_the_repository_has_one_dockerfile() -> None:
    found = sorted(
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("Dockerfile*")
        if not {".venv", ".tools", ".git"} & set(p.relative_to(ROOT).parts)
    )
    assert found == ["Dockerfile"]


def test_hadolint_clean() -> None:
    hadolint = require_tool(_hadolint(), "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_contract() -> None:
    text = DOCKERFILE.read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in text
    stages = re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.MULTILINE)
    assert stages == [("${BASE_IMAGE}", "builder"), ("${BASE_IMAGE}", "")]
    build, final = text.split("\nFROM ${BASE_IMAGE}\n", 1)
    # Installed from the lock, as wheels, without the dev group.
    assert "uv sync --frozen --no-dev --all-packages --no-editable" in build
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "COPY" not in final.replace("COPY --from=builder /opt/venv /opt/venv", "")
    assert "pip install" not in final and "uv " not in final, "the final stage installs nothing"
    assert re.search(r"^USER 10001:10001$", final, re.MULTILINE)
    assert "ENTRYPOINT" not in final, "the command chooses the process"
    [cmd] = re.findall(r"^CMD (.+)$", final, re.MULTILINE)
    assert json.loads(cmd) == ["conversation-events-api"]


def test_every_process_is_a_console_script_of_the_workspace() -> None:
    scripts: dict[str, str] = dict(PYPROJECT["project"]["scripts"])
    for service in ("api", "worker", "scaler"):
        member = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
        scripts |= member["project"]["scripts"]
    assert set(scripts) == {
        "conversation-events-migrate",
        "conversation-events-api",
        "conversation-events-keys",
        "conversation-events-import",
        "conversation-events-worker",
        "conversation-events-admin",
        "conversation-events-scaler",
    }
    for target in scripts.values():
        module, function = target.split(":")
        path = module.replace(".", "/")
        candidates = [ROOT / "src" / f"{path}.py"] + [
            ROOT / "services" / s / f"{path}.py" for s in ("api", "worker", "scaler")
        ]
        source = next(p for p in candidates if p.exists())
        assert re.search(rf"^def {function}\(", source.read_text(), re.MULTILINE), target


def test_the_image_installs_uv_at_the_version_the_workspace_requires() -> None:
    assert PYPROJECT["tool"]["uv"]["required-version"].startswith("==")
    assert "sed -n 's/^required-version" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!uv.lock", "!src/", "!services/", "**/tests"} <= set(lines)
