"""Files derived from code or from the local scripts stay in step with them."""

from __future__ import annotations

import re

from scripts import deploy_config, generated
from tests.deploy.manifests import K8S, ROOT, read_env_file


def test_the_generated_configuration_is_up_to_date() -> None:
    assert generated.stale(deploy_config.expected_files()) == [], "run `make docs`"


def test_every_generated_config_map_is_used_by_the_base() -> None:
    kustomization = (K8S / "base" / "kustomization.yaml").read_text()
    for path in (K8S / "base" / "config").glob("*.env"):
        assert f"config/{path.name}" in kustomization, path.name
    assert set(p.stem for p in (K8S / "base" / "config").glob("*.env")) == set(deploy_config.config_groups())


def test_the_documented_prod_secrets_are_the_ones_the_settings_keep_secret() -> None:
    documented = {p.stem: set(read_env_file(p)) for p in (K8S / "overlays" / "prod" / "secrets.example").glob("*.env")}
    optional = {"ORRERY_AUTH_PREVIOUS_KEY", "ORRERY_LLM_LEONARDO_API_KEY"}
    for group, keys in deploy_config.secret_keys().items():
        assert group in documented, group
        assert set(keys) - optional <= documented[group] | {k for k in documented[group] if k.endswith("__API_KEY")}
        text = (K8S / "overlays" / "prod" / "secrets.example" / f"{group}.env").read_text()
        assert all(key in text for key in keys), f"{group}: every key is at least mentioned"


def provisioned_sql() -> list[str]:
    """What `scripts/infra/postgres.sh provision` runs per service, with the services it runs it for."""
    script = (ROOT / "scripts" / "infra" / "postgres.sh").read_text()
    block = re.search(r"psql_su -d orrery <<SQL\n(.*?)\nSQL\n", script, re.S)
    services = re.search(r"SERVICES=\(([^)]*)\)", (ROOT / "scripts" / "infra" / "common.sh").read_text())
    assert block and services
    template = block.group(1).replace("\\$", "$")
    return [template.replace("$svc", svc) for svc in services.group(1).split()]


def test_the_container_databases_are_provisioned_like_the_local_server() -> None:
    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    for block in provisioned_sql():
        assert block in sql
    assert "REVOKE ALL ON SCHEMA public FROM PUBLIC" in sql
    # kustomize reads only below the overlay: it keeps a copy, which must not drift.
    assert (K8S / "overlays" / "dev" / "postgres" / "init.sql").read_text() == sql


def test_every_database_service_has_its_role_and_schema_provisioned() -> None:
    sql = (ROOT / "deploy" / "postgres" / "init.sql").read_text()
    for svc in deploy_config.SERVICES:
        if not svc.database:
            continue
        schema = svc.settings.model_fields["db_schema"].default
        url = read_env_file(K8S / "overlays" / "dev" / "secrets" / f"{svc.name}.env")[f"{svc.prefix}DATABASE_URL"]
        role = re.match(r"postgresql\+psycopg://([^:]+):([^@]+)@", url)
        assert role, url
        assert f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role.group(1)};" in sql
        assert f"CREATE ROLE {role.group(1)} LOGIN PASSWORD '{role.group(2)}'" in sql
