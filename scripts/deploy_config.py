"""The deployment configuration derived from code: every setting each service reads, and the Kafka topics.

`python -m scripts.deploy_config` (part of `make docs`) writes

- `deploy/k8s/base/config/<group>.env`: the ConfigMaps of the Kubernetes base. Every setting a service reads is
  listed with its default (or a container-specific value), so operators see every knob in one place; settings
  whose default is "unset" appear commented out. Secrets (database URLs, the Redis URL, keys, passwords) are
  never written here: they live in Secrets (see docs/deploy.md).
- `deploy/k8s/overlays/dev/llm-stub/config.env`: the same for the development LLM stub.
- `deploy/k8s/base/kafka/topics.txt`: every topic with its partition count, for the topic-creation Job.

`--check` writes nothing and exits 1 when a file is stale. The catalog below (which settings classes each
service loads, and which of their fields are secret) is what tests/deploy checks the manifests against.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import Path, PurePath
from typing import Any, get_args

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode

from orrery_shared.auth.verifier import JwtSettings
from orrery_shared.events import all_topics
from orrery_shared.llm.settings import LLMSettings
from orrery_shared.settings import DatabaseServiceSettings, KafkaSettings, RedisSettings, ServiceSettings
from scripts.generated import write_or_check

ROOT = Path(__file__).resolve().parents[1]
BASE_CONFIG = ROOT / "deploy" / "k8s" / "base" / "config"
STUB_CONFIG = ROOT / "deploy" / "k8s" / "overlays" / "dev" / "llm-stub" / "config.env"
TOPICS_FILE = ROOT / "deploy" / "k8s" / "base" / "kafka" / "topics.txt"

ENV_VARIABLE = "ORRERY_ENV"


@dataclass(frozen=True)
class Service:
    """One deployable service: its folder under services/, its package and its settings class."""

    name: str
    package: str
    settings_class: str
    # The LLM stub stands in for a provider in development only; production talks to a real one.
    dev_only: bool = False

    @property
    def image(self) -> str:
        return f"orrery/{self.name}"

    @property
    def source(self) -> Path:
        return ROOT / "services" / self.name / "src" / self.package

    @cached_property
    def settings(self) -> type[BaseSettings]:
        module = importlib.import_module(f"{self.package}.settings")
        cls = getattr(module, self.settings_class)
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        return cls

    @property
    def prefix(self) -> str:
        return str(self.settings.model_config.get("env_prefix", ""))

    @property
    def port(self) -> int:
        port = self.settings.model_fields["port"].default
        assert isinstance(port, int)
        return port

    @property
    def liveness_path(self) -> str:
        return "/healthz" if self.runs_on_runtime else "/v1/models"

    @property
    def readiness_path(self) -> str:
        return "/readyz" if self.runs_on_runtime else "/v1/models"

    @property
    def runs_on_runtime(self) -> bool:
        """Built on orrery_shared's Runtime: Kafka, health endpoints and the `migrate` command."""
        return issubclass(self.settings, ServiceSettings)

    @property
    def database(self) -> bool:
        return issubclass(self.settings, DatabaseServiceSettings)

    @cached_property
    def _app_source(self) -> str:
        app = self.source / "app.py"
        return app.read_text() if app.exists() else ""

    @property
    def redis(self) -> bool:
        return "use_redis=True" in self._app_source

    @property
    def jwt(self) -> bool:
        """Verifies access tokens against the auth service's JWKS (ORRERY_JWT_*)."""
        return "JwtVerifier.from_settings" in self._app_source

    @property
    def llm(self) -> bool:
        return any(name in self._app_source for name in ("LLMClient", "load_llm_settings"))

    def config_groups(self) -> list[str]:
        """The ConfigMaps (base/config/<group>.env) this service takes its environment from."""
        if not self.runs_on_runtime:
            return [self.name]
        groups = ["common"]
        if self.jwt:
            groups.append("jwt")
        if self.llm:
            groups.append("llm")
        return [*groups, self.name]

    def secret_groups(self) -> list[str]:
        """The Secrets (<group>-secrets) this service takes its environment from."""
        groups = []
        if self.redis:
            groups.append("redis")
        if self.llm:
            groups.append("llm")
        if self.database or any(s.secret for s in settings_of(self.settings)):
            groups.append(self.name)
        return groups

    def settings_classes(self) -> list[type[BaseSettings]]:
        """Every settings class the service loads from the environment."""
        if not self.runs_on_runtime:
            return [self.settings]
        classes: list[type[BaseSettings]] = [self.settings, KafkaSettings]
        if self.redis:
            classes.append(RedisSettings)
        if self.jwt:
            classes.append(JwtSettings)
        if self.llm:
            classes.append(LLMSettings)
        return classes

    def settings_env(self) -> list[Setting]:
        """Every environment variable the service reads (nested provider profiles aside)."""
        seen: dict[str, Setting] = {}
        for cls in self.settings_classes():
            for setting in settings_of(cls):
                seen.setdefault(setting.env, setting)
        return list(seen.values())


