"""docs/architecture.md shows the layout as it is: every path it names exists, every command is
an installed console script, and its drawing has the layers of the import-linter contracts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SERVICES = ("api", "worker", "scaler")
#: A backticked token that names a file or folder: it has a slash or a file suffix.
PATHLIKE = re.compile(r"^[\w./-]*(/|\.(py|toml|yaml|lock|md))$|^[\w.-]+/[\w./-]+$|^Dockerfile$")


def _paragraphs() -> list[str]:
    text = re.sub(r"```.*?```", "", DOC, flags=re.DOTALL)
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def _resolve(token: str, bases: list[Path]) -> Path | None:
    """The token as a repository path, else relative to the folders the paragraph named
    before it (latest first): `domain/` after `src/conversation_events/`, and so on."""
    for base in [ROOT, *reversed(bases)]:
        if (base / token).exists():
            return base / token
    return None


def test_every_path_the_page_names_exists() -> None:
    checked = 0
    for paragraph in _paragraphs():
        bases: list[Path] = []
        for token in re.findall(r"`([^`\s]+)`", paragraph):
            token = token.rstrip(",")
            if not PATHLIKE.match(token) or token.startswith((".venv", "/")):
                continue
            found = _resolve(token, bases)
            assert found is not None, f"docs/architecture.md names {token}, which does not exist"
            checked += 1
            if found.is_dir():
                bases.append(found)
    assert checked > 40, checked


def _scripts() -> set[str]:
    names = set(PYPROJECT["project"]["scripts"])
    for service in SERVICES:
        member = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
        names |= set(member["project"]["scripts"])
    return names


def test_every_command_is_a_console_script_of_the_workspace() -> None:
    commands = re.findall(r"`(conversation-events-[a-z]+)[^`]*`", DOC)
    distributions = {"conversation-events"} | {f"conversation-events-{s}" for s in SERVICES}
    assert commands
    for command in commands:
        assert command in _scripts() | distributions, command


def _contract(name_start: str) -> dict[str, object]:
    [contract] = [
        c
        for c in PYPROJECT["tool"]["importlinter"]["contracts"]
        if c["name"].startswith(name_start)
    ]
    return contract


def test_the_drawing_has_the_layers_of_the_contracts() -> None:
    [drawing] = [b for b in re.findall(r"```\n(.*?)```", DOC, re.DOTALL) if "migrate" in b]
    core = _contract("The core's layers")
    assert core["type"] == "layers"
    drawn = re.findall(r"│ (\S+(?: \| \S+)*)  ", drawing)
    assert drawn == core["layers"]
    services = _contract("The services sit on the core")
    layers = services["layers"]
    assert isinstance(layers, list)
    top, bottom = layers
    for package in str(top).split(" | "):
        assert package in drawing
    assert bottom == "conversation_events"
    black_box = _contract("The black-box e2e suite")
    assert black_box["source_modules"] == ["tests.e2e"]
    assert "tests/e2e ──► tests/spec.py" in drawing
