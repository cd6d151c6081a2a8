"""The API reference rendered from the OpenAPI document: docs/api.md (committed, drift-tested)
and the self-contained HTML page served at /api/reference (no scripts, no external assets)."""

from __future__ import annotations

import html
from typing import Any

from .routes import openapi

INTRO = """\
# HTTP API reference

Generated from the worker's OpenAPI document (`schemas/openapi.json`, served at `/openapi.json`)
by `make schemas`; do not edit by hand. How the API behaves (who answers, limits, errors) is in
the README's [HTTP API](../README.md#http-api) section.
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_type(s) for s in schema["anyOf"])
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _type(schema["allOf"][0])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_type(schema['additionalProperties'])}"
    if "enum" in schema:
        return " | ".join(map(str, schema["enum"]))
    if "const" in schema:
        return repr(schema["const"])
    return str(kind)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in doc["paths"].items() for method, op in item.items()]


def markdown() -> str:
    doc = openapi()
    lines = [INTRO]
    for method, path, op in _operations(doc):
        lines += [
            f"## `{method} {path}`",
            "",
            op["summary"] + ("" if op.get("security", None) != [] else " (open)"),
            "",
        ]
        if op.get("parameters"):
            lines += ["| parameter | in | type | meaning |", "|---|---|---|---|"]
            for p in op["parameters"]:
                lines.append(f"| `{p['name']}` | {p['in']} | {_cell(_type(p['schema']))} | {_cell(p['description'])} |")
            lines.append("")
        if "requestBody" in op:
            lines += [f"Body: `{_type(op['requestBody']['content']['application/json']['schema'])}`", ""]
        answers = []
        for status, response in op["responses"].items():
            content_type, media = next(iter(response["content"].items()))
            answers.append(f"{status} `{_type(media['schema'])}`" if content_type == "application/json" else status)
        lines += ["Answers: " + ", ".join(answers), ""]
    lines += ["## Schemas", ""]
    for name, schema in sorted(doc["components"]["schemas"].items()):
        lines += [f"### {name}", ""]
        if schema.get("description"):
            lines += [" ".join(schema["description"].split()), ""]
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", ()))
            lines += ["| field | type | required | meaning |", "|---|---|---|---|"]
            for field, prop in properties.items():
                lines.append(
                    f"| `{field}` | {_cell(_type(prop))} | {'yes' if field in required else ''} "
                    f"| {_cell(prop.get('description', ''))} |"
                )
            lines.append("")
        elif "enum" in schema:
            lines += [", ".join(f"`{v}`" for v in schema["enum"]), ""]
    return "\n".join(lines).rstrip() + "\n"


def html_page() -> str:
    doc = openapi()
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Milestream API</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}",
        "code{background:#f3f3f3;padding:0 .2rem}table{border-collapse:collapse;margin:.5rem 0}",
        "td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}",
        "</style></head><body>",
        f"<h1>{html.escape(doc['info']['title'])}</h1><p>{html.escape(doc['info']['description'])}</p>",
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a> (OpenAPI 3.1).</p>",
    ]
    for method, path, op in _operations(doc):
        out.append(f"<h2 id='{html.escape(op['operationId'])}'><code>{method} {html.escape(path)}</code></h2>")
        out.append(f"<p>{html.escape(op['summary'])}</p>")
        if op.get("parameters"):
            out.append("<table><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr>")
            for p in op["parameters"]:
                out.append(
                    f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                    f"<td>{html.escape(_type(p['schema']))}</td><td>{html.escape(p['description'])}</td></tr>"
                )
            out.append("</table>")
        if "requestBody" in op:
            name = _type(op["requestBody"]["content"]["application/json"]["schema"])
            out.append(f"<p>Body: <a href='#schema-{html.escape(name)}'>{html.escape(name)}</a></p>")
        answers = []
        for status, response in op["responses"].items():
            name = _type(next(iter(response["content"].values()))["schema"])
            answers.append(f"{status} <a href='#schema-{html.escape(name)}'>{html.escape(name)}</a>")
        out.append("<p>Answers: " + ", ".join(answers) + "</p>")
    out.append("<h2>Schemas</h2>")
    for name, schema in sorted(doc["components"]["schemas"].items()):
        out.append(f"<h3 id='schema-{html.escape(name)}'>{html.escape(name)}</h3>")
        if schema.get("description"):
            out.append(f"<p>{html.escape(schema['description'])}</p>")
        properties = schema.get("properties", {})
        if properties:
            required = set(schema.get("required", ()))
            out.append("<table><tr><th>field</th><th>type</th><th>required</th><th>meaning</th></tr>")
            for field, prop in properties.items():
                out.append(
                    f"<tr><td><code>{html.escape(field)}</code></td><td>{html.escape(_type(prop))}</td>"
                    f"<td>{'yes' if field in required else ''}</td>"
                    f"<td>{html.escape(prop.get('description', ''))}</td></tr>"
                )
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
