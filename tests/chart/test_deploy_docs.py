"""docs/deploy.md shows values and commands that work with the chart as it is.

Every YAML block of the page is a values file the chart renders with, and every `--set` of its
helm commands names a documented value (the repair upgrade's own test renders those).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.chart import values_doc
from tests.chart.rendering import ROOT, template

DOC = (ROOT / "docs" / "deploy.md").read_text()
YAML_BLOCKS = re.findall(r"^ *```yaml\n(.*?)^ *```", DOC, re.M | re.S)
BASH_BLOCKS = re.findall(r"^ *```bash\n(.*?)^ *```", DOC, re.M | re.S)
PARAMETERS = {p.path for p in values_doc.parse()[0]}


def test_the_page_has_values_blocks() -> None:
    assert len(YAML_BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(YAML_BLOCKS)))
def test_each_values_block_renders(helm: str, tmp_path: Path, index: int) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(YAML_BLOCKS[index])
    docs = template(helm, [f"--values={values}"])
    assert any(d["kind"] == "Deployment" for d in docs)


def test_every_set_in_a_helm_command_is_a_chart_value() -> None:
    sets = [
        key
        for block in BASH_BLOCKS
        for command in block.replace("\\\n", " ").splitlines()
        if command.lstrip().startswith("helm ")
        for key in re.findall(r"--set[= ]([\w.]+)=", command)
    ]
    assert sets
    for key in sets:
        assert key in PARAMETERS or any(key.startswith(f"{p}.") for p in PARAMETERS), key
