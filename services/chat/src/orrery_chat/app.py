"""Composition root of the chat service: the only module that wires Kafka, Postgres and HTTP together."""

from fastapi import FastAPI

from orrery_chat.settings import ChatSettings, load
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def create_app(settings: ChatSettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("chat", settings)
    return build_app(runtime, "Orrery chat")
