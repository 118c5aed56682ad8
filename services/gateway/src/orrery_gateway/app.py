"""Composition root of the gateway: the public edge, holding no database — Kafka, Redis and HTTP only."""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from orrery_gateway import api, landing, public_routes, ws
from orrery_gateway.context import Gateway
from orrery_gateway.edge import AuthenticateFirst
from orrery_gateway.fanin import TurnStreams
from orrery_gateway.hub import Hub
from orrery_gateway.limits import RateLimiter
from orrery_gateway.notifications import NotificationListener
from orrery_gateway.protocol import WS_PROTOCOL_DOC
from orrery_gateway.settings import GatewaySettings, load
from orrery_gateway.socket_leases import SocketLeases
from orrery_gateway.upstream import Upstreams
from orrery_shared.auth import JwtVerifier, install_verifier
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app

WEB_CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; style-src 'self'; frame-ancestors 'none'"

# Paths with headers of their own (the sign-in landing page carries its inline script) or no page at all.
NOT_THE_WEB_CLIENT = (
    "/api/",
    "/auth/",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/.well-known/",
    "/healthz",
    "/readyz",
    "/metrics",
)

DESCRIPTION = (
    "The public edge of Orrery: REST under `/api`, server-sent events at `/api/chat/stream`, and the "
    "WebSocket protocol below. Every route but sign-in needs `Authorization: Bearer <access token>`; errors are "
    '`{"error": {"code", "message"}}`.\n' + WS_PROTOCOL_DOC
)


class GatewayApp(FastAPI):
    """The gateway's app: a handshake on a socket path goes straight to the socket endpoint.

    An idle socket then keeps nothing of the HTTP middleware stack alive (error pages, telemetry, body limits,
    page headers, exception handlers, the router and their coroutine frames), none of which serves a socket:
    WebSockets are excluded from telemetry, and the endpoint handles its own errors (`ws.serve`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and ws.route_path(scope) in ws.PATHS:
            scope["app"] = self
            await ws.serve(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("gateway", settings, use_redis=True)
    assert runtime.redis is not None
    verifier = JwtVerifier.from_settings()
    upstreams = Upstreams(
        settings.auth_url,
        settings.characters_url,
        settings.chat_url,
        settings.dossier_url,
        settings.upstream_timeout_seconds,
    )
    hub = Hub()
    streams = TurnStreams(runtime.redis)
    sockets = SocketLeases(runtime.redis, hub, settings.max_sockets_per_user)
    limiter = RateLimiter(runtime.redis)
    gateway = Gateway(settings, runtime.broker, runtime.redis, verifier, upstreams, hub, limiter, streams, sockets)

    async def start_readers() -> None:
        streams.start()
        sockets.start()

    runtime.on_start(start_readers)
    runtime.on_stop(streams.stop)
    runtime.on_stop(sockets.stop)
    listener = NotificationListener(settings.kafka.bootstrap_servers, hub)
    runtime.on_start(listener.start)
    runtime.on_stop(listener.stop)
    runtime.on_stop(upstreams.aclose)
    runtime.on_stop(verifier.aclose)

    app = build_app(runtime, "Orrery", [api.router, landing.router], app_class=GatewayApp)
    app.description = DESCRIPTION
    # The whole public API, the services' routes included, as scripts/public_openapi.py generates it.
    app.openapi = public_routes.document  # type: ignore[method-assign]
    app.add_middleware(
        AuthenticateFirst, verifier=verifier, revoked=gateway.revoked
    )  # outermost: before the body limit reads anything
    app.state.gateway = gateway
    install_verifier(app, verifier)

    async def drain() -> None:
        await hub.shutdown(settings.shutdown_grace_seconds)

    app.state.drain = drain
    app.mount("/", StaticFiles(directory=settings.web_dir, html=True), name="web")

    @app.middleware("http")
    async def page_security(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        if not request.url.path.startswith(NOT_THE_WEB_CLIENT):
            # The web client loads nothing from elsewhere and has no inline script.
            response.headers.setdefault("Content-Security-Policy", WEB_CSP)
            response.headers.setdefault("X-Content-Type-Options", "nosniff")
            response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    return app
