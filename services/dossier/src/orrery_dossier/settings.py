"""Settings of the dossier service (prefix ORRERY_DOSSIER_)."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from orrery_shared.settings import DatabaseServiceSettings, load_settings


class DossierSettings(DatabaseServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORRERY_DOSSIER_", extra="ignore")

    port: int = Field(8004, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_dossier:orrery_dossier@127.0.0.1:55432/orrery"
    db_schema: str = "dossier"


def load() -> DossierSettings:
    return load_settings(DossierSettings)
