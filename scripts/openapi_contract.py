"""The HTTP contract as a committed file: `docs/openapi.json`, and what may change in it.

    scripts/openapi --write    # regenerate docs/openapi.json
    scripts/openapi --check    # fail if it differs from the app's (scripts/lint runs it)
    scripts/openapi --breaking [--against REF]    # scripts/lint runs it too

`--breaking` compares the app's document with an earlier one (`REF`, a git revision: by
default the newest `v*` tag, else the file's previous committed version) and fails on a change
that can break a client written against it: a removed path, operation or documented response;
in what a client sends, a new required field or parameter, a removed field (bodies refuse
unknown fields), a removed enum value, a removed type or a tightened bound; in what it
receives, a removed field, a field no longer always present, or an added type (a field that
may now be null). Raising the major of `info.version` declares the break: it is then reported,
not failed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: An object of an OpenAPI document, parsed from JSON.
JsonObject = Mapping[str, Any]
#: The pairs of `$ref`s (old, new) already compared on the way down a schema.
Seen = frozenset[tuple[str, str]]

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "openapi.json"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
#: Bounds a request value must meet, and whether a larger figure is the tighter one.
_BOUNDS = {
    "minLength": True,
    "minimum": True,
    "exclusiveMinimum": True,
    "minItems": True,
    "maxLength": False,
    "maximum": False,
    "exclusiveMaximum": False,
    "maxItems": False,
}


def document() -> dict[str, Any]:
    """The OpenAPI document the API serves at `/openapi.json`."""
    from conversation_events_api.main import create_app
    from conversation_events_api.settings import ApiSettings

    return create_app(ApiSettings(docs_enabled=True)).openapi()


def render(doc: JsonObject) -> str:
    """The committed form: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def breaking_changes(old: JsonObject, new: JsonObject) -> list[str]:
    """What in `new` can break a client of `old`, one line each (empty: compatible)."""
    return list(_Diff(old, new).paths())


