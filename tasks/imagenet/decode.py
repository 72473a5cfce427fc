"""Decode one ImageNet file to RGB, whatever it really is: ImageNet ships CMYK JPEGs, a PNG named .JPEG,
grayscale and progressive files. An unreadable or truncated file is reported by name, never decoded to junk."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError


class BadImage(Exception):
    """A file that is not a decodable image; the message is the reason, the path travels beside it."""


def load_rgb(path: str | Path) -> Image.Image:
    """The image as RGB. PIL sniffs the format from the bytes, not the name, and converts CMYK (with Adobe's
    inverted-CMYK marker) and grayscale; `load()` forces the full decode, so truncation raises here."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadImage(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}") from None
