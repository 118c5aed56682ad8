"""Rendering and reading the deployment manifests for the tests: kustomize, the strict decoder, CRD schemas."""

from __future__ import annotations

import base64
import copy
import importlib
import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import patch
from urllib.parse import urlsplit

import yaml
from jsonschema import Draft7Validator
from pydantic import BaseModel
from pydantic_settings import BaseSettings

from orrery_shared.events import Event
from orrery_shared.llm.settings import LLMSettings, load_llm_settings, provider_env

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
PROD_SECRETS = K8S / "overlays" / "prod" / "secrets.example"
ENSURE = ROOT / "deploy" / "tools" / "ensure.sh"

if TYPE_CHECKING:
    from scripts.deploy_config import Service

Doc = dict[str, Any]


@dataclass(frozen=True)
class Tools:
    root: Path

    @property
    def kustomize(self) -> Path:
        return self.root / "bin" / "kustomize"

    @property
    def kubevalidate(self) -> Path:
        return self.root / "bin" / "kubevalidate"

    @property
    def scaledobject_crd(self) -> Path:
        return self.root / "crds" / "keda.sh_scaledobjects.yaml"

    @property
    def compose_schema(self) -> Path:
        return self.root / "schemas" / "compose-spec.json"

    @property
    def asyncapi_schema(self) -> Path:
        return self.root / "schemas" / "asyncapi-3.0.0.json"


def ensure_tools() -> Tools:
    """Build (once, then cached under .orrery/deploy-tools) kustomize, kubevalidate and the schemas."""
    root = Path(os.environ.get("ORRERY_DEPLOY_TOOLS", ROOT / ".orrery" / "deploy-tools"))
    subprocess.run(["bash", str(ENSURE)], check=True, timeout=1800)
    return Tools(root)


@dataclass(frozen=True)
class Rendered:
    name: str
    text: str
    docs: list[Doc]

    def of_kind(self, kind: str) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        found = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.name}: expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)

    def workloads(self) -> list[Doc]:
        return [d for d in self.docs if d["kind"] in {"Deployment", "StatefulSet", "Job"}]


def render(tools: Tools, overlay: str) -> Rendered:
    text = subprocess.run(
        [str(tools.kustomize), "build", str(OVERLAYS[overlay])], check=True, capture_output=True, text=True
    ).stdout
    return Rendered(overlay, text, [d for d in yaml.safe_load_all(text) if d])