class _Diff:
    def __init__(self, old: JsonObject, new: JsonObject) -> None:
        self.old, self.new = old, new

    def paths(self) -> Iterator[str]:
        new_paths = self.new.get("paths", {})
        for path, old_item in self.old.get("paths", {}).items():
            if path not in new_paths:
                yield f"path removed: {path}"
                continue
            for method in _METHODS:
                if method not in old_item:
                    continue
                where = f"{method.upper()} {path}"
                if method not in new_paths[path]:
                    yield f"operation removed: {where}"
                    continue
                yield from self.operation(where, old_item[method], new_paths[path][method])

    def operation(self, where: str, old: JsonObject, new: JsonObject) -> Iterator[str]:
        old_params = {(p["in"], p["name"]): p for p in old.get("parameters", [])}
        for key, param in {(p["in"], p["name"]): p for p in new.get("parameters", [])}.items():
            name = f"{where} {key[0]} parameter {key[1]!r}"
            if key not in old_params:
                if param.get("required"):
                    yield f"{name}: new and required"
                continue
            if param.get("required") and not old_params[key].get("required"):
                yield f"{name}: now required"
            yield from self.schema(
                name, old_params[key].get("schema", {}), param.get("schema", {}), sent=True
            )
        old_body = _json_schema(old.get("requestBody"))
        new_body = _json_schema(new.get("requestBody"))
        if new_body is not None:
            if old_body is None:
                if new.get("requestBody", {}).get("required"):
                    yield f"{where} request body: new and required"
            else:
                yield from self.schema(f"{where} request body", old_body, new_body, sent=True)
        new_responses = new.get("responses", {})
        for status, response in old.get("responses", {}).items():
            if status not in new_responses:
                yield f"{where} response {status}: removed"
                continue
            old_schema = _json_schema(response)
            new_schema = _json_schema(new_responses[status])
            if old_schema is not None and new_schema is not None:
                yield from self.schema(
                    f"{where} response {status}", old_schema, new_schema, sent=False
                )

    def schema(
        self, where: str, old: JsonObject, new: JsonObject, *, sent: bool, seen: Seen = frozenset()
    ) -> Iterator[str]:
        """Changes of a schema that break whoever sends (`sent`) or receives its values."""
        key = (old.get("$ref", ""), new.get("$ref", ""))
        if key != ("", "") and key in seen:
            return  # a recursive model: compared once
        seen = seen | {key}
        old, new = _resolve(self.old, old), _resolve(self.new, new)
        old_types, new_types = _types(self.old, old), _types(self.new, new)
        if old_types and new_types:
            if sent and old_types - new_types:
                yield f"{where}: no longer accepts {', '.join(sorted(old_types - new_types))}"
            if not sent and new_types - old_types:
                yield f"{where}: may now be {', '.join(sorted(new_types - old_types))}"
        old_object, new_object = _branch(self.old, old, "object"), _branch(self.new, new, "object")
        if old_object is not None and new_object is not None:
            yield from self.object(where, old_object, new_object, sent=sent, seen=seen)
        old_array, new_array = _branch(self.old, old, "array"), _branch(self.new, new, "array")
        if old_array and new_array and "items" in old_array and "items" in new_array:
            yield from self.schema(
                f"{where}[]", old_array["items"], new_array["items"], sent=sent, seen=seen
            )
        if not sent:
            return
        for scalar_old, scalar_new in _scalar_pairs(self.old, old, self.new, new):
            if "enum" in scalar_old:
                removed = [v for v in scalar_old["enum"] if v not in scalar_new.get("enum", [])]
                if "enum" in scalar_new and removed:
                    yield f"{where}: enum values removed: {', '.join(map(str, removed))}"
            elif "enum" in scalar_new:
                yield f"{where}: now limited to {scalar_new['enum']}"
            for bound, larger_is_tighter in _BOUNDS.items():
                before, after = scalar_old.get(bound), scalar_new.get(bound)
                if after is None or before == after:
                    continue
                if before is None or (after > before) == larger_is_tighter:
                    yield f"{where}: {bound} tightened from {before} to {after}"
            if scalar_new.get("pattern") not in (None, scalar_old.get("pattern")):
                yield f"{where}: pattern changed to {scalar_new['pattern']!r}"

    def object(
        self, where: str, old: JsonObject, new: JsonObject, *, sent: bool, seen: Seen
    ) -> Iterator[str]:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        if sent:
            for name in sorted(new_required - old_required):
                yield f"{where}: field {name!r} now required"
            if new.get("additionalProperties") is False:
                for name in sorted(set(old_props) - set(new_props)):
                    yield f"{where}: field {name!r} removed (unknown fields are refused)"
        else:
            for name in sorted(set(old_props) - set(new_props)):
                yield f"{where}: field {name!r} removed"
            for name in sorted(old_required - new_required):
                if name in new_props:
                    yield f"{where}: field {name!r} no longer always present"
        for name in sorted(set(old_props) & set(new_props)):
            yield from self.schema(
                f"{where}.{name}", old_props[name], new_props[name], sent=sent, seen=seen
            )


def _json_schema(holder: JsonObject | None) -> JsonObject | None:
    if not holder:
        return None
    content = holder.get("content", {}).get("application/json")
    return None if content is None else content.get("schema")


def _resolve(doc: JsonObject, schema: JsonObject) -> JsonObject:
    seen = set()
    while "$ref" in schema and schema["$ref"] not in seen:
        seen.add(schema["$ref"])
        target: Any = doc
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {})
        schema = target
    return schema


def _variants(doc: JsonObject, schema: JsonObject) -> list[JsonObject]:
    """The alternatives of a schema (`anyOf`/`oneOf`), references resolved; itself if none."""
    schema = _resolve(doc, schema)
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema]
    return [v for option in options for v in _variants(doc, option)]


