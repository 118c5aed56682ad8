"""Small valid PNG images, drawn deterministically from a prompt."""

from __future__ import annotations

import struct
import zlib

from orrery_llm_stub.character import seed_for

MAX_SIDE = 64


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG from `height` rows of `width * 3` bytes."""
    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")
    )


def image_size(size: str | None) -> tuple[int, int]:
    """Requested "WxH" scaled so the longer side is at most MAX_SIDE pixels (square if unparseable)."""
    try:
        width, height = (int(v) for v in (size or "").lower().split("x"))
    except ValueError:
        return MAX_SIDE, MAX_SIDE
    if width <= 0 or height <= 0:
        return MAX_SIDE, MAX_SIDE
    scale = MAX_SIDE / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def prompt_png(prompt: str, size: str | None = None) -> bytes:
    """A sky-like gradient with a sun, its colours derived from `prompt`."""
    width, height = image_size(size)
    seed = seed_for(prompt)
    top = (seed & 0xFF, (seed >> 8) & 0xFF, (seed >> 16) & 0xFF)
    bottom = ((seed >> 24) & 0xFF, (seed >> 32) & 0xFF, (seed >> 40) & 0xFF)
    sun_x, sun_y = (seed >> 48) % width, (seed >> 56) % max(1, height // 2)
    radius = max(2, min(width, height) // 6)
    rows = []
    for y in range(height):
        t = y / max(1, height - 1)
        base = bytes(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True))
        row = bytearray(base * width)
        for x in range(max(0, sun_x - radius), min(width, sun_x + radius + 1)):
            if (x - sun_x) ** 2 + (y - sun_y) ** 2 <= radius * radius:
                row[x * 3 : x * 3 + 3] = b"\xff\xe0\x80"
        rows.append(bytes(row))
    return encode_png(width, height, rows)
