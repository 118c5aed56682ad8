"""Building a service's FastAPI app and its command line (`serve`, `migrate`) from its runtime."""

from __future__ import annotations

import argparse
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI

from orrery_shared.db import migrations
from orrery_shared.health import health_router
from orrery_shared.http import install_error_handlers
from orrery_shared.logging import configure_logging
from orrery_shared.runtime import Runtime
from orrery_shared.settings import DatabaseServiceSettings, ServiceSettings

S = TypeVar("S", bound=ServiceSettings)


def build_app(runtime: Runtime, title: str, routers: Sequence[APIRouter] = ()) -> FastAPI:
    """A FastAPI app with health endpoints, JSON errors, and the runtime started in its lifespan."""
    app = FastAPI(title=title, lifespan=runtime.lifespan)
    install_error_handlers(app)
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


def run_cli(
    service: str,
    load: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    versions_dir: Path | None = None,
    argv: Sequence[str] | None = None,
    uvicorn_options: dict[str, Any] | None = None,
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
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=os.environ.get("ORRERY_ACCESS_LOG") == "1",
        timeout_graceful_shutdown=10,
        # Client addresses come from the socket; trusting X-Forwarded-For is each service's explicit choice.
        proxy_headers=False,
        **(uvicorn_options or {}),
    )
    drain = getattr(app.state, "drain", None)
    server = _DrainingServer(config, drain) if drain else uvicorn.Server(config)
    server.run()
