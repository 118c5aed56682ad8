"""A disposable Kafka broker a test may stop and restart without disturbing the shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from tests.support.infra import ROOT, SCRIPTS


@dataclass
class DisposableKafka:
    name: str
    port: int
    controller_port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _script(self, action: str) -> None:
        env = {
            **os.environ,
            "KAFKA_NAME": self.name,
            "ORRERY_KAFKA_PORT": str(self.port),
            "ORRERY_KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }
        subprocess.run(["bash", str(SCRIPTS / "kafka.sh"), action], check=True, env=env)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        self._script("stop")

    def wipe(self) -> None:
        shutil.rmtree(ROOT / ".orrery" / self.name, ignore_errors=True)
