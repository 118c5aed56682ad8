"""The extraction model behind the Extractor port: one structured LLM call per batch of turns."""

from __future__ import annotations

from collections.abc import Sequence

from orrery_dossier.domain import Extraction, TurnText
from orrery_dossier.ports import ExtractionUnavailable
from orrery_dossier.prompts import extraction_messages
from orrery_shared.events import DossierSnapshot
from orrery_shared.llm import LLMClient, LLMError

TASK = "extraction"


class LLMExtractor:
    """Asks the `extraction` route for the new story information in some turns."""

    def __init__(self, client: LLMClient, *, max_dossier_chars: int, max_tokens: int, temperature: float = 0.2) -> None:
        self.client = client
        self.max_dossier_chars = max_dossier_chars
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def extract(self, title: str, snapshot: DossierSnapshot, turns: Sequence[TurnText]) -> Extraction:
        """What the turns add; raises ExtractionUnavailable when no provider gave a usable answer."""
        messages = extraction_messages(title, snapshot, turns, self.max_dossier_chars)
        try:
            result = await self.client.complete_structured(
                messages, Extraction, task=TASK, max_tokens=self.max_tokens, temperature=self.temperature
            )
        except LLMError as error:
            raise ExtractionUnavailable(str(error)) from error
        return result.value
