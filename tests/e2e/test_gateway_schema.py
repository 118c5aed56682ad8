"""Property-based requests generated from the gateway's own OpenAPI document: no input makes it fail (5xx)."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.support.platform import GATEWAY

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def access_token(platform: str) -> str:
    response = httpx.post(f"{GATEWAY}/api/auth/guest", json={}, timeout=10)
    assert response.status_code == 201, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def gateway_schema(platform: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{GATEWAY}/openapi.json")


schema = schemathesis.pytest.from_fixture("gateway_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_gateway_fail(case: schemathesis.Case, access_token: str) -> None:
    # Half the cases are signed in, so validation behind authentication is exercised too.
    headers = {"Authorization": f"Bearer {access_token}"} if hash(repr(case.body)) % 2 == 0 else {}
    response = case.call(headers=headers, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:300]}"
    )
