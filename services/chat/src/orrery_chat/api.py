"""The chat read API, scoped by the caller: conversations, their messages, ending and deleting them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from orrery_chat import repository as repo
from orrery_chat.chatfile import ChatFileError, parse_chat_file, write_chat_file
from orrery_chat.domain import Busy, ConversationNotFound, MessageNotFound, NotAllowed, title_from
from orrery_chat.handlers import ChatDeps, delete_conversation, end_conversation
from orrery_chat.ports import PathMessage
from orrery_shared.auth import CurrentPrincipal
from orrery_shared.http import ApiError
from orrery_shared.llm import LLMError

router = APIRouter(prefix="/conversations", tags=["conversations"])
JSONL = "application/jsonl"


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
    seq: int = Field(description="the order messages were created in, within the conversation")
    role: str
    content: str
    status: str
    created_at: datetime
    parent_id: UUID | None = Field(description="the message this one follows (null for a first message)")
    sibling_index: int = Field(description="which of its parent's alternatives this is, from 1")
    sibling_count: int = Field(description="how many alternatives its parent has")


class MessagesPublic(BaseModel):
    conversation_id: UUID
    messages: list[MessagePublic] = Field(description="the active path, newest first")
    limit: int
    next_before: UUID | None = Field(description="pass as `before` for the older page; null at the first message")


class TreeNodePublic(BaseModel):
    message_id: UUID
    parent_id: UUID | None
    role: str
    preview: str = Field(description="the message's first 80 characters")
    active: bool = Field(description="on the active path")


class TreePublic(BaseModel):
    conversation_id: UUID
    active_leaf_id: UUID | None
    nodes: list[TreeNodePublic] = Field(description="every message, in creation order")


class ActiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: UUID


class ActivePublic(BaseModel):
    conversation_id: UUID
    active_leaf_id: UUID | None


class MessageLocation(BaseModel):
    message_id: UUID
    conversation_id: UUID
    role: str


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
    async with _deps(request).database.transaction() as tx:
        rows = await repo.list_conversations(tx.session, principal.user_id, limit, offset)
    return ConversationsPublic(conversations=[_public(r) for r in rows], limit=limit, offset=offset)


class ModelUsage(BaseModel):
    model: str
    replies: int
    prompt_tokens: int
    completion_tokens: int


class UsagePublic(BaseModel):
    by_model: list[ModelUsage]


@router.get("/usage", response_model=UsagePublic)
async def usage(request: Request, principal: CurrentPrincipal) -> UsagePublic:
    """What the caller's stored replies cost, in tokens, by model."""
    async with _deps(request).database.transaction() as tx:
        rows = await repo.usage_by_model(tx.session, principal.user_id)
    return UsagePublic(
        by_model=[
            ModelUsage(
                model=r.model, replies=r.replies, prompt_tokens=r.prompt_tokens, completion_tokens=r.completion_tokens
            )
            for r in rows
        ]
    )


class TurnPublic(BaseModel):
    turn_id: UUID
    conversation_id: UUID
    status: str = Field(description="processing, completed, cancelled or failed")
    assistant_message_id: UUID | None = Field(description="the reply, once stored")


@router.get("/turns/{turn_id}", response_model=TurnPublic)
async def get_turn(request: Request, turn_id: UUID, principal: CurrentPrincipal) -> TurnPublic:
    """One of the caller's turns: how far it got, and its reply once stored."""
    async with _deps(request).database.transaction() as tx:
        row = await repo.turn_of(tx.session, turn_id, principal.user_id)
    if row is None:
        raise ApiError(404, "not_found", "no such turn")
    return TurnPublic(
        turn_id=row.turn_id,
        conversation_id=row.conversation_id,
        status=row.status,
        assistant_message_id=row.assistant_message_id,
    )


@router.get("/messages/{message_id}", response_model=MessageLocation)
async def locate_message(request: Request, message_id: UUID, principal: CurrentPrincipal) -> MessageLocation:
    """Which of the caller's conversations a message belongs to."""
    async with _deps(request).database.transaction() as tx:
        row = await repo.message_of(tx.session, message_id, principal.user_id)
    if row is None:
        raise ApiError(404, "not_found", "no such message")
    return MessageLocation(message_id=message_id, conversation_id=row.conversation_id, role=row.role)


