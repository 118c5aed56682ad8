"""Run the stub: python -m orrery_llm_stub (host and port from ORRERY_STUB_HOST / ORRERY_STUB_PORT)."""

from __future__ import annotations

import gc

import uvicorn

from orrery_llm_stub.app import create_server_app
from orrery_llm_stub.settings import StubSettings


def main() -> None:
    """Serve the stub until interrupted."""
    settings = StubSettings()
    app = create_server_app(settings)
    # Everything imported so far lives for the whole process; freezing it keeps full collections
    # from walking it, which otherwise shows up as periodic stalls across thousands of open streams.
    gc.freeze()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        loop="uvloop",
        http="httptools",
        backlog=settings.backlog,
        lifespan="off",
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
