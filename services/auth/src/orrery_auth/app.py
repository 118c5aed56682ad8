"""Composition root of the auth service: the only module that wires Kafka, Postgres and HTTP together."""

from fastapi import FastAPI

from orrery_auth.settings import AuthSettings, load
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def create_app(settings: AuthSettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("auth", settings)
    return build_app(runtime, "Orrery auth")
