from orrery_gateway.app import create_app
from orrery_gateway.settings import load
from orrery_shared.service import run_cli

run_cli(
    "gateway",
    load,
    create_app,
    # Frames beyond our own limit get an error frame; far larger ones are refused by the server itself.
    # Deltas are a few bytes: per-message compression would cost more memory per socket than it saves.
    # The sans-I/O WebSocket protocol keeps a socket to one protocol object and timers (no keepalive task per
    # socket): ~15% less memory per idle socket than uvicorn's default implementation, measured by bench/.
    # The server pings every socket each interval; one that does not answer within another interval is dropped
    # (a vanished peer), while ORRERY_GATEWAY_IDLE_TIMEOUT_SECONDS closes live sockets that send nothing.
    uvicorn_options=lambda settings: {
        "ws": "websockets-sansio",
        "ws_max_size": 1024 * 1024,
        "ws_ping_interval": settings.ping_interval_seconds,
        "ws_ping_timeout": settings.ping_interval_seconds,
        "ws_per_message_deflate": False,
    },
)
