"""The Kubernetes manifests, as kustomize renders the base and both overlays, against the API types and the code."""

from __future__ import annotations

import importlib
import re
from urllib.parse import urlsplit

import pytest
import yaml

from orrery_shared.events import all_topics, model_for
from orrery_shared.settings import RedisSettings
from scripts.deploy_config import SERVICES, Service, render_value, secret_keys
from tests.deploy.manifests import (
    LLM_NESTED,
    ROOT,
    Doc,
    Rendered,
    Tools,
    container_env,
    containers,
    crd_errors,
    crd_validator,
    env_sources,
    image_name,
    kubevalidate,
    load_settings,
    loopback_settings,
    mutated,
    pod_labels,
    pod_spec,
    recorded_subscriptions,
    selects,
    service_container,
)

# The first build of the tools may take minutes; later runs reuse them.
pytestmark = pytest.mark.timeout(1800)

OVERLAYS = ["base", "dev", "prod"]
DEPLOYED = ["dev", "prod"]  # complete environments: base alone lacks its Secrets


def services_in(overlay: str) -> list[Service]:
    return [s for s in SERVICES if overlay == "dev" or not s.dev_only]


def scaled_objects(rendered: Rendered) -> list[Doc]:
    return rendered.of_kind("ScaledObject")


# --- the manifests are what the API server accepts ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_decodes_strictly_into_the_kubernetes_api_types(
    tools: Tools, renders: dict[str, Rendered], overlay: str
) -> None:
    results = kubevalidate(tools, renders[overlay].text)
    assert len(results) == len(renders[overlay].docs)
    invalid = [f"{r['kind']}/{r['name']}: {r['error']}" for r in results if r["status"] == "invalid"]
    assert not invalid
    # Kinds the built-in types do not know must be checked against their CRD below, never skipped.
    assert {r["kind"] for r in results if r["status"] == "unregistered"} <= {"ScaledObject"}


def test_the_strict_decoder_refuses_unknown_fields_and_wrong_types(tools: Tools, renders: dict[str, Rendered]) -> None:
    deployment = renders["dev"].get("Deployment", "chat")
    typo = mutated(deployment, ["spec", "template", "spec", "containers", 0, "readinessProbe", "httpget"], {})
    wrong_type = mutated(deployment, ["spec", "replicas"], "two")
    results = kubevalidate(tools, yaml.safe_dump_all([deployment, typo, wrong_type]))
    assert [r["status"] for r in results] == ["ok", "invalid", "invalid"]
    assert "httpget" in results[1]["error"]


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_every_scaled_object_matches_the_keda_crd_schema(
    tools: Tools, renders: dict[str, Rendered], overlay: str
) -> None:
    validator = crd_validator(tools.scaledobject_crd, "v1alpha1")
    found = scaled_objects(renders[overlay])
    assert {d["metadata"]["name"] for d in found} == {"character-gen", "chat", "dossier"}
    for doc in found:
        assert doc["apiVersion"] == "keda.sh/v1alpha1"
        assert crd_errors(validator, doc) == [], doc["metadata"]["name"]


def test_the_crd_schema_refuses_unknown_fields_and_wrong_types(tools: Tools, renders: dict[str, Rendered]) -> None:
    validator = crd_validator(tools.scaledobject_crd, "v1alpha1")
    doc = renders["prod"].get("ScaledObject", "chat")
    assert crd_errors(validator, mutated(doc, ["spec", "maxReplicas"], 12))
    assert crd_errors(validator, mutated(doc, ["spec", "triggers", 0, "metadata", "lagThreshold"], 50))
    assert crd_errors(validator, mutated(doc, ["spec", "maxReplicaCount"], "12"))


