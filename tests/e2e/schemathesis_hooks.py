"""Schemathesis hooks of tests/e2e/test_gateway_schema.py: chat files (`application/jsonl`) are sent as text."""

import schemathesis

schemathesis.serializer.alias("application/jsonl", "text/plain")
