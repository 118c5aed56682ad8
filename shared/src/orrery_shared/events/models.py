"""Every v1 event of the platform. Field descriptions feed docs/events.md and the AsyncAPI documents."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orrery_shared.events.envelope import Event

# --- auth ---------------------------------------------------------------------------------------------


class UserRegistered(Event):
    """A new user exists (a guest, or an account created by its first magic-link sign-in)."""

    TOPIC = "auth.user-registered.v1"
    KEY_FIELD = "user_id"
    type: Literal["auth.user-registered.v1"] = "auth.user-registered.v1"

    user_id: UUID = Field(description="the new user's id")
    username: str = Field(description="display name")
    email: str | None = Field(None, description="null for guests")
    is_guest: bool = Field(description="true for anonymous guest users")


class UserMerged(Event):
    """A guest became an account: every service re-owns the guest's rows."""

    TOPIC = "auth.user-merged.v1"
    KEY_FIELD = "to_user_id"
    type: Literal["auth.user-merged.v1"] = "auth.user-merged.v1"

    from_user_id: UUID = Field(description="the guest user whose data moves")
    to_user_id: UUID = Field(description="the account that now owns it")


class UserErased(Event):
    """A user erased their account: every service deletes every row it holds of them (and of the guests merged
    into them), idempotently."""

    TOPIC = "auth.user-erased.v1"
    KEY_FIELD = "user_id"
    type: Literal["auth.user-erased.v1"] = "auth.user-erased.v1"

    user_id: UUID = Field(description="the erased user")
    merged_user_ids: list[UUID] = Field(
        default_factory=list, description="guests that had been merged into the user, erased with it"
    )


# --- characters ---------------------------------------------------------------------------------------


class TraitOverrides(BaseModel):
    """Traits the user pinned before spinning; unset ones are drawn at random."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sex: str | None = Field(None, max_length=40)
    species: str | None = Field(None, max_length=60)
    archetype: str | None = Field(None, max_length=60)


class CharacterRequested(Event):
    """A user spun the roulette."""

    TOPIC = "character.requested.v1"
    KEY_FIELD = "user_id"
    type: Literal["character.requested.v1"] = "character.requested.v1"

    request_id: UUID = Field(description="idempotency key of the spin, echoed in created/failed")
    user_id: UUID = Field(description="who spun")
    traits: TraitOverrides = Field(default_factory=TraitOverrides, description="optional trait overrides")
    exclude_character_ids: list[UUID] = Field(
        default_factory=list, description="characters the new one must not repeat"
    )


class CharacterCreated(Event):
    """A character exists, with its full persona; chat keeps its own copy built from this."""

    TOPIC = "character.created.v1"
    KEY_FIELD = "character_id"
    type: Literal["character.created.v1"] = "character.created.v1"

    request_id: UUID | None = Field(None, description="the spin that produced it; null for presets")
    character_id: UUID
    owner_user_id: UUID | None = Field(None, description="null for presets visible to everyone")
    name: str
    planet: str
    sex: str
    species: str
    archetype: str
    personality: str
    backstory: str
    speaking_style: str
    greeting: str = Field(description="the character's first message in a new conversation")
    alternate_greetings: list[str] = Field(
        default_factory=list, description="other first messages a conversation offers as the greeting's alternatives"
    )
    tags: list[str] = Field(default_factory=list)
    portrait_url: str = Field(description="where the gateway serves the portrait")
    portrait_provider: str = Field(description="which image provider drew it, e.g. procedural")


class CharacterFailed(Event):
    """A spin could not produce a character."""

    TOPIC = "character.failed.v1"
    KEY_FIELD = "user_id"
    type: Literal["character.failed.v1"] = "character.failed.v1"

    request_id: UUID
    user_id: UUID
    reason: str = Field(description="human-readable reason")
    retryable: bool = Field(description="whether spinning again may succeed")


# --- chat ---------------------------------------------------------------------------------------------


TurnMode = Literal["reply", "regenerate", "continue", "edit"]


class ChatTurnRequested(Event):
    """A user sent a message, or asked for another reply (regenerate), more of one (continue) or a changed
    message (edit); the chat service answers it."""

    TOPIC = "chat.turn-requested.v1"
    KEY_FIELD = "conversation_id"
    PARTITIONS = 12
    type: Literal["chat.turn-requested.v1"] = "chat.turn-requested.v1"

    turn_id: UUID = Field(description="names the Redis stream turn:{turn_id} carrying the reply's tokens")
    conversation_id: UUID
    user_id: UUID
    character_id: UUID
    project_id: UUID | None = Field(None, description="story project; chat creates a default one if null")
    content: str = Field("", max_length=16_000, description="the user's text (reply, edit); empty otherwise")
    client_msg_id: str | None = Field(None, max_length=100, description="client's id, echoed back")
    mode: TurnMode = Field(
        "reply",
        description=(
            "reply: answer `content` at the end of the active path; regenerate: a new alternative of the "
            "character's message `message_id`; continue: extend the character's message `message_id`; edit: a "
            "new alternative of `message_id` with `content` (a user message is then answered anew)"
        ),
    )
    message_id: UUID | None = Field(None, description="the message regenerated, continued or edited")

    @model_validator(mode="after")
    def _mode_needs(self) -> ChatTurnRequested:
        if self.mode in ("reply", "edit") and not self.content:
            raise ValueError(f"a {self.mode} turn needs content")
        if self.mode != "reply" and self.message_id is None:
            raise ValueError(f"a {self.mode} turn needs message_id")
        return self


class MessageRecord(BaseModel):
    """One stored message as events carry it."""

    model_config = ConfigDict(frozen=True)

    message_id: UUID
    content: str
    created_at: datetime


class TokenUsage(BaseModel):
    """What a model call cost."""

    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)
    model: str
    provider: str | None = None


class ChatTurnCompleted(Event):
    """A turn's reply is complete and stored."""

    TOPIC = "chat.turn-completed.v1"
    KEY_FIELD = "conversation_id"
    PARTITIONS = 12
    type: Literal["chat.turn-completed.v1"] = "chat.turn-completed.v1"

    turn_id: UUID
    conversation_id: UUID
    user_id: UUID
    character_id: UUID
    project_id: UUID
    user_message: MessageRecord | None = Field(
        description="the user's message the reply answers (null only for an edited greeting)"
    )
    assistant_message: MessageRecord = Field(description="the reply; after a continue, the whole extended message")
    status: Literal["complete", "cancelled"] = Field("complete", description="cancelled keeps the partial")
    usage: TokenUsage
    mode: TurnMode = "reply"
    replaced_turn_ids: list[UUID] = Field(
        default_factory=list,
        description="turns on the branch the active path left (a regenerate or an edit): not part of the story now",
    )