# --- every service is deployed, probed and hardened -----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_has_a_deployment_service_disruption_budget_and_network_policy(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        labels = pod_labels(rendered.get("Deployment", svc.name))
        assert selects(rendered.get("Deployment", svc.name)["spec"]["selector"], labels)
        assert selects({"matchLabels": rendered.get("Service", svc.name)["spec"]["selector"]}, labels)
        assert selects(rendered.get("PodDisruptionBudget", svc.name)["spec"]["selector"], labels)
        own = [
            p
            for p in rendered.of_kind("NetworkPolicy")
            if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == svc.name
        ]
        assert own, f"{overlay}: no NetworkPolicy of {svc.name}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_readyz_and_healthz_on_the_port_the_service_listens_on(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        container = service_container(rendered, svc)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == svc.port
        if overlay in DEPLOYED:
            assert container_env(rendered, container).get(f"{svc.prefix}PORT", str(svc.port)) == str(svc.port)
        for probe, path in (("readinessProbe", svc.readiness_path), ("livenessProbe", svc.liveness_path)):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{svc.name} {probe}"
            assert ports.get(get["port"], get["port"]) == svc.port, f"{svc.name} {probe}"
        port = rendered.get("Service", svc.name)["spec"]["ports"][0]
        assert ports.get(port["targetPort"], port["targetPort"]) == svc.port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_requests_and_limits_cpu_and_memory(renders: dict[str, Rendered], overlay: str) -> None:
    for workload in renders[overlay].workloads():
        for container in containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert set(resources.get(kind, {})) >= {"cpu", "memory"}, f"{workload['metadata']['name']} {kind}"


# The Kafka image writes its configuration under /opt/kafka/config when it starts.
WRITABLE_ROOT = {("StatefulSet", "kafka")}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_runs_as_non_root_without_privileges_on_a_read_only_root(
    renders: dict[str, Rendered], overlay: str
) -> None:
    for workload in renders[overlay].workloads():
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod_security = spec.get("securityContext", {})
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for container in containers(workload):
            security = {**pod_security, **container.get("securityContext", {})}
            assert security.get("runAsNonRoot") is True, name
            assert security.get("runAsUser", 0) != 0, name
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("privileged", False) is False, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not security.get("capabilities", {}).get("add"), name
            if (workload["kind"], workload["metadata"]["name"]) in WRITABLE_ROOT:
                continue
            assert security.get("readOnlyRootFilesystem") is True, name
            if image_name(container["image"])[0].startswith("orrery/"):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                volumes = {v["name"]: v for v in spec.get("volumes", [])}
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp is not a writable emptyDir"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_pods_spread_over_zones_and_nodes(renders: dict[str, Rendered], overlay: str) -> None:
    for svc in services_in(overlay):
        if svc.dev_only:
            continue
        deployment = renders[overlay].get("Deployment", svc.name)
        constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in constraints}
        assert keys >= {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}, svc.name
        assert all(selects(c["labelSelector"], pod_labels(deployment)) for c in constraints), svc.name


# --- scaling -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["base", "prod"])
def test_keda_never_scales_a_consumer_past_the_partitions_of_its_topic(
    renders: dict[str, Rendered], overlay: str
) -> None:
    for doc in scaled_objects(renders[overlay]):
        spec = doc["spec"]
        kafka = [t for t in spec["triggers"] if t["type"] == "kafka"]
        assert kafka, doc["metadata"]["name"]
        for trigger in kafka:
            partitions = model_for(trigger["metadata"]["topic"]).PARTITIONS
            assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions, doc["metadata"]["name"]
            assert trigger["metadata"].get("allowIdleConsumers", "false") == "false"


