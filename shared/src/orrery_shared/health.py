"""`/healthz` (the process is alive), `/readyz` (its real dependencies answer) and `/metrics` for FastAPI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], Awaitable[object]]


def health_router(checks: Mapping[str, Check], limit: float = 2.0) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(_run(check, limit) for check in checks.values()))
        status = dict(zip(checks, results, strict=True))
        ok = all(v == "ok" for v in status.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": status}, 200 if ok else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


async def _run(check: Check, limit: float) -> str:
    try:
        async with asyncio.timeout(limit):
            await check()
    except Exception as error:
        return f"error: {type(error).__name__}"
    return "ok"
