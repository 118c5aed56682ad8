from orrery_auth.app import create_app
from orrery_auth.migrations import VERSIONS
from orrery_auth.settings import load
from orrery_shared.service import run_cli

run_cli("auth", load, create_app, VERSIONS)
