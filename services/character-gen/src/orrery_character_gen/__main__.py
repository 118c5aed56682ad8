from orrery_character_gen.app import create_app
from orrery_character_gen.migrations import VERSIONS
from orrery_character_gen.settings import load
from orrery_shared.service import run_cli

run_cli("character-gen", load, create_app, VERSIONS)
