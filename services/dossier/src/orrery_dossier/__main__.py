from orrery_dossier.app import create_app
from orrery_dossier.migrations import VERSIONS
from orrery_dossier.settings import load
from orrery_shared.service import run_cli

run_cli("dossier", load, create_app, VERSIONS)
