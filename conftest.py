"""Fixtures shared by every test tier (see tests/support)."""

pytest_plugins = [
    "tests.support.infra",
    "tests.support.llm_stub",
    "tests.support.tokens",
    "tests.support.smtp",
    "tests.support.platform",
    "tests.support.spans",
]
