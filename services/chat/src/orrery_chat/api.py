"""The chat read API, scoped by the caller: conversations, their messages, ending and deleting them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from orrery_chat import repository as repo
from orrery_chat.domain import ConversationNotFound
from orrery_chat.handlers import ChatDeps, end_conversation
from orrery_shared.auth import CurrentPrincipal
from orrery_shared.http import ApiError
from orrery_shared.llm import LLMError

router = APIRouter(prefix="/conversations", tags=["conversations"])


class CharacterSummary(BaseModel):
    character_id: UUID
    name: str | None
    portrait_url: str | None


class ConversationPublic(BaseModel):
    conversation_id: UUID
    title: str
    status: str
    project_id: UUID
    character: CharacterSummary
    message_count: int
    created_at: datetime
    last_message_at: datetime
    ended_at: datetime | None
    summary: str | None


class ConversationsPublic(BaseModel):
    conversations: list[ConversationPublic]
    limit: int
    offset: int


class MessagePublic(BaseModel):
    message_id: UUID
    seq: int
    role: str
    content: str
    status: str
    created_at: datetime


class MessagesPublic(BaseModel):
    conversation_id: UUID
    messages: list[MessagePublic]
    limit: int
    offset: int


class EndedPublic(BaseModel):
    conversation_id: UUID
    status: str
    summary: str
    ended_at: datetime


def _deps(request: Request) -> ChatDeps:
    deps: ChatDeps = request.app.state.chat
    return deps


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "no such conversation")


def _public(r: Any) -> ConversationPublic:
    """A conversation row (optionally joined with its character's name and portrait) as the API shows it."""
    return ConversationPublic(
        conversation_id=r.conversation_id,
        title=r.title,
        status=r.status,
        project_id=r.project_id,
        character=CharacterSummary(
            character_id=r.character_id,
            name=getattr(r, "character_name", None),
            portrait_url=getattr(r, "portrait_url", None),
        ),
        message_count=r.message_count,
        created_at=r.created_at,
        last_message_at=r.last_message_at,
        ended_at=r.ended_at,
        summary=r.end_summary,
    )


Limit = Annotated[int, Query(ge=1, le=200)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


@router.get("", response_model=ConversationsPublic)
async def list_conversations(
    request: Request, principal: CurrentPrincipal, limit: Limit = 50, offset: Offset = 0
) -> ConversationsPublic:
    """The caller's conversations, most recently active first."""
    async with _deps(request).db.transaction() as tx:
        rows = await repo.list_conversations(tx.session, principal.user_id, limit, offset)
    return ConversationsPublic(conversations=[_public(r) for r in rows], limit=limit, offset=offset)


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> ConversationPublic:
    async with _deps(request).db.transaction() as tx:
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
        if row is None:
            raise _not_found()
        persona = await repo.persona(tx.session, row.character_id)
    public = _public(row)
    if persona is not None:
        public.character.name, public.character.portrait_url = persona.name, persona.portrait_url
    return public


@router.get("/{conversation_id}/messages", response_model=MessagesPublic)
async def list_messages(
    request: Request, conversation_id: UUID, principal: CurrentPrincipal, limit: Limit = 50, offset: Offset = 0
) -> MessagesPublic:
    """Messages in conversation order (the character's greeting first)."""
    async with _deps(request).db.transaction() as tx:
        if await repo.conversation_of(tx.session, conversation_id, principal.user_id) is None:
            raise _not_found()
        page = await repo.page_of_messages(tx.session, conversation_id, limit, offset)
    return MessagesPublic(
        conversation_id=conversation_id,
        messages=[MessagePublic(**m.__dict__) for m in page],
        limit=limit,
        offset=offset,
    )


@router.delete("/{conversation_id}", status_code=204)
async def delete_conversation(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> Response:
    async with _deps(request).db.transaction() as tx:
        if not await repo.delete_conversation(tx.session, conversation_id, principal.user_id):
            raise _not_found()
    return Response(status_code=204)


@router.post("/{conversation_id}/end", response_model=EndedPublic)
async def end(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> EndedPublic:
    """End the conversation; its summary is produced and stored."""
    try:
        summary, ended_at = await end_conversation(conversation_id, principal.user_id, _deps(request))
    except ConversationNotFound:
        raise _not_found() from None
    except LLMError:
        raise ApiError(503, "unavailable", "the summary could not be written right now; try again") from None
    return EndedPublic(conversation_id=conversation_id, status="ended", summary=summary, ended_at=ended_at)
