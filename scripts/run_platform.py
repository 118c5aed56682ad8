"""Runs the whole platform in the foreground: every service as its own process, output prefixed by name.

Waits until each service answers /readyz, prints the URLs, and on Ctrl-C or SIGTERM stops them all (SIGTERM,
then SIGKILL after a grace period). If one service dies, the others are stopped too and the exit code says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import sys
import time
from dataclasses import dataclass

import httpx

GRACE_SECONDS = 15
READY_TIMEOUT = 90


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    port: int
    ready_path: str = "/readyz"


def llm_stub_needed() -> bool:
    """The stub stands in for a provider unless one is configured."""
    return (
        not os.environ.get("ORRERY_LLM_PROVIDERS") and importlib.util.find_spec("orrery_llm_stub.__main__") is not None
    )


def services() -> list[Service]:
    found = [
        Service("auth", "orrery_auth", 8001),
        Service("character-gen", "orrery_character_gen", 8002),
        Service("chat", "orrery_chat", 8003),
        Service("dossier", "orrery_dossier", 8004),
        Service("gateway", "orrery_gateway", 8000),
    ]
    if llm_stub_needed():
        found.insert(0, Service("llm-stub", "orrery_llm_stub", 18080, "/v1/models"))
    if os.environ.get("ORRERY_ENV", "dev") != "prod":
        # Catches sign-in mails and prints their links (page: http://127.0.0.1:8025/).
        found.insert(0, Service("mailbox", "orrery_auth.dev_mailbox", 8025, "/api/messages"))
    return found


async def pump(name: str, stream: asyncio.StreamReader) -> None:
    width = 14
    while line := await stream.readline():
        sys.stdout.write(f"{name:<{width}}| {line.decode(errors='replace')}")
        sys.stdout.flush()


async def wait_ready(service: Service, proc: asyncio.subprocess.Process) -> None:
    url = f"http://127.0.0.1:{service.port}{service.ready_path}"
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"{service.name} exited with code {proc.returncode} while starting")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{service.name} was not ready at {url} within {READY_TIMEOUT}s")


async def stop_all(procs: dict[str, asyncio.subprocess.Process]) -> None:
    for proc in procs.values():
        if proc.returncode is None:
            proc.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for name, proc in procs.items():
        try:
            await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            print(f"{name} did not stop within {GRACE_SECONDS}s; killing it", flush=True)
            proc.kill()
            await proc.wait()


async def main() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    procs: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if os.environ.get("ORRERY_ENV", "dev") != "prod":
        env.setdefault("ORRERY_AUTH_SMTP_HOST", "127.0.0.1")
        env.setdefault("ORRERY_AUTH_SMTP_PORT", "2525")
    exit_code = 0
    try:
        for service in services():
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                service.module,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
            )
            procs[service.name] = proc
            assert proc.stdout is not None
            pumps.append(asyncio.create_task(pump(service.name, proc.stdout)))
        ready = asyncio.gather(*(wait_ready(s, procs[s.name]) for s in services()))
        stopped = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if ready in done:
            ready.result()
            print("\nOrrery is up:", flush=True)
            print("  web app        http://127.0.0.1:8000/", flush=True)
            print("  API docs       http://127.0.0.1:8000/docs", flush=True)
            for s in services():
                print(f"  {s.name:<14} http://127.0.0.1:{s.port}", flush=True)
            print("Press Ctrl-C to stop.\n", flush=True)
            exited = [asyncio.create_task(p.wait()) for p in procs.values()]
            done, _ = await asyncio.wait({stopped, *exited}, return_when=asyncio.FIRST_COMPLETED)
            if stopped not in done:
                dead = [n for n, p in procs.items() if p.returncode is not None]
                print(f"service(s) exited unexpectedly: {', '.join(dead)}; stopping the rest", flush=True)
                exit_code = 1
        else:
            ready.cancel()
    except RuntimeError as error:
        print(f"error: {error}; stopping", flush=True)
        exit_code = 1
    finally:
        print("stopping Orrery...", flush=True)
        await stop_all(procs)
        await asyncio.gather(*pumps, return_exceptions=True)
    print("stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
