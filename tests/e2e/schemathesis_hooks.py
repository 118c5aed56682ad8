"""Schemathesis hooks of tests/e2e/test_gateway_schema.py: chat files (`application/jsonl`) are sent as text, and
bodies whose strings hold surrogate code points are not generated.

A lone surrogate is no Unicode character: serialised to JSON, two of them side by side become the escape of one
character (`"\\ud83d\\ude00"` is one emoji to every JSON parser), so a string the generator counted as over a
`maxLength` arrives within it, and the check that such a request is refused reports a false alarm.
"""

from typing import Any

import schemathesis

schemathesis.serializer.alias("application/jsonl", "text/plain")


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_surrogates(item) for item in value)
    return False


@schemathesis.hook
def filter_body(context: Any, body: Any) -> bool:
    return not _has_surrogates(body)
