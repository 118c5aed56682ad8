"""Fixtures shared by every test tier (see tests/support)."""

pytest_plugins = ["tests.support.infra"]
