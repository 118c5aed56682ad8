"""Leonardo.Ai images over its REST API: create a generation, poll it until complete, fetch the image.

POST {base}/generations            -> {"sdGenerationJob": {"generationId": ...}}
GET  {base}/generations/{id}       -> {"generations_by_pk": {"status": "PENDING"|"COMPLETE"|"FAILED",
                                                            "generated_images": [{"url": ...}]}}
GET  <image url>                   -> the image (a CDN URL: the API key is not sent there)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from orrery_shared.llm.errors import ImageGenerationError, ImageTimeoutError
from orrery_shared.llm.images import GeneratedImage, ImageRequest, sniff_mime

DEFAULT_BASE_URL = "https://cloud.leonardo.ai/api/rest/v1"
PROVIDER = "leonardo"


def _multiple_of_8(value: int) -> int:
    # Leonardo wants dimensions that are multiples of 8 within 32..1536.
    return max(32, min(1536, value - value % 8))


class LeonardoImageGenerator:
    """Leonardo.Ai's create -> poll -> fetch flow, bounded by `timeout_s`."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model_id: str | None = None,
        poll_interval_s: float = 2.0,
        timeout_s: float = 120.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._http = http_client if http_client is not None else httpx.AsyncClient(timeout=30.0)
        self._owns_http = http_client is None

    @property
    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self._api_key}", "accept": "application/json"}

    async def generate(self, request: ImageRequest) -> GeneratedImage:
        """Create a generation, wait for it, and download its first image."""
        started = time.monotonic()
        generation_id: str | None = None
        try:
            async with asyncio.timeout(self.timeout_s):
                generation_id = await self.create(request)
                url = await self.wait_for(generation_id)
                data = await self.fetch(url)
        except TimeoutError:
            which = f"generation {generation_id}" if generation_id else "creating a generation"
            raise ImageTimeoutError(
                f"{which} did not complete within {self.timeout_s}s", provider=PROVIDER, model=self.model_id
            ) from None
        mime = sniff_mime(data)
        if mime is None:
            raise ImageGenerationError("the fetched file is not an image", provider=PROVIDER, model=self.model_id)
        return GeneratedImage(
            data=data,
            mime_type=mime,
            provider=PROVIDER,
            model=self.model_id or "default",
            latency_s=time.monotonic() - started,
            source_url=url,
        )

    async def create(self, request: ImageRequest) -> str:
        """Start a generation; returns its id."""
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "width": _multiple_of_8(request.width),
            "height": _multiple_of_8(request.height),
            "num_images": 1,
        }
        if self.model_id:
            body["modelId"] = self.model_id
        if request.negative_prompt:
            body["negative_prompt"] = request.negative_prompt
        if request.seed is not None:
            body["seed"] = request.seed
        payload = await self._call("POST", f"{self.base_url}/generations", json=body)
        job = payload.get("sdGenerationJob") if isinstance(payload, dict) else None
        generation_id = job.get("generationId") if isinstance(job, dict) else None
        if not isinstance(generation_id, str) or not generation_id:
            raise ImageGenerationError(f"no generationId in {payload!r:.200}", provider=PROVIDER, model=self.model_id)
        return generation_id

    async def wait_for(self, generation_id: str) -> str:
        """Poll until the generation completes; returns its first image's URL."""
        while True:
            payload = await self._call("GET", f"{self.base_url}/generations/{generation_id}")
            generation = payload.get("generations_by_pk") if isinstance(payload, dict) else None
            status = generation.get("status") if isinstance(generation, dict) else None
            if status == "COMPLETE" and isinstance(generation, dict):
                images = generation.get("generated_images") or []
                url = images[0].get("url") if images and isinstance(images[0], dict) else None
                if not isinstance(url, str) or not url:
                    raise ImageGenerationError(
                        f"generation {generation_id} completed without images", provider=PROVIDER, model=self.model_id
                    )
                return url
            if status == "FAILED":
                raise ImageGenerationError(f"generation {generation_id} failed", provider=PROVIDER, model=self.model_id)
            await asyncio.sleep(self.poll_interval_s)

    async def fetch(self, url: str) -> bytes:
        """Download an image (without the API key: image URLs point at a CDN)."""
        try:
            response = await self._http.get(url, follow_redirects=True)
        except httpx.HTTPError as error:
            raise ImageGenerationError(f"fetching the image failed: {error}", provider=PROVIDER) from error
        if response.status_code >= 400:
            raise ImageGenerationError(
                f"fetching the image failed: {response.text[:200]}", provider=PROVIDER, status_code=response.status_code
            )
        return response.content

    async def _call(self, method: str, url: str, json: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.request(method, url, json=json, headers=self._auth)
        except httpx.HTTPError as error:
            raise ImageGenerationError(f"{method} {url} failed: {error}", provider=PROVIDER) from error
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        if response.status_code >= 400:
            raise ImageGenerationError(
                _leonardo_message(payload) or f"HTTP {response.status_code}",
                provider=PROVIDER,
                model=self.model_id,
                status_code=response.status_code,
            )
        return payload

    async def aclose(self) -> None:
        """Close the HTTP client if this generator created it."""
        if self._owns_http:
            await self._http.aclose()


def _leonardo_message(payload: Any) -> str:
    if isinstance(payload, dict):
        for key in ("error", "message", "detail"):
            value = payload.get(key)
            if isinstance(value, str) and value:
                return value
    return str(payload)[:300] if payload else ""
