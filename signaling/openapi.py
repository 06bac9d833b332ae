"""The OpenAPI 3.1 document, generated from the endpoint table and its Structs.

``python -m signaling.openapi`` prints it; ``docs/openapi.json`` is that output, and a test fails
when the two differ.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec

from signaling.protocol.bodies import Health
from signaling.protocol.problems import PROBLEM_CONTENT_TYPE, PROBLEM_TYPES, Problem
from signaling.rest import endpoints
from signaling.rest.framework import Endpoint

API_VERSION = "1.0.0"
_REF = "#/components/schemas/{name}"


def _operation_id(endpoint: Endpoint) -> str:
    return endpoint.handler.__name__


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": endpoint.params[name].description,
            "schema": {"type": "string", "pattern": f"^{endpoint.params[name].pattern}$"},
        }
        for name in re.findall(r"\{(\w+)\}", endpoint.path)
    ]


def _responses(endpoint: Endpoint, refs: dict[type, Any]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": endpoint.summary}
    if endpoint.response is not None:
        success["content"] = {endpoint.media_type: {"schema": refs[endpoint.response]}}
    elif endpoint.media_type != "application/json":
        success["content"] = {endpoint.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(endpoint.status): success}
    by_status: dict[int, list[str]] = {}
    for code in (*endpoint.errors, "internal", "unavailable"):
        by_status.setdefault(PROBLEM_TYPES[code].status, []).append(code)
    for status, codes in sorted(by_status.items()):
        responses[str(status)] = {
            "description": "Problem codes: " + ", ".join(sorted(set(codes))),
            "content": {PROBLEM_CONTENT_TYPE: {"schema": refs[Problem]}},
        }
    return responses


def _operation(endpoint: Endpoint, refs: dict[type, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": _operation_id(endpoint),
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "responses": _responses(endpoint, refs),
    }
    if endpoint.params:
        op["parameters"] = _parameters(endpoint)
    if endpoint.request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[endpoint.request]}},
        }
    if endpoint.operator:
        op["security"] = [{"operator": []}]
    else:
        op["security"] = [{"bearer": []}] if endpoint.auth else []
    return op


def document() -> dict[str, Any]:
    table = endpoints()
    types: list[type] = [Problem, Health]
    for endpoint in table:
        for kind in (endpoint.request, endpoint.response):
            if kind is not None and kind not in types:
                types.append(kind)
    schemas, components = msgspec.json.schema_components(types, ref_template=_REF)
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in table:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
    for path, summary in (("/healthz", "The process is up"), ("/readyz", "The store answers")):
        paths[path] = {
            "get": {
                "operationId": path.strip("/"),
                "summary": summary,
                "tags": ["health"],
                "security": [],
                "responses": {
                    "200": {
                        "description": summary,
                        "content": {"application/json": {"schema": refs[Health]}},
                    },
                    "503": {
                        "description": "Not ready",
                        "content": {"application/json": {"schema": refs[Health]}},
                    },
                },
            }
        }
    problem_codes = {
        code: {"status": t.status, "title": t.title} for code, t in sorted(PROBLEM_TYPES.items())
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Callbook API",
            "version": API_VERSION,
            "description": "Calls by handle, never by phone number. See docs/protocol.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An operator token (`cbo_...`) from `callbook operator "
                    "create`; device access tokens are refused with 403 not_operator.",
                },
            },
        },
        "x-problem-codes": problem_codes,
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(render(), end="")
