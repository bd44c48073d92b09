"""Marked sections of a model card that bench scripts fill in: `<!-- NAME:start -->` ... `<!-- NAME:end -->`."""

from __future__ import annotations

import re
from pathlib import Path

NOT_MEASURED = "_Not yet measured._"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def _pattern(name: str) -> re.Pattern[str]:
    start, end = _markers(name)
    return re.compile(re.escape(start) + r"\n?(.*?)\n?" + re.escape(end), re.S)


def section(name: str, content: str = NOT_MEASURED) -> str:
    """The marked block, ready to paste into a card body."""
    start, end = _markers(name)
    return f"{start}\n{content.strip()}\n{end}"


def read_section(text: str, name: str) -> str | None:
    """The content between the markers, or None when the card has no such section."""
    m = _pattern(name).search(text)
    return m.group(1) if m else None


def replace_section(text: str, name: str, content: str) -> str:
    """`text` with the section's content replaced; the markers must already be there (once)."""
    if len(_pattern(name).findall(text)) != 1:
        raise ValueError(f"the card needs exactly one {' ... '.join(_markers(name))} block")
    return _pattern(name).sub(lambda _: section(name, content), text)


def write_section(path: Path, name: str, content: str) -> None:
    path.write_text(replace_section(path.read_text(), name, content))
    print(f"updated the {name} section of {path}")
