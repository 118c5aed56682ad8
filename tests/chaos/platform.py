"""The platform replicated as for a scaled deployment, on a broker and a Redis of the run's own, with a hand on
every process: 2 gateways, 2 chat, 2 character-gen, 2 dossier and 2 auth, beside the local PostgreSQL.

Each gateway talks to "its" replica of every service (as a Kubernetes Service would spread them), every
consumer uses static group membership (`ORRERY_KAFKA_GROUP_INSTANCE_ID`, its replica's name), and any process,
the broker, Redis or PostgreSQL can be killed and started again while clients use the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

from orrery_shared.kafka import ensure_topics
from orrery_shared.settings import KafkaSettings
from tests.support.infra import ROOT, SCRIPTS
from tests.support.kafka_control import DisposableKafka
from tests.support.processes import free_port, start_module

KAFKA_PORT, KAFKA_CONTROLLER_PORT = 49092, 49093
SERVICES = {  # name: (module, replicas, environment prefix)
    "auth": ("orrery_auth", 2, "ORRERY_AUTH"),
    "character-gen": ("orrery_character_gen", 2, "ORRERY_CHARACTER_GEN"),
    "chat": ("orrery_chat", 2, "ORRERY_CHAT"),
    "dossier": ("orrery_dossier", 2, "ORRERY_DOSSIER"),
    "gateway": ("orrery_gateway", 2, "ORRERY_GATEWAY"),
}
MIGRATED = ("orrery_auth", "orrery_character_gen", "orrery_chat", "orrery_dossier")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Replica:
    service: str
    index: int
    module: str
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_module(self.module, self.env, f"{self.url}/readyz", f"chaos-{self.name}.log", timeout=180)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def pause(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class ChaosPlatform:
    """Everything the run starts, and the faults it can inject."""

    stub_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    replicas: dict[str, list[Replica]] = field(default_factory=dict)
    kafka: DisposableKafka = field(
        default_factory=lambda: DisposableKafka("kafka-chaos", KAFKA_PORT, KAFKA_CONTROLLER_PORT)
    )
    redis: subprocess.Popen[bytes] | None = None
    stub: subprocess.Popen[bytes] | None = None

    @property
    def gateways(self) -> list[str]:
        return [r.url for r in self.replicas["gateway"]]

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def _env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ORRERY_") or k.startswith("ORRERY_DB")}
        return {
            **base,
            "PYTHONUNBUFFERED": "1",
            "ORRERY_EXTERNAL_KAFKA": "1",
            "ORRERY_KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "ORRERY_REDIS_URL": self.redis_url,
            "ORRERY_LLM_PROVIDERS__STUB__BASE_URL": f"http://127.0.0.1:{self.stub_port}/v1",
            "ORRERY_LLM_DEFAULT_PROVIDER": "stub",
            "ORRERY_AUTH_GUESTS_PER_IP": "1000000",
            "ORRERY_GATEWAY_MESSAGES_PER_MINUTE": "100000",
            "ORRERY_GATEWAY_SPINS_PER_HOUR": "100000",
            "ORRERY_GATEWAY_MAX_SOCKETS_PER_USER": "1000",
        }

    # --- start and stop -------------------------------------------------------------------------------------

    def start(self) -> None:
        for port in [*(self._planned_ports()), KAFKA_PORT]:
            assert not _port_open(port), f"port {port} is in use"
        self.kafka.stop()
        self.kafka.wipe()
        self.kafka.start()
        asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=self.kafka.bootstrap)))
        self.start_redis()
        env = self._env()
        for module in MIGRATED:
            done = subprocess.run([sys.executable, "-m", module, "migrate"], cwd=ROOT, env=env, capture_output=True)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
        stub_env = {**env, "ORRERY_STUB_PORT": str(self.stub_port), "ORRERY_STUB_TTFT_MS": "50"}
        stub_env["ORRERY_STUB_TOKENS_PER_SECOND"] = "60"  # replies of a second or two: faults land mid-reply
        url = f"http://127.0.0.1:{self.stub_port}/v1/models"
        self.stub = start_module("orrery_llm_stub", stub_env, url, "chaos-llm-stub.log")
        ports = iter(self._planned_ports())
        for service, (module, count, _) in SERVICES.items():
            self.replicas[service] = [Replica(service, i, module, next(ports), {}) for i in range(count)]
        jwks = {"ORRERY_JWT_JWKS_URL": f"{self.replicas['auth'][0].url}/.well-known/jwks.json"}
        for service, (_, _, prefix) in SERVICES.items():
            for replica in self.replicas[service]:
                replica.env = {
                    **env,
                    **jwks,
                    f"{prefix}_PORT": str(replica.port),
                    "ORRERY_KAFKA_GROUP_INSTANCE_ID": replica.name,
                }
                if service == "gateway":
                    replica.env |= self._upstreams_of(replica.index)
                replica.start()

    def _upstreams_of(self, index: int) -> dict[str, str]:
        """Gateway `index` talks to replica `index` of each service (modulo their number)."""

        def url(service: str) -> str:
            replicas = self.replicas[service]
            return replicas[index % len(replicas)].url

        return {
            "ORRERY_GATEWAY_AUTH_URL": url("auth"),
            "ORRERY_GATEWAY_CHARACTERS_URL": url("character-gen"),
            "ORRERY_GATEWAY_CHAT_URL": url("chat"),
            "ORRERY_GATEWAY_DOSSIER_URL": url("dossier"),
        }

    _ports: list[int] = field(default_factory=list)

    def _planned_ports(self) -> list[int]:
        if not self._ports:
            self._ports = [free_port() for _ in range(sum(count for _, count, _ in SERVICES.values()))]
        return self._ports

    def stop(self) -> None:
        for replicas in reversed(list(self.replicas.values())):
            for replica in replicas:
                replica.stop()
        for proc in (self.stub, self.redis):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.kafka.stop()
        self.kafka.wipe()

    # --- faults ---------------------------------------------------------------------------------------------

    def start_redis(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is installed by the infrastructure scripts"
        args = [server, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no"]
        self.redis = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _port_open(self.redis_port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def restart_redis(self, down_s: float) -> None:
        """SIGKILL Redis (its data is lost: it keeps none) and start it again."""
        assert self.redis is not None
        self.redis.kill()
        self.redis.wait(10)
        time.sleep(down_s)
        self.start_redis()

    def restart_kafka(self, down_s: float) -> None:
        """SIGKILL the broker and start it again on the same data."""
        pid_file = ROOT / ".orrery" / self.kafka.name / "kafka.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
        time.sleep(down_s)
        self.kafka.stop()  # forgets the dead process
        self.kafka.start()

    @staticmethod
    def restart_postgres(down_s: float) -> None:
        """Stop the local PostgreSQL (fast shutdown: sessions are cut) and start it again."""
        subprocess.run(["bash", str(SCRIPTS / "postgres.sh"), "stop"], check=True, capture_output=True)
        time.sleep(down_s)
        subprocess.run(["bash", str(SCRIPTS / "postgres.sh"), "start"], check=True, capture_output=True)
