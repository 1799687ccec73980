"""The API reference (docs/api.md), generated from the OpenAPI document.

    python -m api.reference            write docs/api.md
    ranktune openapi --format markdown the same text on stdout (--format json: the document)

Operations are grouped by tag, each with its parameters, request body (model and examples)
and response codes with their meaning; then every model with its fields. Everything comes
from the document, so the reference says what /openapi.json says: describe a field or a
route in the code and regenerate. tests/api/test_openapi_contract.py fails when docs/api.md
is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["REFERENCE_PATH", "current_document", "render"]

REFERENCE_PATH = Path(__file__).resolve().parent.parent / "docs" / "api.md"
COMMAND = "python -m api.reference"
METHODS = ("get", "post", "put", "patch", "delete")
REF = "#/components/schemas/"


def current_document() -> dict[str, Any]:
    """The OpenAPI document the application serves (it depends on no setting)."""
    from pydantic import SecretStr

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(database_url="sqlite://", admin_token=SecretStr("reference-only-token"))
    return create_app(settings).openapi()


def render(document: dict[str, Any]) -> str:
    """The Markdown reference of an OpenAPI document."""
    info = document["info"]
    lines = [
        f"# {info['title']} API reference (version {info['version']})",
        "",
        f"<!-- Generated from the OpenAPI document by `{COMMAND}`; do not edit. -->",
        "",
        _paragraphs(info.get("description", "")),
        "",
        "Admin operations need `Authorization: Bearer <admin token>`. Models are listed in "
        "[Models](#models).",
        "",
    ]
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                operation = item[method]
                by_tag.setdefault((operation.get("tags") or ["other"])[0], []).append(
                    (method, path, operation)
                )
    for tag, operations in by_tag.items():
        lines += [f"## {tag}", ""]
        lines += [
            f"- [`{m.upper()} {p}`](#{_anchor(m, p)}) — {o['summary']}" for m, p, o in operations
        ]
        lines.append("")
        for method, path, operation in operations:
            lines += _operation(method, path, operation, document["components"]["schemas"])
    lines += ["## Models", ""]
    for name, schema in document["components"]["schemas"].items():
        lines += _model(name, schema)
    return "\n".join(lines).rstrip() + "\n"


def _anchor(method: str, path: str) -> str:
    return "op-" + method + "-" + "".join(c if c.isalnum() else "-" for c in path).strip("-")


def _operation(
    method: str, path: str, operation: dict[str, Any], models: dict[str, Any]
) -> list[str]:
    lines = [
        f'<a id="{_anchor(method, path)}"></a>',
        f"### `{method.upper()} {path}`",
        "",
        f"**{operation['summary']}**" + (" (admin)" if operation.get("security") else ""),
        "",
        _paragraphs(operation.get("description", "")),
        "",
    ]
    parameters = operation.get("parameters", [])
    if parameters:
        lines += ["| parameter | in | type | required | description |", "|---|---|---|---|---|"]
        for parameter in parameters:
            kind = _cell(_type(parameter["schema"]))
            lines.append(
                f"| `{parameter['name']}` | {parameter['in']} | {kind} | "
                f"{'yes' if parameter.get('required') else 'no'} | "
                f"{_cell(parameter.get('description', ''))} |"
            )
        lines.append("")
    body = operation.get("requestBody")
    if body:
        if body.get("description"):
            lines += [_paragraphs(body["description"]), ""]
        for media, content in body["content"].items():
            schema = content["schema"]
            lines += [f"Request body ({media}): {_type(schema)}", ""]
            if "$ref" in schema:
                schema = models[schema["$ref"].removeprefix(REF)]
            else:
                lines += _fields(schema)
            for example in _examples(content, schema):
                lines += ["Example:", "", "```json", json.dumps(example, indent=2), "```", ""]
    lines += ["| status | body | meaning |", "|---|---|---|"]
    for status, response in operation["responses"].items():
        bodies = ", ".join(
            f"{_type(c['schema']) if c.get('schema') else '(binary)'} ({media})"
            for media, c in response.get("content", {}).items()
        )
        lines.append(f"| {status} | {_cell(bodies) or '—'} | {_cell(response['description'])} |")
    return [*lines, ""]


def _examples(content: dict[str, Any], schema: dict[str, Any]) -> list[Any]:
    examples = [e["value"] for e in content.get("examples", {}).values()]
    examples += schema.get("examples", [])
    return examples


def _model(name: str, schema: dict[str, Any]) -> list[str]:
    lines = [f'<a id="model-{name.lower()}"></a>', f"### {name}", ""]
    if schema.get("description"):
        lines += [_paragraphs(schema["description"]), ""]
    if "enum" in schema:
        values = ", ".join(f"`{value}`" for value in schema["enum"])
        return [*lines, f"One of: {values}.", ""]
    lines += _fields(schema)
    for example in schema.get("examples", []):
        lines += ["Example:", "", "```json", json.dumps(example, indent=2), "```", ""]
    return lines


def _fields(schema: dict[str, Any]) -> list[str]:
    return ["| field | type | required | description |", "|---|---|---|---|", *_rows(schema), ""]


def _rows(schema: dict[str, Any], prefix: str = "") -> list[str]:
    """One row per field; the fields of an inline object (not a model) follow it."""
    required = set(schema.get("required", []))
    rows = []
    for field, prop in schema.get("properties", {}).items():
        text = _cell(prop.get("description", ""))
        if "default" in prop:
            text += ("" if text.endswith(".") or not text else ".") + " Default: "
            text += f"`{json.dumps(prop['default'])}`."
        required_field = "yes" if field in required else "no"
        rows.append(f"| `{prefix}{field}` | {_cell(_type(prop))} | {required_field} | {text} |")
        items = prop.get("items", {})
        if "properties" in items:
            rows += _rows(items, f"{prefix}{field}[].")
        elif "properties" in prop:
            rows += _rows(prop, f"{prefix}{field}.")
    return rows


def _type(schema: dict[str, Any]) -> str:
    """A schema as words: `number` (0 < x <= 1), list of [ArmOut](#model-armout), ..."""
    if "$ref" in schema:
        name = schema["$ref"].removeprefix(REF)
        return f"[{name}](#model-{name.lower()})"
    if "anyOf" in schema:
        variants = [s for s in schema["anyOf"] if s.get("type") != "null"]
        nullable = len(variants) < len(schema["anyOf"])
        text = " or ".join(_type(s) for s in variants)
        return text + (" or null" if nullable else "")
    kind = schema.get("type")
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if kind == "array":
        return "list of " + _type(schema.get("items", {})) + _bounds(schema)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "map of string to " + _type(schema["additionalProperties"]) + _bounds(schema)
    return f"`{kind or 'any'}`" + _bounds(schema)


def _bounds(schema: dict[str, Any]) -> str:
    parts = []
    for key, text in (
        ("minimum", ">= {}"),
        ("exclusiveMinimum", "> {}"),
        ("maximum", "<= {}"),
        ("exclusiveMaximum", "< {}"),
        ("minLength", "at least {} characters"),
        ("maxLength", "at most {} characters"),
        ("minItems", "at least {} items"),
        ("maxItems", "at most {} items"),
        ("maxProperties", "at most {} entries"),
        ("pattern", "matching `{}`"),
        ("format", "{}"),
    ):
        if key in schema:
            value = schema[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            parts.append(text.format(value))
    return f" ({', '.join(parts)})" if parts else ""


def _paragraphs(text: str) -> str:
    """Docstring text as Markdown: each paragraph on one line, blank lines between."""
    paragraphs = [" ".join(block.split()) for block in text.strip().split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _cell(text: str) -> str:
    """Text for a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def main() -> int:
    REFERENCE_PATH.write_text(render(current_document()), encoding="utf-8")
    print(f"wrote {REFERENCE_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
