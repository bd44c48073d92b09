"""Image data sets for training and measurement: zips of JPEGs decoded once into a uint8 array.

The held-out split is always the last `holdout` files by name (the shared zips are already shuffled),
so training and `bench/` agree on it without storing lists.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def zip_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as z:
        return sorted(n for n in z.namelist() if n.lower().endswith((".jpg", ".jpeg", ".png")))


def split_names(names: list[str], holdout: int) -> tuple[list[str], list[str]]:
    """(train, held-out): the last `holdout` names are never trained on."""
    if holdout >= len(names):
        raise ValueError(f"holdout={holdout} leaves no training data ({len(names)} files)")
    return names[: len(names) - holdout], names[len(names) - holdout :]


def load_images(path: Path, names: list[str], size: int, cache_dir: Path | None = None) -> np.ndarray:
    """Decode `names` from the zip into an (N, size, size, 3) uint8 array, cached as .npy (no pickle)."""
    key = hashlib.sha1(f"{path.resolve()}|{size}|{len(names)}|{names[0]}|{names[-1]}".encode()).hexdigest()[:12]
    cache = cache_dir / f"images-{size}-{key}.npy" if cache_dir else None
    if cache is not None and cache.exists():
        return np.load(cache, allow_pickle=False)
    out = np.empty((len(names), size, size, 3), np.uint8)
    with zipfile.ZipFile(path) as z:
        for i, n in enumerate(names):
            with z.open(n) as f:
                im = Image.open(f).convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.LANCZOS)
                out[i] = np.asarray(im)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, out, allow_pickle=False)
    return out