def kubevalidate(tools: Tools, text: str) -> list[Doc]:
    """One result per document: status ok, invalid (with the decoder's error) or unregistered."""
    done = subprocess.run([str(tools.kubevalidate)], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# --- CRD schemas ------------------------------------------------------------------------------------------


def _strict(schema: Any) -> Any:
    """A CRD's structural schema as JSON Schema that refuses what the API server would prune or reject."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


@cache
def crd_validator(crd_path: Path, version: str) -> Draft7Validator:
    crd = yaml.safe_load(crd_path.read_text())
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    schema = _strict(served[version]["schema"]["openAPIV3Schema"])
    return Draft7Validator(schema)


def crd_errors(validator: Draft7Validator, doc: Doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


# --- pods, containers, environments -----------------------------------------------------------------------


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def image_name(image: str) -> tuple[str, str]:
    """(repository without registry host, tag) of an image reference."""
    name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    parts = name.split("/")
    if len(parts) > 2 or (len(parts) == 2 and ("." in parts[0] or ":" in parts[0])):
        parts = parts[1:]
    return "/".join(parts), tag


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as kustomize reads them (value taken literally after the first '=')."""
    env = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        env[key.strip()] = value
    return env


def prod_secrets() -> dict[str, dict[str, str]]:
    """The Secrets the prod overlay expects, with the placeholder values of secrets.example/."""
    return {f"{path.stem}-secrets": read_env_file(path) for path in sorted(PROD_SECRETS.glob("*.env"))}


def _secret_data(secret: Doc) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def env_sources(rendered: Rendered, container: Doc) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(kind, name, data) of every ConfigMap and Secret a container's envFrom names."""
    external = prod_secrets() if rendered.name == "prod" else {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            yield "ConfigMap", name, dict(rendered.get("ConfigMap", name).get("data") or {})
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            secret = rendered.find("Secret", name)
            if secret is not None:
                yield "Secret", name, _secret_data(secret)
            else:
                assert name in external, f"{rendered.name}: Secret {name} is neither rendered nor documented"
                yield "Secret", name, external[name]


def container_env(rendered: Rendered, container: Doc) -> dict[str, str]:
    """The environment a container starts with (envFrom, then env), as Kubernetes resolves it."""
    env: dict[str, str] = {}
    for _, _, data in env_sources(rendered, container):
        env.update(data)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            source = rendered.get("ConfigMap", ref["configMapKeyRef"]["name"])["data"]
            env[item["name"]] = source[ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            secret = rendered.find("Secret", ref["secretKeyRef"]["name"])
            assert secret is not None
            env[item["name"]] = _secret_data(secret)[ref["secretKeyRef"]["key"]]
    return env


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions) selects these labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def mutated(doc: Doc, path: list[str | int], value: Any) -> Doc:
    """A deep copy of `doc` with `value` set at `path`."""
    out = copy.deepcopy(doc)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


@contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """Run with exactly these ORRERY_* variables (the rest of the environment untouched)."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("ORRERY_")]:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_settings(service: Service, env: Mapping[str, str]) -> list[object]:
    """Every settings object the service builds at start, from this environment (raising what it would)."""
    with environment(env):
        loaded: list[object] = [cls() for cls in service.settings_classes() if cls is not LLMSettings]
        if service.llm:
            loaded.append(load_llm_settings())
    return loaded


def recorded_subscriptions(service: Service, env: Mapping[str, str]) -> set[tuple[str, str]]:
    """(topic, consumer group) of every subscribe() the service's create_app makes in this environment."""
    module = importlib.import_module(f"{service.package}.app")
    calls: set[tuple[str, str]] = set()

    def record(_broker: object, event_type: type[Event], group: str, *_args: object, **_kwargs: object) -> None:
        calls.add((event_type.TOPIC, group))

    import orrery_shared.kafka
    import orrery_shared.kafka.consumer

    # Wherever the app takes subscribe() from, the call is recorded instead of reaching a broker.
    targets = [orrery_shared.kafka, orrery_shared.kafka.consumer]
    targets += [module] if hasattr(module, "subscribe") else []
    with environment(env), ExitStack() as stack:
        for target in targets:
            stack.enter_context(patch.object(target, "subscribe", record))
        module.create_app()
    return calls


def service_container(rendered: Rendered, service: Service) -> Doc:
    deployment = rendered.get("Deployment", service.name)
    return next(c for c in pod_spec(deployment)["containers"] if c["name"] == service.name)


# --- Dockerfiles ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped, as the Dockerfile parser reads them."""
    found: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    return found


def dockerfile(svc: Service) -> list[Instruction]:
    return instructions(ROOT / "services" / svc.name / "Dockerfile")


def env_of(steps: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for step in steps:
        if step.keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(step.args)))
    return env


# --- settings that point at the container itself ------------------------------------------------------------

LLM_NESTED = re.compile(r"^ORRERY_LLM_(PROVIDERS|ROUTES)__[A-Z0-9_]+$")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
BROWSER_FACING = {"ORRERY_AUTH_PUBLIC_BASE_URL", "ORRERY_GATEWAY_DEV_MAILBOX_URL"}


def _hosts(value: Any) -> set[str]:
    """Hostnames a setting's value names (URLs, host:port lists, bare hosts)."""
    found = set()
    for part in str(value).split(","):
        part = part.strip()
        host = urlsplit(part).hostname if "://" in part else part.rsplit(":", 1)[0] if ":" in part else part
        if host:
            found.add(host)
    return found


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _strings(v)]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return [value] if isinstance(value, str) else []


def _setting_strings(settings: BaseModel) -> list[tuple[str, str]]:
    """(variable, text) of every string a loaded settings object holds; LLM profiles only where used."""
    if isinstance(settings, LLMSettings):
        used = {entry.provider for entries in settings.routes.values() for entry in entries}
        used |= {settings.image_profile} if settings.image_provider == "openai" and settings.image_profile else set()
        found = [(provider_env(p, "base_url"), settings.providers[p].base_url or "") for p in sorted(used)]
        if settings.image_provider == "leonardo":
            found.append(("ORRERY_LLM_LEONARDO_BASE_URL", settings.leonardo_base_url))
        return found
    prefix = str(settings.model_config.get("env_prefix", ""))
    return [
        (f"{prefix}{name}".upper(), text)
        for name, value in settings.model_dump(mode="json").items()
        # The listen address is checked on its own, nested settings (kafka, redis) through their own classes.
        if name != "host" and not isinstance(getattr(settings, name), BaseSettings)
        for text in _strings(value)
    ]


def loopback_settings(loaded: list[object]) -> list[str]:
    """Settings (as loaded, validators applied) that point at the container's own loopback."""
    found = []
    for settings in loaded:
        assert isinstance(settings, BaseModel)
        for env, text in _setting_strings(settings):
            if env not in BROWSER_FACING and _hosts(text) & LOOPBACK:
                found.append(env)
    return found
