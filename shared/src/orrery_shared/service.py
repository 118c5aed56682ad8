"""Building a service's FastAPI app and its command line (`serve`, `migrate`) from its runtime."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

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


def run_cli(
    service: str,
    load: Callable[[], S],
    create_app: Callable[[S], FastAPI],
    versions_dir: Path | None = None,
    argv: Sequence[str] | None = None,
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
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=os.environ.get("ORRERY_ACCESS_LOG") == "1",
        timeout_graceful_shutdown=10,
        # Client addresses come from the socket; trusting X-Forwarded-For is each service's explicit choice.
        proxy_headers=False,
    )
