"""JSON schemas of the operators' objects the chart renders, for the fields the chart uses.

Written from the operators' published CRDs (their `openAPIV3Schema`), as of:

* RabbitMQ Cluster Operator v2.22.3: `RabbitmqCluster` (rabbitmq.com/v1beta1)
* RabbitMQ Messaging Topology Operator v1.20.1: `User`, `Permission`, `Vhost` (rabbitmq.com/v1beta1)
* CloudNativePG v1.30.0: `Cluster`, `ScheduledBackup` (postgresql.cnpg.io/v1)

Types, enums, minimums and required fields are the CRDs'; every object is closed
(`additionalProperties: false`), so a field the CRD does not have, or one the chart starts to
use without its schema here, fails. Values passed through as they are (CloudNativePG's `backup`,
Kubernetes' own affinity and tolerations) are checked only as objects.
"""

from __future__ import annotations

from typing import Any

import jsonschema

VERSIONS = {
    "RabbitMQ Cluster Operator": "v2.22.3",
    "RabbitMQ Messaging Topology Operator": "v1.20.1",
    "CloudNativePG": "v1.30.0",
}

STRING: dict[str, Any] = {"type": "string"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STRING}
QUANTITY: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": (
        r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
        r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
    ),
}
RESOURCES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {"type": "object", "additionalProperties": QUANTITY},
    },
}
NAME_REF: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"name": STRING},
}
TOPOLOGY_SPREAD: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["maxSkew", "topologyKey", "whenUnsatisfiable"],
        "properties": {
            "maxSkew": {"type": "integer"},
            "topologyKey": STRING,
            "whenUnsatisfiable": STRING,
            "labelSelector": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"matchLabels": STRING_MAP},
            },
        },
    },
}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(required),
    }


def _image(field: str) -> dict[str, Any]:
    """A pod's image field and the Secrets it is pulled with."""
    return {field: STRING, "imagePullSecrets": {"type": "array", "items": NAME_REF}}


def _object(
    api_version: str, kind: str, spec: dict[str, Any], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """An operator's object whose `spec` has these properties (closed) and required fields."""
    metadata = _closed({"name": STRING, "labels": STRING_MAP, "annotations": STRING_MAP})
    return _closed(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": metadata,
            "spec": _closed(spec, required),
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


CLUSTER_REFERENCE = NAME_REF

RABBITMQ_CLUSTER = _object(
    "rabbitmq.com/v1beta1",
    "RabbitmqCluster",
    {
        "replicas": {"type": "integer", "minimum": 0},
        **_image("image"),
        "resources": RESOURCES,
        "persistence": _closed({"storage": QUANTITY, "storageClassName": STRING}),
        "affinity": {"type": "object"},
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "rabbitmq": _closed({"additionalConfig": {"type": "string", "maxLength": 100000}}),
        "override": _closed(
            {
                "statefulSet": _closed(
                    {
                        "spec": _closed(
                            {
                                "template": _closed(
                                    {
                                        "spec": _closed(
                                            {
                                                "nodeSelector": STRING_MAP,
                                                "topologySpreadConstraints": TOPOLOGY_SPREAD,
                                            }
                                        )
                                    }
                                )
                            }
                        )
                    }
                )
            }
        ),
    },
)

USER = _object(
    "rabbitmq.com/v1beta1",
    "User",
    {
        "tags": {
            "type": "array",
            "items": {"enum": ["management", "policymaker", "monitoring", "administrator"]},
        },
        "rabbitmqClusterReference": CLUSTER_REFERENCE,
    },
    ("rabbitmqClusterReference",),
)

PERMISSION = _object(
    "rabbitmq.com/v1beta1",
    "Permission",
    {
        "vhost": STRING,
        "userReference": NAME_REF,
        "permissions": _closed({"configure": STRING, "write": STRING, "read": STRING}),
        "rabbitmqClusterReference": CLUSTER_REFERENCE,
    },
    ("permissions", "rabbitmqClusterReference", "vhost"),
)

VHOST = _object(
    "rabbitmq.com/v1beta1",
    "Vhost",
    {
        "name": STRING,
        "defaultQueueType": {"enum": ["quorum", "classic", "stream"]},
        "rabbitmqClusterReference": CLUSTER_REFERENCE,
    },
    ("name", "rabbitmqClusterReference"),
)

CNPG_CLUSTER = _object(
    "postgresql.cnpg.io/v1",
    "Cluster",
    {
        "instances": {"type": "integer", "minimum": 1},
        **_image("imageName"),
        "primaryUpdateStrategy": {"enum": ["unsupervised", "supervised"]},
        "primaryUpdateMethod": {"enum": ["switchover", "restart"]},
        "bootstrap": _closed({"initdb": _closed({"database": STRING, "owner": STRING})}),
        "postgresql": _closed(
            {
                "parameters": STRING_MAP,
                "synchronous": _closed(
                    {
                        "method": {"enum": ["any", "first"]},
                        # The CRD's rule: "self > 0".
                        "number": {"type": "integer", "exclusiveMinimum": 0},
                        "dataDurability": {"enum": ["required", "preferred"]},
                    },
                    ("method", "number"),
                ),
            }
        ),
        "storage": _closed({"size": STRING, "storageClass": STRING}),
        "resources": RESOURCES,
        "affinity": _closed(
            {
                "enablePodAntiAffinity": {"type": "boolean"},
                "podAntiAffinityType": STRING,
                "topologyKey": STRING,
                "nodeSelector": STRING_MAP,
                "tolerations": {"type": "array", "items": {"type": "object"}},
                "additionalPodAffinity": {"type": "object"},
                "additionalPodAntiAffinity": {"type": "object"},
                "nodeAffinity": {"type": "object"},
            }
        ),
        "topologySpreadConstraints": TOPOLOGY_SPREAD,
        "backup": {"type": "object"},
        "plugins": {
            "type": "array",
            "items": _closed(
                {
                    "name": STRING,
                    "enabled": {"type": "boolean"},
                    "isWALArchiver": {"type": "boolean"},
                    "parameters": STRING_MAP,
                },
                ("name",),
            ),
        },
    },
    ("instances",),
)

SCHEDULED_BACKUP = _object(
    "postgresql.cnpg.io/v1",
    "ScheduledBackup",
    {
        "schedule": STRING,
        "cluster": _closed({"name": STRING}, ("name",)),
        "method": {"enum": ["barmanObjectStore", "volumeSnapshot", "plugin"]},
        "pluginConfiguration": _closed({"name": STRING, "parameters": STRING_MAP}, ("name",)),
        "backupOwnerReference": {"enum": ["none", "self", "cluster"]},
    },
    ("cluster", "schedule"),
)

SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
    for s in (RABBITMQ_CLUSTER, USER, PERMISSION, VHOST, CNPG_CLUSTER, SCHEDULED_BACKUP)
}
API_VERSIONS = {api for api, _ in SCHEMAS}


def validate(doc: dict[str, Any]) -> None:
    """Raise `jsonschema.ValidationError` unless `doc` fits its operator's schema."""
    schema = SCHEMAS[(doc["apiVersion"], doc["kind"])]
    jsonschema.Draft7Validator(schema).validate(doc)
