"""The magic link's landing page: only its own script and style may run, and nobody may frame it."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.testclient import TestClient

from orrery_gateway.landing import router


def sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_the_landing_page_allows_exactly_its_own_inline_script_and_style_and_no_framing() -> None:
    app = FastAPI()
    app.include_router(router)
    response = TestClient(app).get("/auth/verify", params={"token": "x"})
    assert response.status_code == 200
    directives = dict(d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    (script,) = re.findall(r"<script>(.*?)</script>", response.text, flags=re.S)
    (style,) = re.findall(r"<style>(.*?)</style>", response.text, flags=re.S)
    assert directives["script-src"] == sha256(script)
    assert directives["style-src"] == sha256(style)
    assert directives["default-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_the_landing_page_sends_a_guest_token_only_when_this_browser_asked_for_the_link() -> None:
    app = FastAPI()
    app.include_router(router)
    page = TestClient(app).get("/auth/verify").text
    # The only line that adds the bearer is guarded by the "asked here" check (the browser flow is tested in
    # tests/browser/test_sign_in.py).
    (adds_bearer,) = [line for line in page.splitlines() if 'headers["Authorization"] = ' in line]
    assert adds_bearer.strip().startswith("if (askedHere")
