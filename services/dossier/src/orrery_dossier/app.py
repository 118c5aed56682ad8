"""Composition root of the dossier service: the only module that wires Kafka, Postgres and HTTP together."""

from fastapi import FastAPI

from orrery_dossier.settings import DossierSettings, load
from orrery_shared.runtime import Runtime
from orrery_shared.service import build_app


def create_app(settings: DossierSettings | None = None) -> FastAPI:
    settings = settings or load()
    runtime = Runtime("dossier", settings)
    return build_app(runtime, "Orrery dossier")
