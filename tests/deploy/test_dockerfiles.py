"""Each service's Dockerfile, read instruction by instruction (no Docker engine, no hadolint needed)."""

from __future__ import annotations

import fnmatch
import json
import re

import pytest

from scripts.deploy_config import SERVICES, Service
from tests.deploy.manifests import ROOT, dockerfile, env_of


def uv_version() -> str:
    match = re.search(r'^UV_VERSION="([^"]+)"', (ROOT / "scripts" / "bootstrap.sh").read_text(), re.M)
    assert match
    return match.group(1)


def test_every_service_folder_has_a_dockerfile_and_a_catalog_entry() -> None:
    folders = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert folders == {s.name for s in SERVICES}
    assert all((ROOT / "services" / name / "Dockerfile").exists() for name in folders)


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_base_image_is_a_pinned_slim_python_3_11(svc: Service) -> None:
    bases = [step.args.split()[0] for step in dockerfile(svc) if step.keyword == "FROM"]
    assert bases
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_image_runs_as_a_numeric_non_root_user(svc: Service) -> None:
    steps = dockerfile(svc)
    users = [i for i, step in enumerate(steps) if step.keyword == "USER"]
    assert users, "no USER"
    user = steps[users[-1]].args.split(":")[0]
    # Numeric, so the kubelet can verify runAsNonRoot without reading /etc/passwd.
    assert user.isdigit() and int(user) != 0
    cmd = next(i for i, step in enumerate(steps) if step.keyword == "CMD")
    assert users[-1] < cmd


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_uv_installs_locked_dependencies_before_the_code_in_two_layers(svc: Service) -> None:
    steps = dockerfile(svc)
    syncs = [i for i, step in enumerate(steps) if step.keyword == "RUN" and "uv sync" in step.args]
    assert len(syncs) == 2
    for i in syncs:
        args = steps[i].args
        for flag in ("--frozen", "--no-dev", f"--package orrery-{svc.name}"):
            assert flag in args, f"{flag} missing in: {args}"
    dependencies, code = syncs
    assert "--no-install-workspace" in steps[dependencies].args
    assert "--no-install-workspace" not in steps[code].args
    copies = [(i, step.args.split()[:-1]) for i, step in enumerate(steps) if step.keyword == "COPY"]
    before = {source for i, sources in copies if i < dependencies for source in sources}
    between = {source.rstrip("/") for i, sources in copies if dependencies < i < code for source in sources}
    assert before == {"pyproject.toml", "uv.lock"}, "only the lock file may invalidate the dependency layer"
    assert between == {"shared", f"services/{svc.name}"}
    pip = [step.args for step in steps if step.keyword == "RUN" and "pip install" in step.args]
    assert any(f"uv=={uv_version()}" in args for args in pip), "uv from PyPI, pinned as scripts/bootstrap.sh pins it"


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_service_listens_on_all_interfaces_on_its_port(svc: Service) -> None:
    steps = dockerfile(svc)
    env = env_of(steps)
    assert env[f"{svc.prefix}HOST"] == "0.0.0.0"
    assert env[f"{svc.prefix}PORT"] == str(svc.port)
    exposed = [step.args for step in steps if step.keyword == "EXPOSE"]
    assert exposed == [str(svc.port)]


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_healthcheck_asks_the_health_endpoint_on_the_service_port(svc: Service) -> None:
    (check,) = [step.args for step in dockerfile(svc) if step.keyword == "HEALTHCHECK"]
    assert re.search(r"--interval=\d+s", check) and re.search(r"--timeout=\d+s", check)
    command = json.loads(check.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    assert svc.liveness_path in command[2] and f"{svc.prefix}PORT" in command[2]


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_the_container_runs_one_process_of_the_service(svc: Service) -> None:
    steps = dockerfile(svc)
    assert not [step for step in steps if step.keyword == "ENTRYPOINT"]
    (cmd,) = [step.args for step in steps if step.keyword == "CMD"]
    assert json.loads(cmd) == ["python", "-m", svc.package]
    assert (svc.source / "__main__.py").exists()


@pytest.mark.parametrize("svc", SERVICES, ids=lambda s: s.name)
def test_no_image_or_package_floats_on_latest(svc: Service) -> None:
    for step in dockerfile(svc):
        assert ":latest" not in step.args and "@latest" not in step.args, step


def dockerignored(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves `path` out of the build context (last matching pattern wins)."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *("/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1))]
        regex = fnmatch.translate(pattern.replace("**/", "\0")).replace("\0", "(?:.*/)?")
        if any(re.match(regex, candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def test_the_build_context_holds_the_workspace_and_nothing_else() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for kept in ("pyproject.toml", "uv.lock", "shared/pyproject.toml", "shared/src/orrery_shared/events/models.py"):
        assert not dockerignored(patterns, kept), kept
    for svc in SERVICES:
        assert not dockerignored(patterns, f"services/{svc.name}/pyproject.toml")
        assert not dockerignored(patterns, f"services/{svc.name}/src/{svc.package}/__main__.py")
        assert dockerignored(patterns, f"services/{svc.name}/tests/test_x.py")
    for dropped in (".venv/bin/python", ".orrery/kafka/data", ".git/HEAD", "tests/e2e/test_make_run.py", "docs/x.md"):
        assert dockerignored(patterns, dropped), dropped
    assert dockerignored(patterns, "shared/src/orrery_shared/__pycache__/x.cpython-311.pyc")