def _types(doc: JsonObject, schema: JsonObject) -> set[str]:
    """The JSON types a schema allows (empty: unconstrained)."""
    result: set[str] = set()
    for variant in _variants(doc, schema):
        declared = variant.get("type")
        if declared is None:
            if "properties" in variant:
                declared = "object"
            elif "const" in variant or "enum" in variant:
                continue
            else:
                return set()  # one unconstrained variant: anything goes
        result.update([declared] if isinstance(declared, str) else declared)
    return result


def _branch(doc: JsonObject, schema: JsonObject, kind: str) -> JsonObject | None:
    for variant in _variants(doc, schema):
        if variant.get("type") == kind or (kind == "object" and "properties" in variant):
            return variant
    return None


def _scalar_pairs(
    old_doc: JsonObject,
    old: JsonObject,
    new_doc: JsonObject,
    new: JsonObject,
) -> Iterator[tuple[JsonObject, JsonObject]]:
    """Old and new variants of the same scalar type (or both untyped), to compare bounds."""
    new_variants = _variants(new_doc, new)
    for old_variant in _variants(old_doc, old):
        kind = old_variant.get("type")
        if kind in ("object", "array"):
            continue
        for new_variant in new_variants:
            if new_variant.get("type") == kind:
                yield old_variant, new_variant
                break


def _major(doc: JsonObject) -> int:
    version = str(doc.get("info", {}).get("version", "0"))
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _git(*args: str) -> str | None:
    # Fixed git subcommands of this tool, git from PATH as a developer runs it.
    result = subprocess.run(  # noqa: S603
        ["git", *args],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


def earlier_document(ref: str | None) -> tuple[str, dict[str, Any]] | None:
    """(revision, document) to compare with: `ref`, else the newest `v*` tag, else the file's
    previous committed version. None when there is none (the first commit of the file)."""
    relative = str(COMMITTED.relative_to(ROOT))
    if ref is None:
        tags = (_git("tag", "--list", "v*", "--sort=-v:refname") or "").split()
        ref = tags[0] if tags else None
    if ref is None:
        commits = (_git("log", "--format=%H", "-n", "2", "--", relative) or "").split()
        committed = _git("show", f"HEAD:{relative}")
        current = COMMITTED.read_text() if COMMITTED.exists() else None
        # The committed file is the baseline while it has uncommitted changes; otherwise the
        # version before its last change.
        if committed is not None and committed != current:
            ref = "HEAD"
        elif len(commits) == 2:
            ref = commits[1]
        else:
            return None
    text = _git("show", f"{ref}:{relative}")
    return None if text is None else (ref, json.loads(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate docs/openapi.json")
    action.add_argument("--check", action="store_true", help="fail if the file is stale")
    action.add_argument("--breaking", action="store_true", help="fail on a breaking change")
    parser.add_argument("--against", help="git revision of the earlier document (--breaking)")
    args = parser.parse_args(argv)
    doc = document()
    if args.write:
        COMMITTED.write_text(render(doc))
        return 0
    if args.check:
        if not COMMITTED.exists() or COMMITTED.read_text() != render(doc):
            print(
                f"{COMMITTED.relative_to(ROOT)} differs from the app's OpenAPI document; "
                "run: scripts/openapi --write",
                file=sys.stderr,
            )
            return 1
        return 0
    earlier = earlier_document(args.against)
    if earlier is None:
        print("openapi: no earlier document to compare with", file=sys.stderr)
        return 0
    ref, old = earlier
    return compatibility(old, doc, ref)


def compatibility(old: JsonObject, new: JsonObject, ref: str) -> int:
    """Report the breaking changes from `old` (at `ref`) to `new`: 1 when there are some and
    `new` does not declare them by a higher major version, else 0."""
    changes = breaking_changes(old, new)
    for change in changes:
        print(f"openapi: breaking change since {ref}: {change}", file=sys.stderr)
    if changes and _major(new) > _major(old):
        print(f"openapi: allowed: info.version's major was raised ({new['info']['version']})")
        return 0
    return 1 if changes else 0


if __name__ == "__main__":
    sys.exit(main())
