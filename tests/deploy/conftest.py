"""Fixtures of the deployment tests: the tools (built once, cached under .orrery/deploy-tools) and the renders."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import Rendered, Tools, ensure_tools, render


@pytest.fixture(scope="session")
def tools() -> Tools:
    return ensure_tools()


@pytest.fixture(scope="session")
def renders(tools: Tools) -> dict[str, Rendered]:
    return {overlay: render(tools, overlay) for overlay in ("base", "dev", "prod")}
