"""Raster images with Pillow: re-encoding untrusted or foreign images as clean, bounded PNGs."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError


class ImageRejectedError(ValueError):
    """Bytes that are not a usable image, or one too large to decode safely."""


def to_png(data: bytes, max_pixels: int, max_side: int = 1024) -> bytes:
    """`data` (PNG, JPEG, WebP or GIF) decoded and saved as a fresh PNG, downscaled to `max_side`.

    Re-encoding drops every ancillary chunk (text, metadata) of the original. The pixel count is checked from
    the header before anything is decoded, so a small file claiming huge dimensions costs nothing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageRejectedError(f"the image is {width}x{height} pixels, more than allowed")
            if image.format not in ("PNG", "JPEG", "WEBP", "GIF"):
                raise ImageRejectedError(f"unsupported image format {image.format}")
            image.load()
    except ImageRejectedError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise ImageRejectedError(f"the image cannot be decoded: {type(error).__name__}") from None
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=6)
    return out.getvalue()
