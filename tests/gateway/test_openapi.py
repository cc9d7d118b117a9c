"""The published OpenAPI schema documents the statuses each route answers with (schemathesis checks the
answers against it: tests/fuzz). No I/O: the schema is built from the app's route handlers."""

from __future__ import annotations

from typing import Any

from services.gateway.app import create_app
from services.gateway.ratelimit import LIMIT
from services.settings import load_settings


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    app = create_app(load_settings({}))
    schema = app.openapi_schema.to_schema()
    limited = {
        (method, route.path_format)
        for route in app.routes
        for method, handler in getattr(route, "route_handler_map", {}).items()
        if getattr(handler[0] if isinstance(handler, tuple) else handler, "opt", {}).get(LIMIT)
    }
    operations = {}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            operations[(method.upper(), path)] = {
                "statuses": set(operation.get("responses", {})),
                "limited": (method.upper(), path) in limited,
            }
    return operations


def test_every_route_documents_its_refusals() -> None:
    """Rate-limited routes list 429, routes on a token 404, the staff API 401, a used login link 410, the
    webhook its signature and body refusals, and /readyz its 503 verdict."""
    operations = _operations()
    assert operations, "the schema lists no operation"
    for (method, path), op in operations.items():
        statuses = op["statuses"]
        if op["limited"]:
            assert "429" in statuses, (method, path)
        if "{token}" in path and not path.startswith(("/staff/intakes/", "/staff/login/")):
            assert "404" in statuses, (method, path)
        if path.startswith("/staff/api/"):
            assert "401" in statuses, (method, path)
        if path.startswith("/staff/login/{"):
            assert "410" in statuses, (method, path)
    assert {"400", "401", "409", "413", "422", "429"} <= operations[("POST", "/webhooks/calcom")]["statuses"]
    assert "503" in operations[("GET", "/readyz")]["statuses"]
    assert sum(op["limited"] for op in operations.values()) >= 5  # chat (3), webhook, login