@pytest.mark.parametrize("overlay", ["prod"])
def test_keda_watches_the_consumer_group_the_service_subscribes_with(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in scaled_objects(rendered)}
    for svc in services_in(overlay):
        if not hasattr(importlib.import_module(f"{svc.package}.app"), "subscribe"):
            assert svc.name not in scaled
            continue
        env = container_env(rendered, service_container(rendered, svc))
        subscriptions = recorded_subscriptions(svc, env)
        assert svc.name in scaled, f"{svc.name} consumes {sorted(subscriptions)} but nothing scales it"
        for trigger in scaled[svc.name]["spec"]["triggers"]:
            if trigger["type"] == "kafka":
                watched = (trigger["metadata"]["topic"], trigger["metadata"]["consumerGroup"])
                assert watched in subscriptions, f"{svc.name} watches {watched}, subscribes {sorted(subscriptions)}"
                assert trigger["metadata"]["bootstrapServersFromEnv"] in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_scales_on_cpu_and_no_replica_count_fights_an_autoscaler(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    hpa = rendered.get("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway"}
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in hpa["spec"]["metrics"])
    autoscaled = {h["spec"]["scaleTargetRef"]["name"] for h in rendered.of_kind("HorizontalPodAutoscaler")}
    keda = {d["spec"]["scaleTargetRef"]["name"] for d in scaled_objects(rendered)}
    assert not autoscaled & keda, "KEDA makes its own HorizontalPodAutoscaler"
    for name in autoscaled | keda:
        assert "replicas" not in rendered.get("Deployment", name)["spec"], name


# --- configuration --------------------------------------------------------------------------------------------

CREDENTIAL = re.compile(r"(DATABASE_URL|REDIS_URL|API_KEY|PASSWORD|SECRET|TOKEN|SIGNING_KEY|PREVIOUS_KEY)$")


def known_variables(svc: Service) -> set[str]:
    return {s.env for s in svc.settings_env()}