@router.get("/{conversation_id}", response_model=ConversationPublic)
async def get_conversation(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> ConversationPublic:
    async with _deps(request).database.transaction() as tx:
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
        if row is None:
            raise _not_found()
        persona = await repo.persona(tx.session, row.character_id)
    public = _public(row)
    if persona is not None:
        public.character.name, public.character.portrait_url = persona.name, persona.portrait_url
    return public


def _message_public(m: PathMessage) -> MessagePublic:
    stored = m.message
    return MessagePublic(
        message_id=stored.message_id,
        seq=stored.seq,
        role=stored.role,
        content=stored.content,
        status=stored.status,
        created_at=stored.created_at,
        parent_id=stored.parent_id,
        sibling_index=m.sibling_index,
        sibling_count=m.sibling_count,
    )


@router.get("/{conversation_id}/messages", response_model=MessagesPublic)
async def list_messages(
    request: Request,
    conversation_id: UUID,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    before: Annotated[UUID | None, Query(description="a message of the path: the page above it")] = None,
) -> MessagesPublic:
    """The active path, newest first, a page at a time; each message with its place among its alternatives."""
    async with _deps(request).database.transaction() as tx:
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
        if row is None:
            raise _not_found()
        try:
            page, next_before = await repo.path_page(tx.session, conversation_id, row.active_leaf_id, before, limit)
        except MessageNotFound:
            raise ApiError(404, "not_found", "`before` is not a message of the active path") from None
    return MessagesPublic(
        conversation_id=conversation_id,
        messages=[_message_public(m) for m in page],
        limit=limit,
        next_before=next_before,
    )


@router.get("/{conversation_id}/tree", response_model=TreePublic)
async def get_tree(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> TreePublic:
    """Every message of the conversation, compactly, for a branch navigator."""
    async with _deps(request).database.transaction() as tx:
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
        if row is None:
            raise _not_found()
        nodes = await repo.whole_tree(tx.session, conversation_id, row.active_leaf_id)
    return TreePublic(
        conversation_id=conversation_id,
        active_leaf_id=row.active_leaf_id,
        nodes=[TreeNodePublic(**n.__dict__) for n in nodes],
    )


@router.put("/{conversation_id}/active", response_model=ActivePublic)
async def select_branch(
    request: Request, conversation_id: UUID, body: ActiveIn, principal: CurrentPrincipal
) -> ActivePublic:
    """Make the path through a message active, down to its most recently active descendant."""
    async with _deps(request).database.transaction() as tx:
        if await repo.lock_conversation(tx.session, conversation_id, principal.user_id) is None:
            raise _not_found()
        try:
            leaf = await repo.select(tx.session, conversation_id, body.message_id)
        except MessageNotFound:
            raise ApiError(404, "not_found", "no such message in this conversation") from None
    return ActivePublic(conversation_id=conversation_id, active_leaf_id=leaf)


@router.delete(
    "/{conversation_id}/messages/{message_id}",
    response_model=ActivePublic,
    responses={
        409: {
            "description": "a reply is being written below it (`busy`), or it is the only first message (`not_allowed`)"
        }
    },
)
async def delete_message(
    request: Request, conversation_id: UUID, message_id: UUID, principal: CurrentPrincipal
) -> ActivePublic:
    """Delete a message and everything below it; the active path moves to an alternative or the parent."""
    async with _deps(request).database.transaction() as tx:
        conversation = await repo.lock_conversation(tx.session, conversation_id, principal.user_id)
        if conversation is None:
            raise _not_found()
        try:
            leaf = await repo.delete_message(tx.session, conversation, message_id)
        except MessageNotFound:
            raise ApiError(404, "not_found", "no such message in this conversation") from None
        except Busy as why:
            raise ApiError(409, "busy", str(why)) from None
        except NotAllowed as why:
            raise ApiError(409, "not_allowed", str(why)) from None
    return ActivePublic(conversation_id=conversation_id, active_leaf_id=leaf)


@router.get(
    "/{conversation_id}/export",
    response_class=Response,
    responses={200: {"content": {JSONL: {"schema": {"type": "string"}}}, "description": "a SillyTavern chat file"}},
)
async def export(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> Response:
    """The conversation as a SillyTavern JSONL chat file (a header line, then one line per message)."""
    async with _deps(request).database.transaction() as tx:
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
        if row is None:
            raise _not_found()
        persona = await repo.persona(tx.session, row.character_id)
        path = await repo.active_path(tx.session, conversation_id, row.active_leaf_id)
        swipes = await repo.alternatives(tx.session, conversation_id, path)
    character_name = persona.name if persona is not None else "Character"
    metadata = {
        "orrery": {
            "conversation_id": str(row.conversation_id),
            "character_id": str(row.character_id),
            "project_id": str(row.project_id),
            "title": row.title,
            "summary": row.end_summary,
        }
    }
    stored = [m.message for m in path]
    text = write_chat_file(principal.name or "You", character_name, row.created_at, stored, metadata, swipes)
    filename = f"{_file_safe(character_name)}-{conversation_id}.jsonl"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(text.encode(), media_type=JSONL, headers=headers)


@router.post(
    "/import",
    response_model=ConversationPublic,
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": (
                "a chat file: SillyTavern's JSONL (a header line, then one JSON object per message), as the raw "
                "body or as the field `file` of a form"
            ),
            "content": {
                JSONL: {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_chat(request: Request, principal: CurrentPrincipal, character_id: UUID) -> ConversationPublic:
    """A SillyTavern JSONL chat file (raw body, or a form's `file`) becomes a conversation of the caller with
    `character_id`: its messages as the active path, each message's swipes as its alternatives."""
    try:
        chat = parse_chat_file(await _chat_file(request))
    except ChatFileError as error:
        raise ApiError(422, "invalid", str(error)) from None
    first_user = next((m.content for m in chat.messages if m.role == "user"), chat.messages[0].content)
    conversation_id = uuid4()
    async with _deps(request).database.transaction() as tx:
        persona = await repo.persona(tx.session, character_id)
        if persona is None or not persona.visible_to(principal.user_id):
            raise ApiError(404, "not_found", "no such character")
        await repo.insert_imported(
            tx.session,
            conversation_id=conversation_id,
            user_id=principal.user_id,
            character_id=character_id,
            title=title_from(first_user),
            entries=chat.messages,
            now=datetime.now(UTC),
        )
        row = await repo.conversation_of(tx.session, conversation_id, principal.user_id)
    public = _public(row)
    public.character.name, public.character.portrait_url = persona.name, persona.portrait_url
    return public


MAX_CHAT_FILE_BYTES = 64 * 1024 * 1024


async def _chat_file(request: Request) -> bytes:
    """The uploaded file's bytes, whether sent as the body or as a form's `file` (what a browser form and
    `curl -F file=@chat.jsonl` send)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        data = await request.body()
    else:
        try:
            form = await request.form(max_files=1, max_fields=10)
        except Exception:  # a malformed form (the parser's errors have no common base)
            raise ApiError(422, "invalid", "the form could not be read") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(422, "invalid", "the form needs the chat file as its field `file`")
        data = await upload.read(MAX_CHAT_FILE_BYTES + 1)
        await form.close()
    if len(data) > MAX_CHAT_FILE_BYTES:
        raise ApiError(413, "too_large", f"chat files are limited to {MAX_CHAT_FILE_BYTES // (1024 * 1024)} MB")
    return data


def _file_safe(name: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-")
    return kept[:60] or "chat"


@router.delete("/{conversation_id}", status_code=204)
async def delete(request: Request, conversation_id: UUID, principal: CurrentPrincipal) -> Response:
    """Delete the conversation and what came from it: messages, token streams, waiting dossier turns, and the
    project's dossier when no other conversation feeds it."""
    if not await delete_conversation(conversation_id, principal.user_id, _deps(request)):
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
