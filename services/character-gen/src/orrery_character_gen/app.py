"""Composition root of the character-gen service: the only module that wires Kafka, Postgres and HTTP together."""

from fastapi import FastAPI

from orrery_character_gen.settings import CharacterGenSettings, load
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def create_app(settings: CharacterGenSettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("character-gen", settings)
    return build_app(runtime, "Orrery character-gen")