@pytest.mark.parametrize("overlay", DEPLOYED)
def test_every_setting_a_service_reads_is_in_its_config_maps_or_secrets(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        env = container_env(rendered, service_container(rendered, svc))
        required = {s.env for s in svc.settings_env() if render_value(s) is not None and not s.secret}
        # Credentials the code would otherwise take from a development default.
        required |= {s.env for s in svc.settings_env() if s.field == "database_url" or s.owner is RedisSettings}
        assert sorted(required - set(env)) == [], svc.name
        unknown = {k for k in env if k not in known_variables(svc) and not (svc.llm and LLM_NESTED.match(k))}
        assert sorted(unknown) == [], f"{svc.name} is given variables it does not read"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_credentials_are_only_in_secrets(renders: dict[str, Rendered], overlay: str) -> None:
    secret_settings = {key for keys in secret_keys().values() for key in keys}
    for config in renders[overlay].of_kind("ConfigMap"):
        for key in config.get("data") or {}:
            assert key not in secret_settings and not CREDENTIAL.search(key), f"{config['metadata']['name']}: {key}"


@pytest.mark.parametrize("overlay", DEPLOYED)
def test_secrets_hold_only_the_credentials_of_their_services(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    allowed = secret_keys()
    for svc in services_in(overlay):
        for kind, name, data in env_sources(rendered, service_container(rendered, svc)):
            if kind != "Secret":
                continue
            group = re.sub(r"-secrets(-[a-z0-9]+)?$", "", name)
            extra = {k for k in data if k not in allowed.get(group, []) and not LLM_NESTED.match(k)}
            assert sorted(extra) == [], f"{name} holds {sorted(extra)}"
            assert all(CREDENTIAL.search(k) or k.endswith("__API_KEY") for k in data), name


@pytest.mark.parametrize("overlay", DEPLOYED)
def test_every_service_accepts_its_deployed_environment(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        loaded = load_settings(svc, container_env(rendered, service_container(rendered, svc)))
        environment = getattr(loaded[0], "environment", None)
        if svc.runs_on_runtime:
            assert environment is not None and environment.value == overlay, svc.name


@pytest.mark.parametrize("overlay", DEPLOYED)
def test_no_service_points_at_its_own_loopback(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        env = container_env(rendered, service_container(rendered, svc))
        loaded = load_settings(svc, env)
        assert loopback_settings(loaded) == [], svc.name
        host = getattr(loaded[0], "host", None)
        assert host == "0.0.0.0", f"{svc.name} listens on {host}"


def test_the_loopback_check_sees_code_defaults() -> None:
    chat = next(s for s in SERVICES if s.name == "chat")
    assert "ORRERY_KAFKA_BOOTSTRAP_SERVERS" in loopback_settings(load_settings(chat, {}))
    assert any(k.startswith("ORRERY_LLM_PROVIDERS__STUB") for k in loopback_settings(load_settings(chat, {})))


# --- images and one-shot jobs ---------------------------------------------------------------------------------


def dockerfile_module(service: str) -> str:
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    match = re.search(r'^CMD \["python", "-m", "([a-z_]+)"\]', text, re.M)
    assert match, service
    return match.group(1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_the_services_dockerfiles_or_pinned_infrastructure(
    renders: dict[str, Rendered], overlay: str
) -> None:
    rendered = renders[overlay]
    deployed_images = set()
    for workload in rendered.workloads():
        for container in containers(workload):
            name, tag = image_name(container["image"])
            assert tag and tag != "latest" and re.search(r"\d", tag), container["image"]
            if not name.startswith("orrery/"):
                assert name in {"apache/kafka", "postgres", "redis"}, container["image"]
                continue
            service = name.removeprefix("orrery/")
            assert (ROOT / "services" / service / "Dockerfile").exists(), container["image"]
            deployed_images.add(service)
            command = container.get("command")
            if command:
                module = command[2]
                assert command[:2] == ["python", "-m"], command
                assert module.split(".")[0] == dockerfile_module(service), f"{command} in image {name}"
    assert deployed_images >= {s.name for s in services_in(overlay)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_database_service_has_a_migration_job(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    jobs = {j["metadata"]["name"]: j for j in rendered.of_kind("Job") if j["metadata"]["name"].endswith("-migrate")}
    assert set(jobs) == {f"{s.name}-migrate" for s in services_in(overlay) if s.database}
    for svc in services_in(overlay):
        if not svc.database:
            continue
        job = jobs[f"{svc.name}-migrate"]
        (container,) = pod_spec(job)["containers"]
        assert image_name(container["image"])[0] == f"orrery/{svc.name}"
        assert container["command"] == ["python", "-m", svc.package, "migrate"]
        assert pod_spec(job)["restartPolicy"] == "Never"
        if overlay in DEPLOYED:
            env = container_env(rendered, container)
            assert f"{svc.prefix}DATABASE_URL" in env and f"{svc.prefix}DB_SCHEMA" in env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_topics_job_creates_every_topic_with_its_partitions(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    config = rendered.get("Job", "kafka-topics")
    volumes = {v["name"]: v for v in pod_spec(config)["volumes"]}
    topics = rendered.get("ConfigMap", volumes["topics"]["configMap"]["name"])
    listed = [line.split() for line in topics["data"]["topics.txt"].splitlines() if not line.startswith("#")]
    assert [(name, int(partitions)) for name, partitions in listed] == [(t.name, t.partitions) for t in all_topics()]
    replication = int(topics["data"]["REPLICATION_FACTOR"])
    assert replication == (1 if overlay == "dev" else 3)


# --- network ------------------------------------------------------------------------------------------------

PORT_DEPENDENCY = {9092: "kafka", 5432: "postgres", 6379: "redis", 443: "llm", 587: "smtp", 465: "smtp", 25: "smtp"}
# In-cluster stand-ins of external dependencies in development.
STAND_INS = {"llm-stub": "llm", "mailbox": "smtp"}


def _peer(peer: Doc, ports: list[Doc]) -> str:
    namespaces = peer.get("namespaceSelector")
    pods = peer.get("podSelector")
    if namespaces is not None:
        if namespaces.get("matchLabels") == {"kubernetes.io/metadata.name": "kube-system"} and pods == {
            "matchLabels": {"k8s-app": "kube-dns"}
        }:
            return "dns"
        return f"namespace {namespaces}"
    if pods is not None:
        name = str(pods.get("matchLabels", {}).get("app.kubernetes.io/name", f"pods {pods}"))
        return STAND_INS.get(name, name)
    names = {PORT_DEPENDENCY.get(p.get("port", 0), f"port {p.get('port')}") for p in ports}
    return names.pop() if len(names) == 1 else f"ipBlock to {sorted(names)}"


def egress_of(rendered: Rendered, labels: dict[str, str]) -> set[str]:
    """Where a pod with these labels may connect to, by dependency name."""
    reachable = set()
    for policy in rendered.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"{policy['metadata']['name']} allows any destination"
            reachable |= {_peer(peer, rule["ports"]) for peer in rule["to"]}
    return reachable


def expected_egress(svc: Service, env: dict[str, str], rendered: Rendered) -> set[str]:
    expected = {"dns", "kafka"} if svc.runs_on_runtime else {"dns"}
    expected |= {"postgres"} if svc.database else set()
    expected |= {"redis"} if svc.redis else set()
    expected |= {"auth"} if svc.jwt else set()
    expected |= {"llm"} if svc.llm else set()
    expected |= {"smtp"} if "smtp_host" in svc.settings.model_fields else set()
    services = {s["metadata"]["name"] for s in rendered.of_kind("Service")}
    for value in env.values():
        host = urlsplit(value).hostname if value.startswith("http") else None
        if host is not None and host in services and host != svc.name:
            expected.add(STAND_INS.get(host, host))
    return expected


@pytest.mark.parametrize("overlay", DEPLOYED)
def test_each_service_may_reach_only_its_own_dependencies(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    for svc in services_in(overlay):
        deployment = rendered.get("Deployment", svc.name)
        env = container_env(rendered, service_container(rendered, svc))
        assert egress_of(rendered, pod_labels(deployment)) == expected_egress(svc, env, rendered), svc.name
    for job in rendered.of_kind("Job"):
        wanted = {"dns", "kafka"} if job["metadata"]["name"] == "kafka-topics" else {"dns", "postgres"}
        assert egress_of(rendered, pod_labels(job)) == wanted, job["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_denied_unless_a_policy_allows_it(renders: dict[str, Rendered], overlay: str) -> None:
    default = [
        p["spec"]
        for p in renders[overlay].of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and not p["spec"].get("egress")
    ]
    assert any(set(spec.get("policyTypes", [])) == {"Ingress", "Egress"} for spec in default)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_the_gateway_takes_traffic_from_outside_the_namespace(renders: dict[str, Rendered], overlay: str) -> None:
    rendered = renders[overlay]
    gateway = pod_labels(rendered.get("Deployment", "gateway"))
    for policy in rendered.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']} admits anyone"
            for peer in rule["from"]:
                assert "ipBlock" not in peer, policy["metadata"]["name"]
                namespace = (peer.get("namespaceSelector") or {}).get("matchLabels", {})
                source = namespace.get("kubernetes.io/metadata.name")
                if "namespaceSelector" not in peer:
                    continue
                assert source in {"ingress-nginx", "monitoring", "keda"}, policy["metadata"]["name"]
                if source == "ingress-nginx":
                    selected = spec["podSelector"].get("matchLabels", {})
                    assert selected.get("app.kubernetes.io/name") == "gateway"
                    assert selects(spec["podSelector"], gateway)
                if source == "keda":
                    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kafka"}}
    (ingress,) = rendered.of_kind("Ingress")
    backends = [p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert set(backends) == {"gateway"}
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in rendered.of_kind("Service"))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_ingress_keeps_websockets_open_without_sticky_sessions(
    renders: dict[str, Rendered], overlay: str
) -> None:
    gateway = next(s for s in SERVICES if s.name == "gateway")
    idle = float(gateway.settings.model_fields["idle_timeout_seconds"].default)
    annotations = renders[overlay].get("Ingress", "gateway")["metadata"]["annotations"]
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{timeout}"]) > idle
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert not any("affinity" in key or "session-cookie" in key for key in annotations)
