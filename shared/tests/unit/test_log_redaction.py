"""Tokens never reach the logs: access-log lines, messages, extras and tracebacks are redacted."""

from __future__ import annotations

import json
import logging

from orrery_shared.logging import REDACTED, JsonFormatter, redact

JWT = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLWJ5dGVz"


def line(msg: str, *args: object, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    parsed: dict[str, object] = json.loads(JsonFormatter("gateway").format(record))
    return parsed


def test_an_access_log_line_keeps_the_path_and_loses_the_tokens() -> None:
    entry = line(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5000",
        "GET",
        f"/auth/verify?token=Zm9vYmFy-secret_link&x=1 /ws?access_token={JWT}",
        "1.1",
        200,
    )
    msg = str(entry["msg"])
    assert "Zm9vYmFy-secret_link" not in msg and JWT not in msg
    assert f"/auth/verify?token={REDACTED}&x=1" in msg
    assert f"/ws?access_token={REDACTED}" in msg


def test_bearer_headers_jwts_and_extras_are_redacted_and_plain_text_is_not() -> None:
    entry = line("refused", header=f"Bearer {JWT}", note=f"saw {JWT} once", count=3)
    assert entry["header"] == f"Bearer {REDACTED}"
    assert entry["note"] == f"saw {REDACTED} once"
    assert entry["count"] == 3
    assert redact("a plain sentence = fine") == "a plain sentence = fine"
    assert redact("refresh_token=abc.def&keep=1") == f"refresh_token={REDACTED}&keep=1"
