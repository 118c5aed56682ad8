"""Composition root of the gateway: the public edge, holding no database, only Kafka and Redis."""

from fastapi import FastAPI

from orrery_gateway.settings import GatewaySettings, load
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("gateway", settings, use_redis=True)
    return build_app(runtime, "Orrery gateway")
