"""Building a service's FastAPI app and its command line (`serve`, `migrate`) from its runtime."""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI

from orrery_shared.db import migrations
from orrery_shared.health import health_router
from orrery_shared.http import BodyLimit, StorableText, install_error_handlers
from orrery_shared.http_protocol import GuardedHttpProtocol
from orrery_shared.logging import configure_logging
from orrery_shared.runtime import Runtime
from orrery_shared.settings import DatabaseServiceSettings, ServiceSettings
from orrery_shared.telemetry import TelemetryConfigError, configure_tracing, shutdown_tracing

S = TypeVar("S", bound=ServiceSettings)


UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _untraced(scope: MutableMapping[str, object]) -> bool:
    # Probes and scrapes would drown the traces that matter. A WebSocket lives as long as the client stays, so a
    # span per connection would hold every turn it carries in one endless trace: each turn starts its own.
    return scope["type"] == "websocket" or scope.get("path") in UNTRACED_PATHS


def build_app(
    runtime: Runtime, title: str, routers: Sequence[APIRouter] = (), app_class: type[FastAPI] = FastAPI
) -> FastAPI:
    """A FastAPI app with health endpoints, JSON errors, and the runtime started in its lifespan.

    FastAPI's own OpenTelemetry support adds an HTTP server span per request once tracing is configured
    (`orrery_shared.telemetry`), and stays idle otherwise; its finer per-dependency spans are left off.
    """
    app = app_class(
        title=title,
        lifespan=runtime.lifespan,
        telemetry={"operation_spans": False, "exclude": _untraced},
    )
    install_error_handlers(app)
    app.add_middleware(StorableText)
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)  # outside: StorableText reads capped
    app.include_router(health_router(runtime.checks()))
    for router in routers:
        app.include_router(router)
    app.state.runtime = runtime
    return app


class _DrainingServer(uvicorn.Server):
    """Stops accepting, then lets the app drain (`app.state.drain`) before uvicorn drops what is left."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await self._drain()
        await super().shutdown(sockets)


# Objects allocated (less those freed) between two collections of the youngest generation. Python's default
# of 700 meant a collection every few hundred microseconds of a busy chat process (a turn allocates thousands of
# short-lived objects, nearly all freed by reference counting): ~7% of its CPU. At 10,000 collections are rare
# and each is no longer than before (bench/chat_turns.py).
YOUNG_GENERATION_THRESHOLD = 10_000


def freeze_startup_heap() -> None:
    """Exempt what exists now (modules, the app, its clients) from garbage collection for good, and collect the
    young generation less often.

    The startup heap lives as long as the process, yet every full collection walked all of it: a pause of ~0.3 s
    in a chat process, waited out by whatever request was in flight. Frozen, collections only walk what came
    after.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)


def run_cli(
    service: str,
    load: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    versions_dir: Path | None = None,
    argv: Sequence[str] | None = None,
    uvicorn_options: dict[str, Any] | Callable[[S], dict[str, Any]] | None = None,
) -> None:
    """`python -m orrery_<service> [serve|migrate]`."""
    parser = argparse.ArgumentParser(prog=f"orrery-{service}")
    parser.add_argument("command", choices=["serve", "migrate"], nargs="?", default="serve")
    args = parser.parse_args(argv)
    settings = load()
    if args.command == "migrate":
        configure_logging(service, "WARNING")
        if not isinstance(settings, DatabaseServiceSettings) or versions_dir is None:
            print(f"{service} has no database to migrate")
            return
        migrations.upgrade(settings.database_url, settings.db_schema, versions_dir)
        print(f"{service}: schema {settings.db_schema} is at head")
        return
    configure_logging(service, settings.log_level)
    try:
        configure_tracing(service)
    except TelemetryConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    app = create_app(settings)
    freeze_startup_heap()
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=os.environ.get("ORRERY_ACCESS_LOG") == "1",
        http=GuardedHttpProtocol,  # a request's head is timed and its size bounded
        timeout_graceful_shutdown=10,
        # Client addresses come from the socket; trusting X-Forwarded-For is each service's explicit choice.
        proxy_headers=False,
        **((uvicorn_options(settings) if callable(uvicorn_options) else uvicorn_options) or {}),
    )
    drain = getattr(app.state, "drain", None)
    server = _DrainingServer(config, drain) if drain else uvicorn.Server(config)
    try:
        server.run()
    finally:
        shutdown_tracing()  # exports the spans still buffered
