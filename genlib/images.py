"""Images out of genlib: PNGs that say what made them, grids, animations, upscaling.

Every PNG carries text chunks (model, revision, seed, settings, genlib version, `ai_generated`) and an
XMP packet with the IPTC DigitalSourceType `trainedAlgorithmicMedia`, so the file itself tells a
reader it is AI-generated and by which model. Encoding is deterministic: no timestamps. When
GENLIB_C2PA_CERT/KEY are set, the finished PNG is also C2PA-signed (genlib.credentials).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from genlib.credentials import DIGITAL_SOURCE_TYPE, sign_if_configured
from genlib.errors import BadInput

AI_LABEL = "AI-generated"
_XMP_KEY = "XML:com.adobe.xmp"
UPSCALE_METHODS = {"nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
MAX_DISPLAY = 1024


def provenance(model: Any, **settings: Any) -> dict[str, str]:
    """The provenance fields of one image made by `model` with `settings` (seed, truncation...)."""
    from genlib import __version__

    src = model.source
    info = {
        "ai_generated": "true",
        "generator": f"genlib {__version__}",
        "model": src.repo_id if src else type(model).__name__,
        "model_type": model.model_type,
        "revision": src.revision if src else "unknown",
    }
    info.update({k: str(v) for k, v in settings.items()})
    return info


def _xmp(info: dict[str, str]) -> str:
    desc = json.dumps(info, sort_keys=True).replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        ' xmlns:dc="http://purl.org/dc/elements/1.1/"'
        f' Iptc4xmpExt:DigitalSourceType="{DIGITAL_SOURCE_TYPE}">'
        f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{AI_LABEL} by {desc}</rdf:li></rdf:Alt>'
        "</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"
    )


def save_png(image: Image.Image, path: str | Path, info: dict[str, str]) -> Path:
    """Write `image` as a PNG carrying `info` as text chunks plus an XMP packet, then C2PA-sign it if configured."""
    meta = PngImagePlugin.PngInfo()
    for k, v in info.items():
        meta.add_text(k, v)
    meta.add_itxt(_XMP_KEY, _xmp(info))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", pnginfo=meta)
    sign_if_configured(path, info)  # no-op (file byte-identical) unless GENLIB_C2PA_CERT/KEY are set
    return path


def read_png_info(path: str | Path) -> dict[str, str]:
    """The text chunks of a PNG (empty dict if it has none); raises BadInput if it is not an image."""
    try:
        with Image.open(path) as im:
            im.load()
            text = dict(getattr(im, "text", {}) or {})
    except (OSError, SyntaxError) as e:
        raise BadInput(f"{path} is not a readable image: {e}") from e
    return {k: str(v) for k, v in text.items()}


def describe_provenance(text: dict[str, str]) -> dict[str, Any]:
    """Summarise the provenance found in a PNG's chunks (for `genlib info-image`)."""
    xmp = text.get(_XMP_KEY, "")
    fields = {k: v for k, v in text.items() if k != _XMP_KEY}
    return {
        "ai_generated": fields.get("ai_generated") == "true" or DIGITAL_SOURCE_TYPE in xmp,
        "digital_source_type": DIGITAL_SOURCE_TYPE if DIGITAL_SOURCE_TYPE in xmp else None,
        "fields": fields,
    }


def check_upscale(size: int, method: str) -> None:
    """Clear errors for a display size or filter name out of range."""
    if method not in UPSCALE_METHODS:
        raise BadInput(f"upscale method must be one of {', '.join(UPSCALE_METHODS)}, got {method!r}")
    if not isinstance(size, int) or not 8 <= size <= MAX_DISPLAY:
        raise BadInput(f"display size must be an integer in [8, {MAX_DISPLAY}], got {size!r}")


def upscale(image: Image.Image, size: int, method: str = "nearest") -> Image.Image:
    """Resize to `size` px square with a named filter (nearest keeps the model's true pixels)."""
    check_upscale(size, method)
    if image.size == (size, size):
        return image
    return image.resize((size, size), UPSCALE_METHODS[method])


def grid(images: Sequence[Image.Image], cols: int) -> Image.Image:
    """Paste images row by row into one picture."""
    w, h = images[0].size
    rows = (len(images) + cols - 1) // cols
    out = Image.new("RGB", (cols * w, rows * h))
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out


def save_gif(
    frames: Sequence[Image.Image], path: str | Path, fps: int = 12, info: dict[str, str] | None = None
) -> Path:
    """An animated GIF that loops forth and back; provenance goes in its comment."""
    seq = list(frames) + list(frames[-2:0:-1])
    comment = ("; ".join(f"{k}={v}" for k, v in (info or {}).items())).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seq[0].save(
        path, format="GIF", save_all=True, append_images=seq[1:], duration=int(1000 / fps), loop=0, comment=comment
    )
    return path
