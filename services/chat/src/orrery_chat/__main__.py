from orrery_chat.app import create_app
from orrery_chat.migrations import VERSIONS
from orrery_chat.settings import load
from orrery_shared.service import run_cli

run_cli("chat", load, create_app, VERSIONS)
