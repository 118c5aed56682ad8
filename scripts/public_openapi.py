"""The gateway's public OpenAPI document: `python -m scripts.public_openapi` (part of `make docs`).

A client sees one API, the gateway's: its own routes (chat over SSE or in one answer, turns, spins, the account's
export, the sign-in page) and the routes it passes on to the services (auth's under `/api/auth` and `/api/me`,
character-gen's under `/api/characters`, chat's under `/api/conversations`, dossier's under `/api/dossiers`).
This builds that document from the routers and models of the code that answers each route, adds what the edge
adds to every route (bearer authentication, the error body and the statuses it is sent with), and writes it
into the gateway's package: the gateway's image holds no other service to generate it from. The gateway serves
it at `/openapi.json` and passes on only the requests it describes (orrery_gateway.public_routes);
tests/deploy fails while it is stale. `--check` writes nothing and exits 1 when it is.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, cast

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi

from scripts.generated import write_or_check

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "services" / "gateway" / "src" / "orrery_gateway" / "public_openapi.json"
REF = "#/components/schemas/"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "stable, machine-readable"},
                "message": {"type": "string", "description": "for people"},
                "fields": {"type": "array", "items": {"type": "object"}, "description": "422: what was wrong where"},
            },
        }
    },
}

# What the edge, or any service behind it, may answer besides a route's own statuses.
EVERY_ROUTE = {
    "400": "the request cannot be passed on (a malformed path)",
    "413": "the body is larger than the limit (`too_large`)",
    "422": "the request is invalid (`invalid`, with `fields`)",
    "429": "rate limited (`rate_limited`); see `Retry-After`",
    "502": "a service behind the gateway failed (`upstream_error`)",
    "503": "a service or dependency is unavailable right now (`unavailable`); retry",
}
SIGNED_IN = {
    "401": "no token, a refused one, or an erased user (`user_not_found`); see `WWW-Authenticate`",
    "404": "no such object for this user (another user's is the same: `not_found`)",
}
WITH_BODY = {"415": "a body of a kind the route does not take (`unsupported_media_type`)"}


def _auth_router() -> APIRouter:
    from orrery_auth.api import auth_router
    from orrery_auth.handlers import AuthHandlers
    from orrery_auth.keys import KeyRing, _private_key, generate_private_key_pem

    class Policy:  # the one attribute the router reads at build time
        magic_link_ttl = timedelta(minutes=15)

    class Handlers:
        policy = Policy()

    keys = KeyRing(_private_key(generate_private_key_pem(), "generated"))
    handlers = cast(AuthHandlers, Handlers())
    return auth_router(handlers, keys, cast(Any, None), [IPv4Network("127.0.0.1/32")])


def _document(title: str, routers: Sequence[APIRouter]) -> dict[str, Any]:
    app = FastAPI(title=title)
    for router in routers:
        app.include_router(router)
    return get_openapi(title=title, version="1", routes=app.routes)


def _service_documents() -> dict[str, tuple[dict[str, Any], Callable[[str], str | None]]]:
    """Each part of the public API: its document, and where each of its paths is public (None: not at all)."""
    from orrery_character_gen.api import router as characters
    from orrery_chat.api import router as chat
    from orrery_dossier.api import router as dossier
    from orrery_gateway.api import router as gateway
    from orrery_gateway.landing import router as landing

    def auth_path(path: str) -> str | None:
        if path.startswith("/auth/") or path == "/me":
            return "/api" + path
        return path if path == "/.well-known/jwks.json" else None

    def under_api(path: str) -> str | None:
        return "/api" + path

    def as_is(path: str) -> str | None:
        return path

    return {
        "gateway": (_document("gateway", [gateway, landing]), as_is),
        "auth": (_document("auth", [_auth_router()]), auth_path),
        "characters": (_document("characters", [characters]), under_api),
        "chat": (_document("chat", [chat]), under_api),
        "dossier": (_document("dossier", [dossier]), under_api),
    }


def _renamed_refs(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            if key == "$ref" and isinstance(inner, str) and inner.startswith(REF):
                out[key] = REF + names.get(inner[len(REF) :], inner[len(REF) :])
            else:
                out[key] = _renamed_refs(inner, names)
        return out
    if isinstance(value, list):
        return [_renamed_refs(item, names) for item in value]
    return value


# What the edge refuses in any string (orrery_shared.text): PostgreSQL cannot store a NUL character.
STORABLE = "^[^\u0000]*$"


def _storable_strings(value: Any) -> None:
    """Say in every free-text string schema that a NUL character is refused."""
    if isinstance(value, dict):
        free_text = value.get("type") == "string" and not {"pattern", "format", "enum", "const"} & value.keys()
        if free_text and "contentMediaType" not in value:
            value["pattern"] = STORABLE
        if value.get("type") == "object" and value.get("additionalProperties") is not False:
            value["propertyNames"] = {"pattern": STORABLE}  # names of extra members are text too
        for inner in value.values():
            _storable_strings(inner)
    elif isinstance(value, list):
        for item in value:
            _storable_strings(item)


def _not_null(parameter: dict[str, Any]) -> None:
    """An optional header or query parameter is absent when unset; it is never sent as `null`."""
    schema = parameter.get("schema", {})
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1 and len(branches) < len(schema["anyOf"]):
        rest = {k: v for k, v in schema.items() if k != "anyOf"}
        parameter["schema"] = {**branches[0], **rest}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": REF + "Error"}}}}


def _with_edge_responses(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    added = dict(EVERY_ROUTE)
    if path.startswith("/api/") and not path.startswith("/api/auth/"):
        added |= SIGNED_IN
        operation["security"] = [{"bearer": []}]
    elif path.startswith("/api/auth/"):
        added["401"] = "refused (a stable `error.code`)"
    if "requestBody" in operation:
        added |= WITH_BODY
    for status, description in added.items():
        existing = responses.get(status)
        if existing is None or status == "422":  # FastAPI's own 422 schema is not what the platform sends
            responses[status] = _error_response(
                existing["description"] if existing and status != "422" else description
            )
    for status, response in responses.items():
        if status.startswith(("4", "5")) and "content" not in response:
            response["content"] = _error_response(response["description"])["content"]


def build() -> dict[str, Any]:
    """The whole public document."""
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    owners: dict[str, str] = {}
    for part, (document, public) in _service_documents().items():
        own = document.get("components", {}).get("schemas", {})
        names = {}
        for name, schema in own.items():
            if name in ("HTTPValidationError", "ValidationError"):
                continue  # the platform answers 422 with its own error body
            taken = schemas.get(name)
            names[name] = name if taken is None or taken == schema else f"{part}_{name}"
        for name, schema in own.items():
            if name in names:
                schemas[names[name]] = _renamed_refs(schema, names)
                owners.setdefault(names[name], part)
        for path, item in document.get("paths", {}).items():
            where = public(path)
            if where is None:
                continue
            if where in paths:
                raise SystemExit(f"{where} is public twice ({owners.get(where)} and {part})")
            paths[where] = _renamed_refs(copy.deepcopy(item), names)
            owners[where] = part
    for path, item in paths.items():
        for method in METHODS:
            if method in item:
                _with_edge_responses(path, item[method])
                for parameter in item[method].get("parameters", []):
                    _not_null(parameter)
                    _storable_strings(parameter.get("schema"))
                _storable_strings(item[method].get("requestBody"))
    for name, schema in schemas.items():
        if name != "Error":
            _storable_strings(schema)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Orrery",
            "version": "1",
            "description": (
                "The public API of Orrery, as the gateway serves it: REST under `/api`, server-sent events at "
                "`/api/chat/stream` and `/api/turns/{turn_id}/stream`, and the WebSocket protocol at `/ws` "
                "(docs/protocol.md). Every route under `/api` but sign-in needs `Authorization: Bearer <access "
                'token>`; errors are `{"error": {"code", "message"}}`.'
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def render() -> str:
    return json.dumps(build(), indent=1, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return write_or_check({OUT: render()}, __doc__ or "", "python -m scripts.public_openapi", argv)


if __name__ == "__main__":
    sys.exit(main())
