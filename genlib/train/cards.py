"""Model cards for the models trained here: YAML metadata through huggingface_hub's ModelCard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData


def write_card(out_dir: Path, *, metadata: dict[str, Any], body: str) -> Path:
    """Write README.md = YAML front matter (license, tags, datasets, pipeline_tag, metrics...) + markdown body."""
    data = ModelCardData(**metadata)
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")
    path = Path(out_dir) / "README.md"
    card.save(path)
    return path
