"""Settings of the dossier service (prefix ORRERY_DOSSIER_)."""

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from orrery_dossier.domain import SchedulePolicy, TextLimits
from orrery_shared.settings import DatabaseServiceSettings, load_settings


class DossierSettings(DatabaseServiceSettings):
    """Everything the dossier service reads from ORRERY_DOSSIER_* (JWT and LLM settings have their own prefixes)."""

    model_config = SettingsConfigDict(env_prefix="ORRERY_DOSSIER_", extra="ignore")

    port: int = Field(8004, ge=1, le=65535)
    database_url: str = "postgresql+psycopg://orrery_dossier:orrery_dossier@127.0.0.1:55432/orrery"
    db_schema: str = "dossier"

    consumer_group_prefix: str = Field(
        "dossier",
        pattern=r"^[A-Za-z0-9._-]+$",
        description="consumer groups <prefix>.turns, .merges, .deletions and .erasures",
    )
    consumer_concurrency: int = Field(16, ge=1, le=256, description="turns of different conversations in flight")

    extract_score: float = Field(20.0, gt=0, description="pending signal that makes a batch worth extracting")
    min_batch_turns: int = Field(3, ge=1, description="pending turns needed besides the signal")
    long_text_chars: int = Field(1_500, ge=1, description="pending user text that replaces min_batch_turns")
    max_pending_turns: int = Field(12, ge=1, description="extract whatever is pending once this many wait")
    max_wait_seconds: float = Field(300.0, gt=0, description="extract pending turns once the oldest waited this long")
    min_turn_score: float = Field(1.0, ge=0, description="turns scoring less are not kept for extraction")

    extraction_workers: int = Field(2, ge=0, le=64, description="concurrent extractions per process (0: none)")
    batch_max_turns: int = Field(40, ge=1, description="turns sent to one extraction call")
    batch_max_chars: int = Field(24_000, ge=1_000, description="turn text sent to one extraction call")
    turn_text_max_chars: int = Field(4_000, ge=100, description="each stored message is cut to this length")
    prompt_dossier_max_chars: int = Field(16_000, ge=1_000, description="current dossier shown to the model")
    extraction_max_tokens: int = Field(4_000, ge=100, description="reply limit of an extraction call")
    lease_seconds: float = Field(180.0, ge=5, description="how long a worker owns a project's extraction")
    retry_base_seconds: float = Field(5.0, gt=0, description="first delay after a failed extraction")
    retry_max_seconds: float = Field(300.0, gt=0, description="longest delay between extraction retries")
    poll_seconds: float = Field(1.0, gt=0, description="how often idle workers look for due projects")

    @model_validator(mode="after")
    def _retry_bounds(self) -> "DossierSettings":
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds must be at least retry_base_seconds")
        return self

    @property
    def turns_group(self) -> str:
        """Consumer group (and inbox name) of chat.turn-completed.v1."""
        return f"{self.consumer_group_prefix}.turns"

    @property
    def merges_group(self) -> str:
        """Consumer group (and inbox name) of auth.user-merged.v1."""
        return f"{self.consumer_group_prefix}.merges"

    @property
    def deletions_group(self) -> str:
        """Consumer group (and inbox name) of chat.conversation-deleted.v1."""
        return f"{self.consumer_group_prefix}.deletions"

    @property
    def erasures_group(self) -> str:
        """Consumer group (and inbox name) of auth.user-erased.v1."""
        return f"{self.consumer_group_prefix}.erasures"

    def policy(self) -> SchedulePolicy:
        """The smart-update rule these settings describe."""
        return SchedulePolicy(
            extract_score=self.extract_score,
            min_batch_turns=self.min_batch_turns,
            long_text_chars=self.long_text_chars,
            max_pending_turns=self.max_pending_turns,
            max_wait_seconds=self.max_wait_seconds,
            min_turn_score=self.min_turn_score,
        )

    def limits(self) -> TextLimits:
        """Sizes of what is stored and sent to the model."""
        return TextLimits(
            turn_text_max_chars=self.turn_text_max_chars,
            batch_max_turns=self.batch_max_turns,
            batch_max_chars=self.batch_max_chars,
            prompt_dossier_max_chars=self.prompt_dossier_max_chars,
        )


def load() -> DossierSettings:
    """Settings from the environment, or exit with one line naming the bad variable."""
    return load_settings(DossierSettings)
