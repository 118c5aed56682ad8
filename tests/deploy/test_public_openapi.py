"""The gateway's public OpenAPI document: current, and the very routes the gateway and the services serve."""

from __future__ import annotations

from fastapi.routing import APIRoute

from orrery_gateway import api, landing
from orrery_gateway.public_routes import PublicRoutes, document
from scripts import generated, public_openapi

PASSED_ON = ("/api/characters", "/api/conversations", "/api/dossiers", "/api/auth/", "/api/me", "/.well-known/")


def test_the_committed_document_is_up_to_date() -> None:
    assert generated.stale({public_openapi.OUT: public_openapi.render()}) == [], "run `make docs`"


def test_every_route_the_gateway_serves_is_in_the_document_with_its_methods() -> None:
    paths = document()["paths"]
    for route in [*api.router.routes, *landing.router.routes]:
        assert isinstance(route, APIRoute)
        if not route.include_in_schema:
            continue  # the pass-through routes, documented by the services they pass to
        assert route.path in paths, route.path
        assert {m.lower() for m in route.methods} <= set(paths[route.path]), route.path


def test_every_path_of_the_document_is_served_by_the_gateway_or_a_service_it_passes_to() -> None:
    own = {route.path for route in [*api.router.routes, *landing.router.routes] if isinstance(route, APIRoute)}
    for path in document()["paths"]:
        assert path in own or path.startswith(PASSED_ON), path


def test_every_authenticated_operation_says_so_and_documents_its_errors() -> None:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            signed_in = path.startswith("/api/") and not path.startswith("/api/auth/")
            assert ("security" in operation) == signed_in, f"{method} {path}"
            responses = operation["responses"]
            assert {"422", "429", "502", "503"} <= responses.keys(), f"{method} {path}"
            if signed_in:
                assert {"401", "404"} <= responses.keys(), f"{method} {path}"
            error = responses["422"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}


def test_a_path_is_matched_to_its_most_literal_template_and_unknown_paths_to_nothing() -> None:
    routes = PublicRoutes(document())
    assert routes.methods("/api/conversations/import") == {"POST"}
    assert routes.methods("/api/conversations/6f7c0c7e-0000-4000-8000-000000000000") == {"GET", "DELETE"}
    assert routes.methods("/api/characters/spin") == {"POST"}
    assert routes.methods("/api/characters/some-id/card.png") == {"GET"}
    assert routes.methods("/api/dossiers/p/versions/3/") == {"GET"}
    assert routes.methods("/api/characters/some-id/metrics") == frozenset()
    assert routes.methods("/api/conversations/a/b/c") == frozenset()
