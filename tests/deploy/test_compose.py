"""docker-compose.yml against the Compose specification's schema and the services' code (no Docker engine)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml
from jsonschema import validators

from orrery_auth.dev_mailbox import MailboxSettings
from orrery_shared.settings import KafkaSettings
from scripts.deploy_config import SERVICES, Service, settings_of
from tests.deploy.manifests import (
    LLM_NESTED,
    ROOT,
    Tools,
    dockerfile,
    env_of,
    load_settings,
    loopback_settings,
    mutated,
)

pytestmark = pytest.mark.timeout(1800)

COMPOSE = ROOT / "docker-compose.yml"
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose's ${VAR:-default} with nothing set in the environment: the defaults."""
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda m: m.group(2) or "", value)
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    return value


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(raw)
    return resolved


def orrery_image(service: dict[str, Any]) -> str | None:
    image = str(service.get("image", ""))
    return image.split(":")[0].removeprefix("orrery/") if image.startswith("orrery/") else None


def one_shot(service: dict[str, Any]) -> bool:
    return service.get("restart") == "no"


def catalog(name: str) -> Service:
    return next(s for s in SERVICES if s.name == name)


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """What the container starts with: the image's ENV, then the Compose environment."""
    image = orrery_image(service)
    env = env_of(dockerfile(catalog(image))) if image else {}
    env = {k: v for k, v in env.items() if k.startswith("ORRERY_")}
    return {**env, **{k: str(v) for k, v in (service.get("environment") or {}).items()}}


def test_the_file_matches_the_compose_specification(tools: Tools, raw: dict[str, Any]) -> None:
    schema = json.loads(tools.compose_schema.read_text())
    validator = validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(raw)] == []
    typo = mutated(raw, ["services", "chat", "healthcheck", "intervall"], "5s")
    assert list(validator.iter_errors(typo))


def test_infrastructure_is_kafka_3_9_1_in_kraft_mode_postgres_15_and_redis_7(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"] == "apache/kafka:3.9.1"
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"] and "KAFKA_ZOOKEEPER_CONNECT" not in kafka_env
    assert kafka_env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert re.fullmatch(r"postgres:15\.\d+(-\w+)?", services["postgres"]["image"])
    assert services["postgres"]["environment"]["POSTGRES_DB"] == "orrery"
    assert "./deploy/postgres/init.sql:/docker-entrypoint-initdb.d/10-orrery.sql:ro" in services["postgres"]["volumes"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-\w+)?", services["redis"]["image"])


def test_every_long_running_container_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if not one_shot(service):
            assert service.get("healthcheck", {}).get("test"), name


def test_containers_start_once_their_dependencies_are_healthy_or_done(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if one_shot(services[dependency]) else "service_healthy"
            assert rule.get("condition") == wanted, f"{name} -> {dependency}"
            assert not services[dependency].get("profiles"), f"{name} needs {dependency} outside its profile"


def test_each_database_service_migrates_in_a_one_shot_before_it_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for svc in SERVICES:
        if not svc.database:
            continue
        migrate = services[f"{svc.name}-migrate"]
        assert one_shot(migrate) and orrery_image(migrate) == svc.name
        assert migrate["command"] == ["python", "-m", svc.package, "migrate"]
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
        condition = services[svc.name]["depends_on"][f"{svc.name}-migrate"]["condition"]
        assert condition == "service_completed_successfully"


def test_topics_exist_before_any_service_starts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    topics = services["kafka-topics"]
    assert one_shot(topics) and topics["command"] == ["python", "-m", "orrery_shared.kafka.topics"]
    for svc in SERVICES:
        if not svc.runs_on_runtime:
            continue
        env = environment_of(services[svc.name])
        creates = env.get("ORRERY_KAFKA_CREATE_TOPICS", "true") == "true"
        assert creates or "kafka-topics" in services[svc.name]["depends_on"], svc.name


def test_images_are_built_from_the_services_dockerfiles(compose: dict[str, Any]) -> None:
    built = set()
    for name, service in compose["services"].items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), name
        service_image = orrery_image(service)
        if service_image is None:
            assert "build" not in service, name
            continue
        assert service["build"] == {"context": ".", "dockerfile": f"services/{service_image}/Dockerfile"}, name
        built.add(service_image)
    assert built == {s.name for s in SERVICES}


def test_every_service_runs_hardened(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if orrery_image(service) is None:
            continue
        assert service.get("read_only") is True, name
        assert service.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in service.get("security_opt", []), name


def test_the_stub_and_the_mail_sink_run_only_in_the_dev_profile(compose: dict[str, Any]) -> None:
    profiled = {name: s["profiles"] for name, s in compose["services"].items() if s.get("profiles")}
    assert profiled == {"llm-stub": ["dev"], "mailbox": ["dev"]}
    assert compose["services"]["mailbox"]["command"] == ["python", "-m", "orrery_auth.dev_mailbox"]


def container_settings(name: str, service: dict[str, Any]) -> tuple[list[type[Any]], Service | None]:
    """The settings classes a container reads, and the catalog service it runs (None for helpers)."""
    command = service.get("command") or []
    if command[2:3] == ["orrery_auth.dev_mailbox"]:
        return [MailboxSettings], None
    if command[2:3] == ["orrery_shared.kafka.topics"]:
        return [KafkaSettings], None
    image = orrery_image(service)
    assert image, name
    svc = catalog(image)
    if command[-1:] == ["migrate"]:
        return [svc.settings], svc
    return svc.settings_classes(), svc


def test_every_variable_is_a_setting_the_container_reads(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if orrery_image(service) is None:
            continue
        classes, svc = container_settings(name, service)
        known = {s.env for cls in classes for s in settings_of(cls)}
        nested_llm = svc is not None and svc.llm and not service.get("command")
        # The image's own ENV is checked with its Dockerfile; helpers reuse images of other commands.
        for key in service.get("environment") or {}:
            assert key in known or (nested_llm and LLM_NESTED.match(key)), f"{name}: {key}"


@pytest.mark.parametrize("svc", [s for s in SERVICES if s.runs_on_runtime or s.dev_only], ids=lambda s: s.name)
def test_each_service_accepts_its_environment_and_reaches_no_loopback_address(
    compose: dict[str, Any], svc: Service
) -> None:
    env = environment_of(compose["services"][svc.name])
    loaded = load_settings(svc, env)
    assert loopback_settings(loaded) == []
    assert getattr(loaded[0], "host", None) == "0.0.0.0"
    if svc.database:
        migrate_env = environment_of(compose["services"][f"{svc.name}-migrate"])
        migrate = load_settings(svc, migrate_env)[0]
        assert getattr(migrate, "database_url", None) == getattr(loaded[0], "database_url", None)
