"""The chart's values documentation: `# --` comments of values.yaml, rendered as a table.

Every key of values.yaml is either a documented parameter (a `# --` comment right above it; its
whole value is the default, nested keys included) or a section whose keys are documented. The
chart README holds the table between `<!-- values:start -->` and `<!-- values:end -->`.

Regenerate the README table after changing values.yaml:

    .venv/bin/python tests/chart/values_doc.py --write
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "conversation-events"
START, END = "<!-- values:start -->", "<!-- values:end -->"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")


@dataclass(frozen=True)
class Parameter:
    path: str
    description: str
    default: Any


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def parse(values_file: Path = CHART / "values.yaml") -> tuple[list[Parameter], list[str]]:
    """The documented parameters, and the keys that are neither documented nor sections."""
    values = yaml.safe_load(values_file.read_text())
    stack: list[tuple[int, str]] = []
    comment: list[str] = []
    documented: list[tuple[str, str]] = []
    keys: list[str] = []
    for line in values_file.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            comment = [stripped[4:].strip()]
            continue
        if stripped.startswith("#") and comment:
            comment.append(stripped[1:].strip())
            continue
        match = _KEY.match(line)
        if not match:
            if stripped:
                comment = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        keys.append(path)
        if comment:
            documented.append((path, " ".join(comment)))
        comment = []

    doc_paths = {p for p, _ in documented}

    def covered(path: str) -> bool:
        parts = path.split(".")
        # documented itself or inside a documented value, or a section with documented keys
        if any(".".join(parts[:i]) in doc_paths for i in range(1, len(parts) + 1)):
            return True
        return any(p.startswith(path + ".") for p in doc_paths)

    undocumented = [k for k in keys if not covered(k)]
    params = []
    for path, description in documented:
        parent_documented = any(
            ".".join(path.split(".")[:i]) in doc_paths for i in range(1, path.count(".") + 1)
        )
        if parent_documented:
            undocumented.append(f"{path} (documented inside a documented value)")
            continue
        value: Any = values
        for part in path.split("."):
            value = value[part]
        params.append(Parameter(path, description, value))
    return params, undocumented


def table(params: list[Parameter]) -> str:
    """Markdown table of the parameters, in values.yaml order."""
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for p in params:
        default = json.dumps(p.default, ensure_ascii=False, separators=(", ", ": "))
        description = p.description.replace("|", "\\|")
        rows.append(f"| `{p.path}` | {_type_name(p.default)} | `{default}` | {description} |")
    return "\n".join(rows) + "\n"


def readme_table(readme: Path = CHART / "README.md") -> str:
    """The table currently in the README."""
    text = readme.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip("\n") + "\n"


def write(readme: Path = CHART / "README.md") -> None:
    params, undocumented = parse()
    if undocumented:
        raise SystemExit(f"undocumented values keys: {undocumented}")
    text = readme.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{table(params)}{END}{tail}")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        sys.stdout.write(table(parse()[0]))
