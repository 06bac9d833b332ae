"""TypeScript declarations of the call WebSocket's messages, generated from docs/asyncapi.json.

The JavaScript SDK (``signaling/web/sdk/``) ships them as ``protocol.d.ts`` beside its modules:
``python -m signaling.web.typings > signaling/web/sdk/protocol.d.ts``. The document is the
source, not the Python definitions, so the declarations say exactly what a client developer
reads in the contract; tests/test_sdk_js.py fails when the committed file drifts from it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ASYNCAPI = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json"
_REF = "#/components/schemas/"
_HEADER = """\
// The call WebSocket's messages (docs/protocol.md §11), as docs/asyncapi.json defines them.
// Generated: python -m signaling.web.typings > signaling/web/sdk/protocol.d.ts — do not edit.
"""


def ts_type(schema: dict[str, Any]) -> str:
    """The TypeScript type of one JSON Schema (the subset the AsyncAPI document uses)."""
    if "$ref" in schema:
        return str(schema["$ref"]).removeprefix(_REF)
    if "enum" in schema:
        return " | ".join(json.dumps(value) for value in schema["enum"])
    if "anyOf" in schema:
        return " | ".join(ts_type(option) for option in schema["anyOf"])
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return "number"
    if kind in ("string", "boolean", "null"):
        return str(kind)
    if kind == "array":
        item = ts_type(schema.get("items", {}))
        return f"({item})[]" if "|" in item else f"{item}[]"
    if kind == "object" and "properties" not in schema:
        extra = schema.get("additionalProperties")
        value = ts_type(extra) if isinstance(extra, dict) else "unknown"
        return f"Record<string, {value}>"
    return "unknown"


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    lines = [line.strip() for line in text.strip().splitlines()]
    if len(lines) == 1 and len(indent) + len(lines[0]) < 94:
        return [f"{indent}/** {lines[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in lines), f"{indent} */"]


def interface(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    out = [*_doc(schema.get("description"), ""), f"export interface {name} {{"]
    for field, spec in schema.get("properties", {}).items():
        out += _doc(spec.get("description"), "  ")
        optional = "" if field in required else "?"
        out.append(f"  {field}{optional}: {ts_type(spec)};")
    out.append("}")
    return out


def _union(name: str, doc: dict[str, Any], side: str) -> list[str]:
    messages = doc["components"]["messages"]
    names = [
        str(message["payload"]["$ref"]).removeprefix(_REF)
        for key, message in messages.items()
        if key.startswith(f"{side}.")
    ]
    return [f"export type {name} =", *(f"  | {n}" for n in names[:-1]), f"  | {names[-1]};"]


def render(doc: dict[str, Any]) -> str:
    out = [_HEADER.rstrip()]
    for name, schema in doc["components"]["schemas"].items():
        out += ["", *interface(name, schema)]
    out += ["", "/** What a client sends. */", *_union("ClientMessage", doc, "client")]
    out += ["", "/** What the server sends. */", *_union("ServerMessage", doc, "server")]
    reasons = " | ".join(json.dumps(reason) for reason in doc["x-end-reasons"])
    codes = " | ".join(json.dumps(code) for code in doc["x-error-codes"])
    out += ["", "/** Why a call ended (``ended.reason``). */"]
    out += [f"export type EndReason = {reasons};"]
    out += ["", "/** An ``error``'s stable code. */", f"export type ErrorCode = {codes};"]
    return "\n".join(out) + "\n"


def main(path: Path = ASYNCAPI) -> None:
    sys.stdout.write(render(json.loads(path.read_text())))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ASYNCAPI)