class ChatTurnFailed(Event):
    """A turn could not be answered; the user's message is kept."""

    TOPIC = "chat.turn-failed.v1"
    KEY_FIELD = "conversation_id"
    PARTITIONS = 12
    type: Literal["chat.turn-failed.v1"] = "chat.turn-failed.v1"

    turn_id: UUID
    conversation_id: UUID
    user_id: UUID
    reason: str
    retryable: bool


class ConversationDeleted(Event):
    """A user deleted a conversation: what other services derived from it goes too."""

    TOPIC = "chat.conversation-deleted.v1"
    KEY_FIELD = "conversation_id"
    PARTITIONS = 12
    type: Literal["chat.conversation-deleted.v1"] = "chat.conversation-deleted.v1"

    conversation_id: UUID
    user_id: UUID
    project_id: UUID = Field(description="the story project the conversation fed")
    project_orphaned: bool = Field(
        description="no other conversation feeds the project: its dossier is deleted with the conversation"
    )
    turn_ids: list[UUID] = Field(
        default_factory=list, description="the conversation's turns recent enough to still have a token stream"
    )


# --- dossier ------------------------------------------------------------------------------------------


class DossierCharacter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=4_000)
    relationships: list[str] = Field(default_factory=list, max_length=100)
    character_arc: str = Field("", max_length=4_000)


class DossierSnapshot(BaseModel):
    """The story dossier: characters, themes, locations, plot points."""

    model_config = ConfigDict(extra="forbid")

    characters: list[DossierCharacter] = Field(default_factory=list, max_length=500)
    themes: list[str] = Field(default_factory=list, max_length=500)
    locations: list[str] = Field(default_factory=list, max_length=500)
    plot_points: list[str] = Field(default_factory=list, max_length=1_000)


class DossierUpdated(Event):
    """A project's dossier has a new version."""

    TOPIC = "dossier.updated.v1"
    KEY_FIELD = "project_id"
    type: Literal["dossier.updated.v1"] = "dossier.updated.v1"

    project_id: UUID
    user_id: UUID
    version: int = Field(ge=1)
    snapshot: DossierSnapshot
    changed_sections: list[Literal["characters", "themes", "locations", "plot_points"]]
    source: Literal["extraction", "user"] | None = Field(
        None, description="what made this version: an extraction from turns, or the user's own edit"
    )