SERVICES: tuple[Service, ...] = (
    Service("gateway", "orrery_gateway", "GatewaySettings"),
    Service("auth", "orrery_auth", "AuthSettings"),
    Service("character-gen", "orrery_character_gen", "CharacterGenSettings"),
    Service("chat", "orrery_chat", "ChatSettings"),
    Service("dossier", "orrery_dossier", "DossierSettings"),
    Service("llm-stub", "orrery_llm_stub", "StubSettings", dev_only=True),
)


def service(name: str) -> Service:
    return next(s for s in SERVICES if s.name == name)


@dataclass(frozen=True)
class Setting:
    """One environment variable of a settings class."""

    env: str
    field: str
    info: FieldInfo
    owner: type[BaseSettings]

    @property
    def secret(self) -> bool:
        """Credentials, and URLs that may carry them, belong in Secrets."""
        return _is_secret(self.info.annotation) or self.field in {"database_url"} or self.owner is RedisSettings

    @property
    def default(self) -> Any:
        return self.info.get_default(call_default_factory=True)

    @property
    def description(self) -> str:
        return self.info.description or ""


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_is_secret(arg) for arg in get_args(annotation))


def settings_of(cls: type[BaseSettings]) -> list[Setting]:
    """The environment variables of `cls`; nested settings (kafka, redis) have their own prefixes."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    found = []
    for name, info in cls.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            continue
        alias = info.validation_alias
        env = alias if isinstance(alias, str) else f"{prefix}{name}".upper()
        found.append(Setting(env, name, info, cls))
    return found


def group_of(setting: Setting, owner: Service) -> str:
    """Which ConfigMap or Secret a setting lives in."""
    if setting.env == ENV_VARIABLE or setting.owner is KafkaSettings:
        return "common"
    if setting.owner is RedisSettings:
        return "redis"
    if setting.owner is JwtSettings:
        return "jwt"
    if setting.owner is LLMSettings:
        return "llm"
    return owner.name


# Values for containers where the code's default suits a process on a developer's machine. Hostnames are the
# Kubernetes Services (and Compose services) of the same names; overlays change what differs per environment.
CONTAINER_VALUES: dict[str, str] = {
    ENV_VARIABLE: "prod",  # refuses development credentials unless an overlay says otherwise
    "ORRERY_KAFKA_BOOTSTRAP_SERVERS": "kafka:9092",
    # Topics are created once by the kafka-topics Job, with the cluster's replication factor.
    "ORRERY_KAFKA_CREATE_TOPICS": "false",
    "ORRERY_JWT_JWKS_URL": "http://auth:8001/.well-known/jwks.json",
    "ORRERY_GATEWAY_AUTH_URL": "http://auth:8001",
    "ORRERY_GATEWAY_CHARACTERS_URL": "http://character-gen:8002",
    "ORRERY_GATEWAY_CHAT_URL": "http://chat:8003",
    "ORRERY_GATEWAY_DOSSIER_URL": "http://dossier:8004",
    "ORRERY_AUTH_PUBLIC_BASE_URL": "http://orrery.localhost",
    # Only used without a configured signing key (development); /tmp is the pod's writable emptyDir.
    "ORRERY_AUTH_DEV_KEY_DIR": "/tmp/auth-keys",
    # The gateway (and the ingress controller before it) append to X-Forwarded-For from pod addresses; only they
    # can reach auth (see the NetworkPolicies). Narrow this to the cluster's pod CIDR where it is known.
    "ORRERY_AUTH_TRUSTED_PROXIES": "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
}


def _host_env(svc: Service) -> str:
    return f"{svc.prefix}HOST"


def container_value(setting: Setting, svc: Service) -> str | None:
    """The value written to the ConfigMap, or None when the setting stays unset (or keeps a package path)."""
    if setting.env == _host_env(svc):
        return "0.0.0.0"  # listen on the pod's address, not loopback
    if setting.env in CONTAINER_VALUES:
        return CONTAINER_VALUES[setting.env]
    return render_value(setting)


def render_value(setting: Setting) -> str | None:
    """The default of a setting as the environment spells it, or None for "unset" and package-relative paths."""
    value = setting.default
    if value is None:
        return None
    if isinstance(value, PurePath):
        # An absolute default points inside the installed package (presets, web files): keep the code's.
        return None if value.is_absolute() else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        if NoDecode in setting.info.metadata:
            return ",".join(str(item) for item in value)
        return json.dumps([item if isinstance(item, str | int | float) else str(item) for item in value])
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


HEADER = """# Generated by scripts/deploy_config.py from {source};
# a test fails when this file is stale. Lists every variable read by {what}; commented-out ones keep the
# code's default (unset, or a path inside the package). Secrets are not here (see docs/deploy.md); overlays
# change values with configMapGenerator behavior: merge.
"""


def _render_env(settings: list[Setting], svc_for_values: dict[str, Service], source: str, what: str) -> str:
    lines = [HEADER.format(source=source, what=what)]
    for setting in sorted(settings, key=lambda s: s.env):
        value = container_value(setting, svc_for_values[setting.env])
        note = setting.description
        if value is None:
            lines.append(f"# {setting.env}=" + (f"  ({note})" if note else ""))
            continue
        if note:
            lines.append(f"# {note}")
        lines.append(f"{setting.env}={value}")
    return "\n".join(lines) + "\n"


def config_groups() -> dict[str, list[tuple[Setting, Service]]]:
    """The non-secret settings of every runtime service, by ConfigMap."""
    groups: dict[str, dict[str, tuple[Setting, Service]]] = {}
    for svc in SERVICES:
        if not svc.runs_on_runtime:
            continue
        for setting in svc.settings_env():
            if setting.secret:
                continue
            groups.setdefault(group_of(setting, svc), {}).setdefault(setting.env, (setting, svc))
    return {name: list(found.values()) for name, found in groups.items()}


def secret_keys() -> dict[str, list[str]]:
    """The keys each Secret (<group>-secrets) may hold, by group."""
    groups: dict[str, set[str]] = {}
    for svc in SERVICES:
        if not svc.runs_on_runtime:
            continue
        for setting in svc.settings_env():
            if setting.secret:
                groups.setdefault(group_of(setting, svc), set()).add(setting.env)
    return {name: sorted(keys) for name, keys in groups.items()}


_GROUP_SOURCES = {
    "common": ("orrery_shared.settings (ORRERY_ENV, KafkaSettings)", "every service"),
    "jwt": ("orrery_shared.auth.verifier.JwtSettings", "services verifying access tokens"),
    "llm": ("orrery_shared.llm.settings.LLMSettings", "services calling a model"),
}


def render_topics() -> str:
    lines = [
        "# Generated by scripts/deploy_config.py from orrery_shared.events; a test fails when this file is stale.",
        "# topic partitions",
    ]
    lines += [f"{spec.name} {spec.partitions}" for spec in all_topics()]
    return "\n".join(lines) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {}
    for group, entries in sorted(config_groups().items()):
        owners = {setting.env: svc for setting, svc in entries}
        if group in _GROUP_SOURCES:
            source, what = _GROUP_SOURCES[group]
        else:
            svc = service(group)
            source, what = f"{svc.package}.settings.{svc.settings_class}", f"the {group} service"
        files[BASE_CONFIG / f"{group}.env"] = _render_env([s for s, _ in entries], owners, source, what)
    stub = service("llm-stub")
    files[STUB_CONFIG] = _render_env(
        settings_of(stub.settings),
        {s.env: stub for s in settings_of(stub.settings)},
        f"{stub.package}.settings.{stub.settings_class}",
        "the LLM stub",
    )
    files[TOPICS_FILE] = render_topics()
    return files


def main(argv: list[str] | None = None) -> int:
    return write_or_check(
        expected_files(), __doc__.splitlines()[0] if __doc__ else "", "python -m scripts.deploy_config", argv
    )


if __name__ == "__main__":
    raise SystemExit(main())
