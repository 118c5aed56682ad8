import os

from orrery_auth.app import create_app
from orrery_auth.migrations import VERSIONS
from orrery_auth.settings import load
from orrery_shared.service import run_cli

# Rate limits key on the client address, which only ORRERY_AUTH_TRUSTED_PROXIES may vouch for: uvicorn's own
# X-Forwarded-For rewriting (which trusts loopback peers by default) would let any local caller pick its address.
os.environ["FORWARDED_ALLOW_IPS"] = ""

run_cli("auth", load, create_app, VERSIONS)
