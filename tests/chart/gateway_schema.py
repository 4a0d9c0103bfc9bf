"""The Gateway API's published HTTPRoute schema, for validating the chart's HTTPRoute offline.

`schemas/httproute-v1.json` is the `v1` openAPIV3Schema of the standard channel's CRD
`httproutes.gateway.networking.k8s.io` (Gateway API v1.6.1, Apache-2.0), without its
`description` texts and `status`. Regenerate it from a newer CRD file:

    .venv/bin/python tests/chart/gateway_schema.py --write gateway.networking.k8s.io_httproutes.yaml

Validation is strict as kubernetes-validate's is: an object schema that lists its properties
accepts no other (the API server would prune them silently).
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "httproute-v1.json"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def extract(crd: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    """The served `version`'s schema of a CRD, without descriptions and status."""
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = _strip(served["schema"]["openAPIV3Schema"])
    schema["properties"].pop("status", None)
    bundle = crd["metadata"].get("annotations", {}).get("gateway.networking.k8s.io/bundle-version")
    return {"$comment": f"{crd['metadata']['name']} {version}, Gateway API {bundle}", **schema}


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def validator() -> jsonschema.protocols.Validator:
    schema = _strict(copy.deepcopy(json.loads(SCHEMA_FILE.read_text())))
    # Kubernetes' metadata is ObjectMeta, which the CRD leaves open.
    schema["properties"]["metadata"] = {"type": "object"}
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


if __name__ == "__main__":
    if sys.argv[1:2] != ["--write"] or len(sys.argv) != 3:
        raise SystemExit(__doc__)
    crd = yaml.safe_load(Path(sys.argv[2]).read_text())
    SCHEMA_FILE.write_text(json.dumps(extract(crd), indent=1, sort_keys=True) + "\n")
