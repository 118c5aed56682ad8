from orrery_gateway.app import create_app
from orrery_gateway.server import uvicorn_options
from orrery_gateway.settings import load
from orrery_shared.service import run_cli

run_cli("gateway", load, create_app, uvicorn_options=uvicorn_options)
