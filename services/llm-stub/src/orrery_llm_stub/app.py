"""The stub's FastAPI app: OpenAI's chat, models and images endpoints, plus /_stub/* for tests."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from orrery_llm_stub.character import compose_reply, read_persona, seed_for
from orrery_llm_stub.png import prompt_png
from orrery_llm_stub.schema_fill import fill_schema, schema_in_text
from orrery_llm_stub.script import RequestLog, ScriptBook, ScriptStep
from orrery_llm_stub.settings import StubSettings
from orrery_llm_stub.sse import DropDeliberateDisconnects, ReplyPlan, StreamedReply, WholeReply
from orrery_llm_stub.summarize import summarize, wants_summary
from orrery_shared.llm.tokens import estimate_message_tokens, split_tokens

_STEPS = TypeAdapter(list[ScriptStep])
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}
# Headers that carry per-request pacing overrides (also accepted as metadata keys stub_*).
H_TTFT = "x-stub-ttft-ms"
H_RATE = "x-stub-tokens-per-second"
H_TOKENS = "x-stub-reply-tokens"


def _error(status: int, message: str, retry_after_s: float | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if retry_after_s is not None:
        headers["retry-after"] = str(math.ceil(retry_after_s))
        headers["retry-after-ms"] = str(round(retry_after_s * 1000))
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": kind}}
    return JSONResponse(body, status_code=status, headers=headers)


def _override(request: Request, body: dict[str, Any], header: str, key: str) -> float | None:
    raw = request.headers.get(header)
    if raw is None:
        metadata = body.get("metadata")
        if isinstance(metadata, dict):
            raw = metadata.get(key)
    if raw is None:
        return None
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _last(messages: list[dict[str, Any]], *roles: str) -> str:
    for message in reversed(messages):
        if message.get("role") in roles:
            return _text_of(message)
    return ""


def _malformed(text: str) -> str:
    """`text` turned into JSON that cannot parse (a JSON document cut in half)."""
    if not text.lstrip().startswith(("{", "[")):
        text = json.dumps({"reply": text})
    return text[: max(1, len(text) // 2)]


def compose_text(body: dict[str, Any], step: ScriptStep | None, reply_tokens: int | None) -> str:
    """The reply for a chat request: scripted, schema-conforming JSON, a JSON object, or in character."""
    messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
    system_prompt = "\n".join(_text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    last_user = _last(messages, "user")
    seed = seed_for(system_prompt, last_user, str(body.get("seed", "")))
    if step is not None and step.content is not None:
        text = step.content
    else:
        fmt = body.get("response_format")
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        schema: dict[str, Any] | None = None
        if kind == "json_schema" and isinstance(fmt, dict):
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            schema = schema if isinstance(schema, dict) else {"type": "object"}
        elif kind == "json_object":
            schema = schema_in_text("\n".join(_text_of(m) for m in messages))
        if schema is not None:
            text = json.dumps(fill_schema(schema, seed), ensure_ascii=False)
        elif wants_summary(system_prompt):
            text = summarize(last_user)
        elif kind == "json_object":
            persona = read_persona(system_prompt)
            text = json.dumps({"reply": compose_reply(persona, last_user, seed=seed)}, ensure_ascii=False)
        else:
            text = compose_reply(read_persona(system_prompt), last_user, seed=seed, min_tokens=reply_tokens)
    if step is not None and step.malformed_json:
        text = _malformed(text)
    return text


class Stub:
    """The stub's state: settings, the script book and the request log."""

    def __init__(self, settings: StubSettings) -> None:
        self.settings = settings
        self.script = ScriptBook()
        self.requests = RequestLog(settings.max_recorded_requests)
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)

    def record(self, request: Request, body: Any) -> None:
        """Log a request with its headers and full body (when recording is on)."""
        if not self.settings.record_requests:
            return
        entry: dict[str, Any] = {
            "received_at": time.time(),
            "method": request.method,
            "path": request.url.path,
            "headers": dict(request.headers),
            "body": body,
            # Which connection it came on: whether a client reuses its connections is visible from outside.
            "client": f"{request.client.host}:{request.client.port}" if request.client else None,
        }
        if isinstance(body, dict):
            entry["model"] = body.get("model")
            entry["stream"] = bool(body.get("stream"))
            if "messages" in body:
                entry["messages"] = body["messages"]
        self.requests.add(entry)

    def next_id(self) -> str:
        """A fresh completion id."""
        return f"chatcmpl-{self._id_prefix}{next(self._ids):08x}"

    def plan(self, request: Request, body: dict[str, Any], step: ScriptStep | None) -> ReplyPlan:
        """Decide the whole reply: text, pace, length and usage."""
        settings = self.settings
        ttft_ms = _override(request, body, H_TTFT, "stub_ttft_ms")
        rate = _override(request, body, H_RATE, "stub_tokens_per_second")
        tokens = _override(request, body, H_TOKENS, "stub_reply_tokens")
        if step is not None and step.ttft_ms is not None:
            ttft_ms = step.ttft_ms
        if step is not None and step.tokens_per_second is not None:
            rate = step.tokens_per_second
        reply_tokens = int(tokens) if tokens is not None and tokens >= 1 else settings.reply_tokens
        pieces = split_tokens(compose_text(body, step, reply_tokens))
        fmt = body.get("response_format")
        prose = not (isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"))
        if reply_tokens is not None and prose and (step is None or step.content is None):
            # Cut here, on token boundaries, so the count is exact (re-splitting cut text may differ).
            pieces = pieces[:reply_tokens]
        finish = step.finish_reason if step is not None and step.finish_reason else "stop"
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(limit, int) and 0 < limit < len(pieces):
            pieces, finish = pieces[:limit], "length"
        messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        prompt_tokens = estimate_message_tokens(messages)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(pieces),
            "total_tokens": prompt_tokens + len(pieces),
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        options = body.get("stream_options")
        return ReplyPlan(
            completion_id=self.next_id(),
            created=int(time.time()),
            model=str(body.get("model") or settings.models[0]),
            pieces=pieces,
            finish_reason=finish,
            ttft_s=(settings.ttft_ms if ttft_ms is None else ttft_ms) / 1000,
            tokens_per_second=settings.tokens_per_second if rate is None else rate,
            disconnect_after=step.disconnect_after_tokens if step is not None else None,
            usage=usage,
            include_usage=isinstance(options, dict) and bool(options.get("include_usage")),
        )


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return None


def create_app(settings: StubSettings | None = None) -> FastAPI:
    """The stub server app."""
    stub = Stub(settings or StubSettings())
    app = FastAPI(title="Orrery LLM stub", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.stub = stub
    error_log = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropDeliberateDisconnects) for f in error_log.filters):
        error_log.addFilter(DropDeliberateDisconnects())

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "orrery"} for m in stub.settings.models],
        }

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": 0, "owned_by": "orrery"}

    # A plain Starlette route (no dependency injection): this is the hot path of every benchmark.
    async def chat_completions(request: Request) -> Response:
        body = await _json_body(request)
        stub.record(request, body)
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, "messages must be a non-empty array")
        model = body.get("model")
        step = stub.script.take("chat", model if isinstance(model, str) else None)
        if step is not None and step.status is not None:
            if step.ttft_ms:
                await asyncio.sleep(step.ttft_ms / 1000)
            message = step.error_message or f"scripted error {step.status}"
            return _error(step.status, message, step.retry_after_s)
        plan = stub.plan(request, body, step)
        return StreamedReply(plan) if body.get("stream") else WholeReply(plan)

    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    app.state.chat_completions = chat_completions

    @app.post("/v1/images/generations")
    async def images(request: Request) -> Response:
        body = await _json_body(request)
        stub.record(request, body)
        if not isinstance(body, dict) or not isinstance(body.get("prompt"), str):
            return _error(400, "prompt is required")
        model = body.get("model")
        step = stub.script.take("images", model if isinstance(model, str) else None)
        if step is not None and step.status is not None:
            return _error(step.status, step.error_message or f"scripted error {step.status}", step.retry_after_s)
        if step is not None and step.ttft_ms:
            await asyncio.sleep(step.ttft_ms / 1000)
        prompt = body["prompt"]
        n = body.get("n")
        count = max(1, min(n, 4)) if isinstance(n, int) else 1
        size = body.get("size") if isinstance(body.get("size"), str) else None
        data = []
        for index in range(count):
            png = base64.b64encode(prompt_png(f"{prompt}#{index}", size)).decode()
            entry = (
                {"url": f"data:image/png;base64,{png}"} if body.get("response_format") == "url" else {"b64_json": png}
            )
            data.append({**entry, "revised_prompt": prompt})
        return JSONResponse({"created": int(time.time()), "data": data, "output_format": "png", "size": size})

    @app.post("/_stub/script")
    async def add_script(request: Request) -> Response:
        body = await _json_body(request)
        raw = body.get("steps", body) if isinstance(body, dict) else body
        try:
            steps = _STEPS.validate_python(raw if isinstance(raw, list) else [raw])
        except ValidationError as error:
            return JSONResponse({"error": error.errors(include_url=False, include_context=False)}, 422)
        stub.script.add(steps)
        return JSONResponse({"queued": len(steps), "pending": len(stub.script.pending())})

    @app.get("/_stub/script")
    async def pending_script() -> dict[str, Any]:
        return {"steps": stub.script.pending()}

    @app.get("/_stub/requests")
    async def recorded_requests(model: str | None = None, path: str | None = None) -> dict[str, Any]:
        entries = stub.requests.entries()
        if model is not None:
            entries = [e for e in entries if e.get("model") == model]
        if path is not None:
            entries = [e for e in entries if e.get("path") == path]
        return {"requests": entries}

    @app.post("/_stub/reset")
    async def reset() -> dict[str, Any]:
        stub.script.clear()
        stub.requests.clear()
        return {"reset": True}

    @app.get("/_stub/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok"}

    return app


class FastPath:
    """ASGI entry that hands POST /v1/chat/completions straight to its handler, the rest to FastAPI.

    Every paced token resumes the handler's coroutine through each enclosing middleware frame and
    passes each `send` through their wrappers; skipping the framework layers on this one route cuts the
    per-token and per-connection cost substantially when thousands of streams are open.
    """

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._chat: Callable[[Request], Awaitable[Response]] = app.state.chat_completions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions" and scope["method"] == "POST":
            response = await self._chat(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_server_app(settings: StubSettings | None = None) -> FastPath:
    """The app the server runs: the FastAPI app behind the chat-completions fast path."""
    return FastPath(create_app(settings))
