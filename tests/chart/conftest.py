"""Fixtures of the chart tests: the helm binary and cached renderings of the chart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.chart.rendering import COMBINATIONS, find_helm, require_tool, template


@pytest.fixture(scope="session")
def helm() -> str:
    return require_tool(find_helm(), "helm")


@pytest.fixture(scope="session")
def render(helm: str) -> Callable[..., list[dict[str, Any]]]:
    """Render a combination by name, or with explicit arguments; cached per argument list."""
    cache: dict[tuple[str, ...], list[dict[str, Any]]] = {}

    def _render(name: str | None = None, *extra: str) -> list[dict[str, Any]]:
        args = tuple([*(COMBINATIONS[name] if name else []), *extra])
        if args not in cache:
            cache[args] = template(helm, args)
        return cache[args]

    return _render
