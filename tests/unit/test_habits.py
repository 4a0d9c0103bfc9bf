"""The checks that run by themselves: the pre-commit hooks, scripts/lint and CI agree."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
HOOKS = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())


def _tool(entry: str) -> str:
    """`.venv/bin/ruff format --check` -> `ruff format`; `.venv/bin/mypy` -> `mypy`."""
    words = [w for w in entry.split() if not w.startswith("-")]
    name = Path(words[0]).name
    return f"{name} {words[1]}" if name == "ruff" else name


def test_every_hook_is_local_and_runs_a_tool_of_the_locked_venv() -> None:
    # No hook repository to clone and no hook environment to build: a commit needs no network.
    assert [repo["repo"] for repo in HOOKS["repos"]] == ["local"]
    for hook in HOOKS["repos"][0]["hooks"]:
        assert hook["language"] == "system", hook["id"]
        assert hook["entry"].startswith(".venv/bin/"), hook["id"]


def test_the_hooks_and_scripts_lint_run_the_same_checks() -> None:
    hooks = {_tool(h["entry"]) for h in HOOKS["repos"][0]["hooks"]}
    lint = (ROOT / "scripts" / "lint").read_text()
    in_lint = {_tool(m) for m in re.findall(r"^(\.venv/bin/\S+(?: \w+)?)", lint, re.MULTILINE)}
    assert hooks == {"ruff format", "ruff check", "mypy", "lint-imports"}
    assert hooks <= in_lint


def test_ci_fails_what_a_developer_may_skip() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export CI=true$", run, re.MULTILINE)
    assert run.rstrip().endswith("exec scripts/test")
